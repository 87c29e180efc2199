// Incremental HTTP/1.1 request parser for the OpenAI-compatible front
// (adapters/http_front.h). Bytes are fed as they arrive from a non-blocking
// socket, in pieces of any size; complete requests come out one at a time,
// so pipelined requests queue in the parser's buffer.
//
// Supported framing: request line, header fields, and a Content-Length body.
// Chunked request bodies are refused (411: send Content-Length instead; no
// OpenAI client sends chunked JSON). Limits turn into the HTTP status the
// front should answer with: header section too big -> 431, body too big ->
// 413, malformed -> 400, HTTP version other than 1.0/1.1 -> 505.
//
// Not thread-safe; one parser per connection, used on the loop thread.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace echelon {

struct Http1Request {
  std::string method;     // as sent, e.g. "POST"
  std::string target;     // request-target as sent, e.g. "/v1/models?x=1"
  std::string path;       // target without the query string
  int version_minor = 1;  // HTTP/1.<version_minor>
  // Header fields in order; names lowercased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Whether the connection may stay open after the response (HTTP/1.1
  // default unless "Connection: close"; HTTP/1.0 only with keep-alive).
  bool keep_alive = true;

  // The first value of header `lower_name` (lowercase), or null.
  const std::string* Header(absl::string_view lower_name) const;
};

class Http1RequestParser {
 public:
  struct Limits {
    // Request line plus header fields, including the blank line, in bytes.
    size_t max_header_bytes = 64 * 1024;
    // Content-Length above this is refused with 413 before the body is read.
    size_t max_body_bytes = 8 * 1024 * 1024;
  };

  enum class Result {
    kNeedMore,  // no complete request buffered yet
    kRequest,   // *out holds the next request
    kError,     // error_status()/error_message() say why; stop reading
  };

  explicit Http1RequestParser(const Limits& limits) : limits_(limits) {}

  // Appends received bytes.
  void Feed(absl::string_view bytes);

  // Extracts the next complete request into *out. After kError the parser
  // stays in error; the connection should answer and close.
  Result Next(Http1Request* out);

  // True once per request whose header section carried
  // "Expect: 100-continue" and whose body has not fully arrived: the server
  // should send "100 Continue" so the client sends the body.
  bool TakeContinueRequest();

  // Bytes received and not yet returned as part of a request.
  size_t buffered() const { return buffer_.size() - consumed_; }

  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

 private:
  Result Fail(int status, std::string message);
  // Parses the header section buffer_[consumed_, consumed_ + len).
  Result ParseHead(absl::string_view head);

  const Limits limits_;
  std::string buffer_;
  size_t consumed_ = 0;     // start of the unreturned bytes
  size_t scan_from_ = 0;    // where to continue looking for the blank line
  bool have_head_ = false;  // current request's head is parsed into pending_
  size_t head_bytes_ = 0;
  size_t body_length_ = 0;
  bool continue_pending_ = false;
  Http1Request pending_;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace echelon
