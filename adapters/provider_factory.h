// Builds the Provider adapter for a configured provider kind.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "adapters/http_client.h"
#include "domain/config.h"
#include "domain/provider.h"

namespace echelon {

// Returns the adapter for `config.kind`; kInvalidArgument for an unknown
// kind. `http` must outlive the provider. Endpoints (URL, key, model) come
// with each call, so one provider serves all instances of its kind.
absl::StatusOr<std::shared_ptr<Provider>> MakeProvider(
    const ProviderConfig& config, HttpClient& http);

}  // namespace echelon
