#include "adapters/http1_parser.h"

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace echelon {
namespace {

// RFC 9110 token characters (method and field names).
bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool ListHasToken(absl::string_view value, absl::string_view token) {
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(item), token)) {
      return true;
    }
  }
  return false;
}

}  // namespace

const std::string* Http1Request::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

void Http1RequestParser::Feed(absl::string_view bytes) {
  if (error_status_ != 0) return;
  // Drop returned requests before growing the buffer, so a long-lived
  // keep-alive connection does not keep old bytes.
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    scan_from_ -= consumed_;
    consumed_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

bool Http1RequestParser::TakeContinueRequest() {
  bool r = continue_pending_;
  continue_pending_ = false;
  return r;
}

Http1RequestParser::Result Http1RequestParser::Fail(int status,
                                                    std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return Result::kError;
}

Http1RequestParser::Result Http1RequestParser::Next(Http1Request* out) {
  if (error_status_ != 0) return Result::kError;
  if (!have_head_) {
    // RFC 9112 2.2: ignore empty lines before the request line.
    while (consumed_ + 1 < buffer_.size() && buffer_[consumed_] == '\r' &&
           buffer_[consumed_ + 1] == '\n') {
      consumed_ += 2;
    }
    if (scan_from_ < consumed_) scan_from_ = consumed_;
    // Look for the blank line, resuming 3 bytes back in case "\r\n\r\n" was
    // split across reads.
    size_t from = scan_from_ > consumed_ + 3 ? scan_from_ - 3 : consumed_;
    size_t end = buffer_.find("\r\n\r\n", from);
    if (end == std::string::npos) {
      scan_from_ = buffer_.size();
      if (buffered() > limits_.max_header_bytes) {
        return Fail(431, "request header section too large");
      }
      return Result::kNeedMore;
    }
    head_bytes_ = end + 4 - consumed_;
    if (head_bytes_ > limits_.max_header_bytes) {
      return Fail(431, "request header section too large");
    }
    pending_ = Http1Request();
    Result r = ParseHead(
        absl::string_view(buffer_).substr(consumed_, head_bytes_ - 4));
    if (r == Result::kError) return r;
    have_head_ = true;
    consumed_ += head_bytes_;
    scan_from_ = consumed_;
    if (body_length_ > 0 && buffered() < body_length_) {
      const std::string* expect = pending_.Header("expect");
      if (expect != nullptr &&
          absl::EqualsIgnoreCase(*expect, "100-continue")) {
        continue_pending_ = true;
      }
    }
  }
  if (buffered() < body_length_) return Result::kNeedMore;
  pending_.body.assign(buffer_, consumed_, body_length_);
  consumed_ += body_length_;
  scan_from_ = consumed_;
  have_head_ = false;
  body_length_ = 0;
  continue_pending_ = false;
  *out = std::move(pending_);
  pending_ = Http1Request();
  return Result::kRequest;
}

Http1RequestParser::Result Http1RequestParser::ParseHead(
    absl::string_view head) {
  size_t line_end = head.find("\r\n");
  absl::string_view line = head.substr(0, line_end);
  absl::string_view rest =
      line_end == absl::string_view::npos ? "" : head.substr(line_end + 2);

  // request-line = method SP request-target SP HTTP-version
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == absl::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == absl::string_view::npos || sp2 == absl::string_view::npos ||
      line.find(' ', sp2 + 1) != absl::string_view::npos) {
    return Fail(400, "malformed request line");
  }
  absl::string_view method = line.substr(0, sp1);
  absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  absl::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return Fail(400, "malformed method");
  if (target.empty() || target.front() != '/') {
    return Fail(400, "request target must be an absolute path");
  }
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Fail(400, "invalid character in request target");
    }
  }
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return Fail(400, "malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return Fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  pending_.method = std::string(method);
  pending_.target = std::string(target);
  pending_.path = std::string(target.substr(0, target.find('?')));
  pending_.version_minor = version[7] - '0';

  bool have_length = false;
  uint64_t length = 0;
  bool close = false;
  bool keep_alive_token = false;
  while (!rest.empty()) {
    size_t e = rest.find("\r\n");
    absl::string_view field = rest.substr(0, e);
    rest = e == absl::string_view::npos ? "" : rest.substr(e + 2);
    if (field.empty()) continue;
    if (field.front() == ' ' || field.front() == '\t') {
      return Fail(400, "obsolete header line folding");
    }
    size_t colon = field.find(':');
    if (colon == absl::string_view::npos) {
      return Fail(400, "header field without a colon");
    }
    absl::string_view name = field.substr(0, colon);
    if (!IsToken(name)) return Fail(400, "malformed header field name");
    absl::string_view value =
        absl::StripAsciiWhitespace(field.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return Fail(400, "invalid character in header field value");
      }
    }
    std::string lower = absl::AsciiStrToLower(name);
    if (lower == "content-length") {
      uint64_t n = 0;
      if (value.empty() ||
          value.find_first_not_of("0123456789") != absl::string_view::npos ||
          !absl::SimpleAtoi(value, &n)) {
        return Fail(400, "malformed Content-Length");
      }
      if (have_length && n != length) {
        return Fail(400, "conflicting Content-Length fields");
      }
      have_length = true;
      length = n;
    } else if (lower == "transfer-encoding") {
      // A request body we cannot frame: refuse rather than guess (request
      // smuggling). OpenAI clients always send Content-Length.
      return Fail(411,
                  "chunked request bodies are not supported; send "
                  "Content-Length");
    } else if (lower == "connection") {
      if (ListHasToken(value, "close")) close = true;
      if (ListHasToken(value, "keep-alive")) keep_alive_token = true;
    }
    pending_.headers.emplace_back(std::move(lower), std::string(value));
  }
  if (length > limits_.max_body_bytes) {
    return Fail(413, absl::StrCat("request body of ", length,
                                  " bytes exceeds the limit of ",
                                  limits_.max_body_bytes));
  }
  body_length_ = static_cast<size_t>(length);
  pending_.keep_alive =
      !close && (pending_.version_minor == 1 || keep_alive_token);
  return Result::kRequest;
}

}  // namespace echelon
