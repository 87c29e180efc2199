#include "tools/upstream_sim/http_request_parser.h"

#include <cctype>

namespace echelon {
namespace sim {
namespace {

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
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

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Parses a decimal Content-Length; false on anything but digits or overflow.
bool ParseDecimal(std::string_view s, size_t* out) {
  if (s.empty() || s.size() > 18) return false;
  size_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  *out = n;
  return true;
}

}  // namespace

const std::string* HttpRequest::FindHeader(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

bool HttpRequest::KeepAlive() const {
  const std::string* connection = FindHeader("connection");
  if (connection != nullptr) {
    if (EqualsIgnoreCase(*connection, "close")) return false;
    if (EqualsIgnoreCase(*connection, "keep-alive")) return true;
  }
  return minor_version >= 1;
}

std::string_view HttpRequest::Path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

std::string_view HttpRequest::Query() const {
  std::string_view t = target;
  size_t q = t.find('?');
  return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

HttpRequestParser::Result HttpRequestParser::Fail(int status,
                                                  std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_message_ = std::move(message);
  return Result::kError;
}

HttpRequestParser::Result HttpRequestParser::Feed(std::string_view data) {
  if (state_ == State::kError) return Result::kError;
  buffer_.append(data.data(), data.size());
  if (state_ == State::kComplete) return Result::kComplete;
  for (;;) {
    State before = state_;
    size_t pos_before = pos_;
    Result r = Step();
    if (r != Result::kNeedMore) return r;
    if (state_ == before && pos_ == pos_before) return Result::kNeedMore;
  }
}

void HttpRequestParser::Next() {
  buffer_.erase(0, pos_);
  pos_ = 0;
  scan_from_ = 0;
  body_remaining_ = 0;
  expects_continue_ = false;
  state_ = State::kHeaders;
  request_.method.clear();
  request_.target.clear();
  request_.minor_version = 1;
  request_.headers.clear();
  request_.body.clear();
}

HttpRequestParser::Result HttpRequestParser::Step() {
  std::string_view rest(buffer_.data() + pos_, buffer_.size() - pos_);
  switch (state_) {
    case State::kHeaders: {
      // Tolerate empty lines before the request line (RFC 9112 2.2).
      while (rest.size() >= 2 && rest[0] == '\r' && rest[1] == '\n') {
        pos_ += 2;
        rest.remove_prefix(2);
      }
      size_t start = scan_from_ > pos_ + 3 ? scan_from_ - 3 - pos_ : 0;
      size_t end = rest.find("\r\n\r\n", start);
      if (end == std::string_view::npos) {
        if (rest.size() > limits_.max_header_bytes) {
          return Fail(431, "request header block too large");
        }
        scan_from_ = buffer_.size();
        return Result::kNeedMore;
      }
      if (end + 4 > limits_.max_header_bytes) {
        return Fail(431, "request header block too large");
      }
      Result r = ParseHeaderBlock(rest.substr(0, end + 2));
      if (r == Result::kError) return r;
      pos_ += end + 4;
      return Result::kNeedMore;
    }
    case State::kBody: {
      if (rest.size() < body_remaining_) return Result::kNeedMore;
      request_.body.assign(rest.data(), body_remaining_);
      pos_ += body_remaining_;
      body_remaining_ = 0;
      state_ = State::kComplete;
      return Result::kComplete;
    }
    case State::kChunkSize: {
      size_t eol = rest.find("\r\n");
      if (eol == std::string_view::npos) {
        if (rest.size() > 1024) return Fail(400, "chunk size line too long");
        return Result::kNeedMore;
      }
      std::string_view line = rest.substr(0, eol);
      line = line.substr(0, line.find(';'));  // drop chunk extensions
      line = TrimOws(line);
      if (line.empty() || line.size() > 15) {
        return Fail(400, "bad chunk size");
      }
      size_t size = 0;
      for (char c : line) {
        int v;
        if (c >= '0' && c <= '9') {
          v = c - '0';
        } else if (c >= 'a' && c <= 'f') {
          v = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
          v = c - 'A' + 10;
        } else {
          return Fail(400, "bad chunk size");
        }
        size = size * 16 + static_cast<size_t>(v);
      }
      if (request_.body.size() + size > limits_.max_body_bytes) {
        return Fail(413, "request body too large");
      }
      pos_ += eol + 2;
      body_remaining_ = size;
      state_ = size == 0 ? State::kTrailers : State::kChunkData;
      return Result::kNeedMore;
    }
    case State::kChunkData: {
      size_t n = rest.size() < body_remaining_ ? rest.size() : body_remaining_;
      request_.body.append(rest.data(), n);
      pos_ += n;
      body_remaining_ -= n;
      if (body_remaining_ == 0) state_ = State::kChunkDataEnd;
      return Result::kNeedMore;
    }
    case State::kChunkDataEnd: {
      if (rest.size() < 2) return Result::kNeedMore;
      if (rest[0] != '\r' || rest[1] != '\n') {
        return Fail(400, "chunk data not followed by CRLF");
      }
      pos_ += 2;
      state_ = State::kChunkSize;
      return Result::kNeedMore;
    }
    case State::kTrailers: {
      // Trailer fields are ignored; the section ends with an empty line.
      size_t eol = rest.find("\r\n");
      if (eol == std::string_view::npos) {
        if (rest.size() > limits_.max_header_bytes) {
          return Fail(431, "trailer section too large");
        }
        return Result::kNeedMore;
      }
      pos_ += eol + 2;
      if (eol == 0) {
        state_ = State::kComplete;
        return Result::kComplete;
      }
      return Result::kNeedMore;
    }
    case State::kComplete:
      return Result::kComplete;
    case State::kError:
      return Result::kError;
  }
  return Result::kError;
}

HttpRequestParser::Result HttpRequestParser::ParseHeaderBlock(
    std::string_view block) {
  // Request line: METHOD SP target SP HTTP/1.x CRLF
  size_t eol = block.find("\r\n");
  std::string_view line = block.substr(0, eol);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) {
    return Fail(400, "malformed request line");
  }
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) {
    return Fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (!IsTokenChar(c)) return Fail(400, "malformed method");
  }
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Fail(400, "malformed request target");
    }
  }
  if (version == "HTTP/1.1") {
    request_.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    request_.minor_version = 0;
  } else if (version.substr(0, 5) == "HTTP/") {
    return Fail(505, "unsupported HTTP version");
  } else {
    return Fail(400, "malformed request line");
  }
  request_.method.assign(method.data(), method.size());
  request_.target.assign(target.data(), target.size());

