// "host:port" and "[v6]:port" addresses (port 1..65535; no spaces or '/' in
// the host), shared by config validation and the clients that connect.
#pragma once

#include <string>

namespace echelon {

// Splits `address`; false (outputs untouched) when it is malformed.
bool ParseHostPort(const std::string& address, std::string* host, int* port);

}  // namespace echelon
