#include "adapters/redact.h"

#include <cstddef>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace echelon {
namespace {

constexpr size_t kMinRun = 8;
constexpr absl::string_view kMask = "[redacted]";

bool IsKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '-' || c == '.';
}

}  // namespace

std::string RedactSecrets(absl::string_view text, absl::string_view secret) {
  std::vector<bool> hide(text.size(), false);
  // Runs shared with the secret: for each start, the longest match.
  if (secret.size() >= kMinRun) {
    for (size_t i = 0; i + kMinRun <= text.size(); ++i) {
      size_t best = 0;
      for (size_t j = 0; j + kMinRun <= secret.size(); ++j) {
        size_t n = 0;
        while (i + n < text.size() && j + n < secret.size() &&
               text[i + n] == secret[j + n]) {
          ++n;
        }
        if (n > best) best = n;
      }
      if (best >= kMinRun) {
        for (size_t k = i; k < i + best; ++k) hide[k] = true;
      }
    }
  }
  // Key-shaped tokens.
  for (absl::string_view prefix : {"sk-", "sk_", "key-", "Bearer "}) {
    for (size_t pos = text.find(prefix); pos != absl::string_view::npos;
         pos = text.find(prefix, pos + 1)) {
      size_t end = pos + prefix.size();
      while (end < text.size() && IsKeyChar(text[end])) ++end;
      if (end - pos - prefix.size() >= kMinRun) {
        for (size_t k = pos; k < end; ++k) hide[k] = true;
      }
    }
  }
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (!hide[i]) {
      out.push_back(text[i++]);
      continue;
    }
    out.append(kMask.data(), kMask.size());
    while (i < text.size() && hide[i]) ++i;
  }
  return out;
}

}  // namespace echelon
