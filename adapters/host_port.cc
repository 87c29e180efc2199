#include "adapters/host_port.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace echelon {

bool ParseHostPort(const std::string& address, std::string* host, int* port) {
  size_t colon;
  std::string h;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    h = address.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    h = address.substr(0, colon);
    if (h.find(':') != std::string::npos) return false;  // v6 needs [..]
  }
  int p = 0;
  if (h.empty() || !absl::SimpleAtoi(address.substr(colon + 1), &p) || p < 1 ||
      p > 65535) {
    return false;
  }
  if (std::any_of(h.begin(), h.end(), [](char c) {
        return absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/';
      })) {
    return false;
  }
  *host = h;
  *port = p;
  return true;
}

}  // namespace echelon
