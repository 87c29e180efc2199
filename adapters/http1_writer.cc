#include "adapters/http1_writer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace echelon {

absl::string_view HttpReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void AppendHttpHead(std::string* out, int status,
                    absl::string_view content_type, long long content_length,
                    const HttpHeaders& extra, bool keep_alive) {
  absl::StrAppend(out, "HTTP/1.1 ", status, " ", HttpReasonPhrase(status),
                  "\r\n");
  if (!content_type.empty()) {
    absl::StrAppend(out, "Content-Type: ", content_type, "\r\n");
  }
  if (content_length >= 0) {
    absl::StrAppend(out, "Content-Length: ", content_length, "\r\n");
  } else if (content_length == kHttpChunked) {
    out->append("Transfer-Encoding: chunked\r\n");
  }
  for (const auto& [name, value] : extra) {
    absl::StrAppend(out, name, ": ", value, "\r\n");
  }
  out->append(keep_alive ? "Connection: keep-alive\r\n\r\n"
                         : "Connection: close\r\n\r\n");
}

void AppendHttpResponse(std::string* out, int status,
                        absl::string_view content_type, absl::string_view body,
                        const HttpHeaders& extra, bool keep_alive) {
  AppendHttpHead(out, status, content_type, static_cast<long long>(body.size()),
                 extra, keep_alive);
  out->append(body.data(), body.size());
}

void AppendHttpChunk(std::string* out, absl::string_view data) {
  if (data.empty()) return;
  absl::StrAppendFormat(out, "%x\r\n", data.size());
  out->append(data.data(), data.size());
  out->append("\r\n");
}

void AppendHttpLastChunk(std::string* out) { out->append("0\r\n\r\n"); }

}  // namespace echelon
