// Serialises HTTP/1.1 responses into a connection's output buffer, for the
// OpenAI-compatible front (adapters/http_front.h): whole responses with
// Content-Length, and chunked responses (SSE streams) piece by piece.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace echelon {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// "OK", "Not Found", ...; "Unknown" for codes the front never sends.
absl::string_view HttpReasonPhrase(int status);

// Body framing values for AppendHttpHead's `content_length` besides a
// length: a chunked body, or a body that ends when the connection closes
// (HTTP/1.0 streams; no Content-Length or Transfer-Encoding header).
inline constexpr long long kHttpChunked = -1;
inline constexpr long long kHttpCloseDelimited = -2;

// Status line and headers (Date is omitted on purpose: clients do not need
// it and it costs a clock read per response).
void AppendHttpHead(std::string* out, int status,
                    absl::string_view content_type, long long content_length,
                    const HttpHeaders& extra, bool keep_alive);

// A whole response with a Content-Length body.
void AppendHttpResponse(std::string* out, int status,
                        absl::string_view content_type, absl::string_view body,
                        const HttpHeaders& extra, bool keep_alive);

// One chunk of a chunked body; empty `data` appends nothing (an empty chunk
// would end the body).
void AppendHttpChunk(std::string* out, absl::string_view data);

// The last chunk: ends a chunked body.
void AppendHttpLastChunk(std::string* out);

}  // namespace echelon
