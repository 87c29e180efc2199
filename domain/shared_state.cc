#include "domain/shared_state.h"

namespace echelon {

const char* SharedEventKindName(SharedEventKind k) {
  switch (k) {
    case SharedEventKind::kCooldown:
      return "cooldown";
    case SharedEventKind::kDisable:
      return "disable";
    case SharedEventKind::kEject:
      return "eject";
    case SharedEventKind::kBreakerOpen:
      return "breaker_open";
    case SharedEventKind::kBreakerClosed:
      return "breaker_closed";
  }
  return "unknown";
}

}  // namespace echelon
