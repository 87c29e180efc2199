#include "domain/chat.h"

namespace echelon {

int64_t EstimatePromptTokens(const ChatRequest& request) {
  int64_t bytes = 0;
  for (const ChatMessage& m : request.messages) {
    bytes += static_cast<int64_t>(m.content.size()) + 4;  // role framing
    for (const ContentPart& p : m.parts) bytes += p.text.size();
    for (const ToolCall& c : m.tool_calls) bytes += c.arguments.size();
  }
  for (const ToolSpec& t : request.tools) {
    bytes += t.description.size() + t.parameters_json.size();
  }
  return (bytes + 3) / 4;
}

}  // namespace echelon
