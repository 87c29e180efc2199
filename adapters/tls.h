// TLS credentials for the gRPC listener: a server certificate and key, and
// optionally a client CA that turns on mutual TLS (clients must present a
// certificate signed by it).
//
// Errors name the file, never its content (a key file must not leak into
// a log).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace echelon {

struct GrpcTlsFiles {
  std::string cert_file;       // PEM certificate chain; empty = no TLS
  std::string key_file;        // PEM private key; required with cert_file
  std::string client_ca_file;  // PEM CA bundle; set = require client certs
};

// Insecure credentials when `files.cert_file` is empty, else TLS (and mTLS
// with a client CA). Errors: INVALID_ARGUMENT (key without cert, cert
// without key, client CA without cert), NOT_FOUND / PERMISSION_DENIED (a
// file cannot be read), INVALID_ARGUMENT (a file holds no PEM block).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
MakeGrpcServerCredentials(const GrpcTlsFiles& files);

// The whole content of `path`. Errors: NOT_FOUND, PERMISSION_DENIED,
// INTERNAL; the message names the path only.
absl::StatusOr<std::string> ReadPemFile(const std::string& path);

}  // namespace echelon
