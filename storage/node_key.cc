#include "storage/node_key.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "absl/base/internal/endian.h"
#include "absl/strings/escaping.h"

namespace seqkv {

std::string NodeKey::Bytes() const {
  std::string out;
  AppendTo(out);
  return out;
}

void NodeKey::AppendTo(std::string& out) const {
  char buffer[kSize];
  absl::big_endian::Store64(buffer, high);
  absl::big_endian::Store64(buffer + 8, low);
  out.append(buffer, kSize);
}

NodeKey NodeKey::FromBytes(std::string_view bytes) {
  return {absl::big_endian::Load64(bytes.data()),
          absl::big_endian::Load64(bytes.data() + 8)};
}

std::string NodeKey::Hex() const { return absl::BytesToHexString(Bytes()); }

NodeKey RootKey(std::string_view name_space,
                std::string_view model_fingerprint) {
  // Length-prefixed fields, so ("ab", "c") and ("a", "bc") differ.
  std::string input = "seqkv.root.v1";
  for (std::string_view field : {name_space, model_fingerprint}) {
    uint64_t size = field.size();
    input.append(reinterpret_cast<const char*>(&size), sizeof(size));
    input.append(field);
  }
  XXH128_hash_t hash = XXH3_128bits(input.data(), input.size());
  return {hash.high64, hash.low64};
}

NodeKey ChildKey(const NodeKey& parent, std::span<const int32_t> tokens) {
  // The hash of the parent's bytes followed by the tokens, streamed so that
  // nothing is copied.
  char parent_bytes[NodeKey::kSize];
  absl::big_endian::Store64(parent_bytes, parent.high);
  absl::big_endian::Store64(parent_bytes + 8, parent.low);
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  XXH3_128bits_update(&state, parent_bytes, sizeof(parent_bytes));
  XXH3_128bits_update(&state, tokens.data(), tokens.size() * sizeof(int32_t));
  XXH128_hash_t hash = XXH3_128bits_digest(&state);
  return {hash.high64, hash.low64};
}

}  // namespace seqkv
