#include "cluster/placement.h"

#include <xxhash.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cluster/member.h"
#include "nlohmann/json.hpp"
#include "proto/chunk_digest.h"

namespace seqkv::cluster {

absl::StatusOr<PlacementOptions> ParsePlacementConfig(std::string_view text) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object())
    return absl::InvalidArgumentError("cluster config is not a JSON object");
  PlacementOptions options;
  if (json.contains("placement_chunks")) {
    const auto& field = json["placement_chunks"];
    if (!field.is_number_unsigned() || field.get<uint64_t>() < 1 ||
        field.get<uint64_t>() > 64)
      return absl::InvalidArgumentError(
          "cluster config's \"placement_chunks\" must be an integer in [1, "
          "64]");
    options.prefix_chunks = field.get<uint32_t>();
  }
  struct Bound {
    const char* name;
    uint32_t low, high;
    uint32_t* value;
  };
  for (const Bound& bound :
       {Bound{"replicas_hot", 1, kMaxReplicasHot, &options.replicas_hot},
        Bound{"hot_lookups", 1, 1000000, &options.hot_lookups},
        Bound{"hot_window", 1, 10000000, &options.hot_window}}) {
    if (!json.contains(bound.name)) continue;
    const auto& field = json[bound.name];
    if (!field.is_number_unsigned() || field.get<uint64_t>() < bound.low ||
        field.get<uint64_t>() > bound.high)
      return absl::InvalidArgumentError(absl::StrCat(
          "cluster config's \"", bound.name, "\" must be an integer in [",
          bound.low, ", ", bound.high, "]"));
    *bound.value = field.get<uint32_t>();
  }
  return options;
}

uint64_t PlacementKey(std::string_view model, std::string_view name_space,
                      std::span<const int32_t> tokens, uint32_t chunk_tokens,
                      const PlacementOptions& options) {
  // Length-prefixed model and namespace, then the head's chunk digests: the
  // same digests a Lookup by chunks sends, so both hash the same way.
  std::string input;
  for (std::string_view field : {model, name_space}) {
    const uint64_t size = field.size();
    input.append(reinterpret_cast<const char*>(&size), sizeof(size));
    input.append(field);
  }
  if (chunk_tokens > 0) {
    const size_t chunks =
        std::min<size_t>(tokens.size() / chunk_tokens, options.prefix_chunks);
    for (size_t i = 0; i < chunks; ++i) {
      const uint64_t digest =
          ChunkDigest(tokens.subspan(i * chunk_tokens, chunk_tokens));
      input.append(reinterpret_cast<const char*>(&digest), sizeof(digest));
    }
  }
  return XXH3_64bits(input.data(), input.size());
}

}  // namespace seqkv::cluster
