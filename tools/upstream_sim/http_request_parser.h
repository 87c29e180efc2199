// Incremental HTTP/1.1 request parser for the upstream simulator.
//
// Bytes are fed as they arrive from a non-blocking socket; the parser keeps
// what it has not consumed yet, so a request may be split across any number
// of reads. Bodies are framed by Content-Length or chunked transfer coding.
// Not thread-safe; one parser per connection.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace echelon {
namespace sim {

struct HttpRequest {
  std::string method;     // e.g. "POST"
  std::string target;     // raw request-target, e.g. "/v1/messages?x=1"
  int minor_version = 1;  // HTTP/1.<minor_version>
  // Header names are lower-cased; values are trimmed. Order is preserved.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // de-chunked

  // Returns the first header with this (lower-case) name, or nullptr.
  const std::string* FindHeader(std::string_view lower_name) const;
  // HTTP/1.1 defaults to keep-alive, HTTP/1.0 to close; "Connection" wins.
  bool KeepAlive() const;
  // target without the query string.
  std::string_view Path() const;
  // The query string after '?', or "".
  std::string_view Query() const;
};

class HttpRequestParser {
 public:
  struct Limits {
    size_t max_header_bytes = 64 * 1024;       // request line + headers
    size_t max_body_bytes = 16 * 1024 * 1024;  // after de-chunking
  };
  enum class Result { kNeedMore, kComplete, kError };

  HttpRequestParser() : HttpRequestParser(Limits()) {}
  explicit HttpRequestParser(Limits limits) : limits_(limits) {}

  // Appends `data` and parses as far as possible. After kComplete, further
  // bytes are only buffered until Next(); after kError the parser stays in
  // error.
  Result Feed(std::string_view data);

  // On kError: the status to answer (400, 413, 431, 501, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

  // True once the header block of the current request has been parsed.
  bool headers_done() const { return state_ != State::kHeaders; }
  // True when the headers asked for "Expect: 100-continue".
  bool expects_continue() const { return expects_continue_; }

  // The parsed request; complete only after Feed() returned kComplete.
  const HttpRequest& request() const { return request_; }

  // Drops the completed request. Bytes that followed it stay buffered; call
  // Feed("") to parse them.
  void Next();

  // Bytes received but not yet consumed.
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  enum class State {
    kHeaders,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kComplete,
    kError,
  };

  Result Fail(int status, std::string message);
  Result ParseHeaderBlock(std::string_view block);
  Result Step();

  Limits limits_;
  State state_ = State::kHeaders;
  std::string buffer_;
  size_t pos_ = 0;             // start of unconsumed bytes in buffer_
  size_t scan_from_ = 0;       // where to resume looking for the header end
  size_t body_remaining_ = 0;  // Content-Length or current chunk
  bool expects_continue_ = false;
  HttpRequest request_;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace sim
}  // namespace echelon
