#include "server/dashboard/admin_auth.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

std::array<uint8_t, 32> Sha256(std::string_view text) {
  std::array<uint8_t, 32> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(),
             nullptr);
  return digest;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return absl::ascii_tolower(static_cast<unsigned char>(x)) ==
                  absl::ascii_tolower(static_cast<unsigned char>(y));
         });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (EqualsIgnoreCase(host, "localhost")) return true;
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.y.z reaches the IPv4 loopback.
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::optional<std::string_view> BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme))
    return std::nullopt;
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

absl::StatusOr<AdminToken> AdminToken::FromSha256Hex(
    std::string_view sha256_hex) {
  AdminToken token;
  if (sha256_hex.empty()) return token;
  if (sha256_hex.size() != 64)
    return absl::InvalidArgumentError(
        absl::StrCat("admin token sha256 must be 64 hex digits, got ",
                     sha256_hex.size(), " characters"));
  std::array<uint8_t, 32> digest{};
  for (size_t i = 0; i < digest.size(); ++i) {
    const int high = HexValue(sha256_hex[2 * i]);
    const int low = HexValue(sha256_hex[2 * i + 1]);
    if (high < 0 || low < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("admin token sha256 has a non-hex character at offset ",
                       high < 0 ? 2 * i : 2 * i + 1));
    digest[i] = static_cast<uint8_t>(high << 4 | low);
  }
  token.digest_ = digest;
  return token;
}

bool AdminToken::Matches(std::string_view presented) const {
  if (!digest_) return true;
  const std::array<uint8_t, 32> digest = Sha256(presented);
  return CRYPTO_memcmp(digest.data(), digest_->data(), digest.size()) == 0;
}

}  // namespace seqkv
