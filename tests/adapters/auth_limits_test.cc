#include "adapters/auth_limits.h"

#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace {

ChatRequest Request(int messages, size_t bytes_each) {
  ChatRequest r;
  for (int i = 0; i < messages; ++i) {
    ChatMessage m;
    m.content = std::string(bytes_each, 'x');
    r.messages.push_back(m);
  }
  return r;
}

RequestLimits Defaults() {
  GatewayConfig config;
  ModelConfig small;
  small.max_output_tokens = 1000;
  ModelConfig big;
  big.max_output_tokens = 8000;
  config.models = {small, big};
  return RequestLimits::FromConfig(config);
}

TEST(RequestLimitsTest, DefaultMaxTokensIsTheLargestModelOutput) {
  EXPECT_EQ(Defaults().max_tokens, 8000);
  GatewayConfig config;
  config.limits.max_tokens = 50;
  EXPECT_EQ(RequestLimits::FromConfig(config).max_tokens, 50);
}

TEST(RequestLimitsTest, AcceptsARequestWithinEveryCap) {
  ChatRequest r = Request(3, 100);
  r.params.max_tokens = 8000;
  r.metadata["team"] = "a";
  EXPECT_TRUE(CheckRequestLimits(Defaults(), r).ok());
}

TEST(RequestLimitsTest, TooManyMessagesIsInvalidArgument) {
  absl::Status s = CheckRequestLimits(Defaults(), Request(1025, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message())
                .find("too many messages: 1025 (limit "
                      "1024)"),
            std::string::npos);
}

TEST(RequestLimitsTest, TooMuchContentIsInvalidArgument) {
  EXPECT_EQ(CheckRequestLimits(Defaults(), Request(2, 600 * 1024)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestLimitsTest, ContentCountsPartsToolsAndSchemas) {
  ChatRequest r;
  ChatMessage m;
  m.content = "ab";
  m.parts.push_back({ContentPart::Type::kText, "cde", "", ""});
  m.tool_calls.push_back({"id", "fn", "{}"});
  r.messages.push_back(m);
  r.tools.push_back({"t", "desc", "{}"});
  r.params.response_format.json_schema = "{}";
  EXPECT_EQ(RequestContentBytes(r), 2 + 3 + 2 + 2 + 1 + 4 + 2 + 2);
}

TEST(RequestLimitsTest, MaxTokensAboveTheCapIsInvalidArgument) {
  ChatRequest r = Request(1, 1);
  r.params.max_tokens = 8001;
  absl::Status s = CheckRequestLimits(Defaults(), r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("max_tokens"), std::string::npos);
}

TEST(RequestLimitsTest, MetadataEntriesAndBytesAreCapped) {
  ChatRequest r = Request(1, 1);
  for (int i = 0; i < 65; ++i) r.metadata[std::to_string(i)] = "v";
  EXPECT_EQ(CheckRequestLimits(Defaults(), r).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckMetadataLimits(Defaults(), 64, 16 << 10).ok());
  EXPECT_EQ(CheckMetadataLimits(Defaults(), 65, 10).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckMetadataLimits(Defaults(), 1, (16 << 10) + 1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestLimitsTest, ZeroMeansNoCap) {
  RequestLimits none;
  none.config.max_messages = 0;
  none.config.max_content_bytes = 0;
  ChatRequest r = Request(5000, 1000);
  r.params.max_tokens = 1 << 30;
  EXPECT_TRUE(CheckRequestLimits(none, r).ok());
}

}  // namespace
}  // namespace echelon
