// Who may read the admin endpoint: a bearer token, checked by its SHA-256 so
// the configuration never holds the token itself.
#ifndef SEQKV_SERVER_DASHBOARD_ADMIN_AUTH_H_
#define SEQKV_SERVER_DASHBOARD_ADMIN_AUTH_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace seqkv {

// True for hosts only this machine can reach: 127.0.0.0/8, ::1 and
// "localhost". An empty host, 0.0.0.0 and :: listen everywhere: false.
bool IsLoopbackHost(std::string_view host);

// The token from an "Authorization: Bearer <token>" header value, if the
// value has that form.
std::optional<std::string_view> BearerToken(std::string_view authorization);

class AdminToken {
 public:
  // No token: every request is allowed.
  AdminToken() = default;
  // `sha256_hex`: 64 hex digits (either case); empty means no token.
  static absl::StatusOr<AdminToken> FromSha256Hex(std::string_view sha256_hex);

  bool required() const { return digest_.has_value(); }
  // Compares digests in constant time, so a wrong token's timing tells
  // nothing about the right one.
  bool Matches(std::string_view presented) const;

 private:
  std::optional<std::array<uint8_t, 32>> digest_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_ADMIN_AUTH_H_
