// A blocking keep-alive libcurl client for tests of our HTTP servers (the
// HTTP front, over plain HTTP or TLS): requests on one client reuse its
// connection, and connects() counts the connections curl opened.
#pragma once

#include <curl/curl.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace echelon {

struct CurlTestResult {
  CURLcode rc = CURLE_OK;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names
};

// Files for https:// URLs; empty fields are not set.
struct CurlTestTls {
  std::string ca_file;    // trusted CA bundle (replaces the system store)
  std::string cert_file;  // client certificate (mutual TLS)
  std::string key_file;   // its key
};

class CurlTestClient {
 public:
  CurlTestClient() : curl_(curl_easy_init()) {}
  ~CurlTestClient() { curl_easy_cleanup(curl_); }
  CurlTestClient(const CurlTestClient&) = delete;
  CurlTestClient& operator=(const CurlTestClient&) = delete;

  // Sends `method url` with `body` (POST only) and `headers` (plus
  // Content-Type: application/json) and waits at most `timeout`.
  CurlTestResult Do(const std::string& method, const std::string& url,
                    const std::string& body,
                    std::vector<std::string> headers = {},
                    absl::Duration timeout = absl::Seconds(10),
                    const CurlTestTls& tls = CurlTestTls()) {
    CurlTestResult r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body.size()));
    }
    if (!tls.ca_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_CAINFO, tls.ca_file.c_str());
      curl_easy_setopt(curl_, CURLOPT_CAPATH, nullptr);
    }
    if (!tls.cert_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_SSLCERT, tls.cert_file.c_str());
      curl_easy_setopt(curl_, CURLOPT_SSLKEY, tls.key_file.c_str());
    }
    curl_slist* list = nullptr;
    headers.push_back("Content-Type: application/json");
    for (const std::string& h : headers) {
      list = curl_slist_append(list, h.c_str());
    }
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, CollectBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, CollectHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(timeout)));
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    r.rc = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    long connects = 0;
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &connects);
    connects_ += connects;
    curl_slist_free_all(list);
    return r;
  }

  // Connections curl opened so far on this client.
  long connects() const { return connects_; }

 private:
  static size_t CollectBody(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  }

  static size_t CollectHeader(char* data, size_t size, size_t n, void* user) {
    absl::string_view line(data, size * n);
    size_t colon = line.find(':');
    if (colon != absl::string_view::npos) {
      (*static_cast<std::map<std::string, std::string>*>(
          user))[absl::AsciiStrToLower(line.substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
    return size * n;
  }

  CURL* const curl_;
  long connects_ = 0;
};

}  // namespace echelon
