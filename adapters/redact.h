// Removes secrets from text that came from outside (an upstream's error
// message) before it reaches logs, traces, metrics or callers. Providers
// echo keys back ("Incorrect API key provided: sk-...abcd"), so a message
// must never be trusted to be clean.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace echelon {

// Replaces with "[redacted]":
//  - any run of 8 or more characters that also occurs in `secret` (so a
//    truncated or partly masked echo of the key goes too);
//  - anything shaped like an API key: "sk-", "sk_", "key-" or "Bearer "
//    followed by 8 or more key characters ([A-Za-z0-9_-.]).
// `secret` may be empty (then only the shapes are redacted).
std::string RedactSecrets(absl::string_view text, absl::string_view secret);

}  // namespace echelon