  // Header fields.
  bool chunked = false;
  bool have_length = false;
  size_t content_length = 0;
  std::string_view rest = block.substr(eol + 2);
  while (!rest.empty()) {
    size_t end = rest.find("\r\n");
    std::string_view field = rest.substr(0, end);
    rest.remove_prefix(end + 2);
    if (field.empty()) continue;
    if (field[0] == ' ' || field[0] == '\t') {
      return Fail(400, "obsolete header line folding");
    }
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Fail(400, "malformed header field");
    }
    std::string_view name = field.substr(0, colon);
    std::string_view value = TrimOws(field.substr(colon + 1));
    for (char c : name) {
      if (!IsTokenChar(c)) return Fail(400, "malformed header name");
    }
    for (char c : value) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return Fail(400, "control character in header value");
      }
    }
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(c));
    if (lower == "content-length") {
      size_t n = 0;
      if (!ParseDecimal(value, &n)) return Fail(400, "bad Content-Length");
      if (have_length && n != content_length) {
        return Fail(400, "conflicting Content-Length");
      }
      have_length = true;
      content_length = n;
    } else if (lower == "transfer-encoding") {
      std::string_view last = value.substr(value.rfind(',') + 1);
      if (!EqualsIgnoreCase(TrimOws(last), "chunked")) {
        return Fail(501, "unsupported Transfer-Encoding");
      }
      chunked = true;
    } else if (lower == "expect") {
      if (EqualsIgnoreCase(value, "100-continue")) expects_continue_ = true;
    }
    request_.headers.emplace_back(std::move(lower), std::string(value));
  }
  if (chunked && have_length) {
    return Fail(400, "both Content-Length and Transfer-Encoding");
  }
  if (chunked) {
    state_ = State::kChunkSize;
    return Result::kNeedMore;
  }
  if (content_length > limits_.max_body_bytes) {
    return Fail(413, "request body too large");
  }
  body_remaining_ = content_length;
  state_ = State::kBody;
  return Result::kNeedMore;
}

}  // namespace sim
}  // namespace echelon
