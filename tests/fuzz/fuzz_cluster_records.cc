// Fuzzes what a node or client reads from etcd and its flags: member
// records, the cluster config and etcd:// targets. Any bytes give a value
// or INVALID_ARGUMENT; a parsed record writes back to itself.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include "cluster/member.h"
#include "cluster/placement.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  switch (rng() % 3) {
    case 0: {
      seqkv::cluster::Member member;
      member.id = "node-" + std::to_string(rng() % 1000);
      member.address = "127.0.0.1:" + std::to_string(rng() % 65536);
      member.capacity_bytes = rng();
      member.bytes_stored = rng() % 100000;
      member.replicas_hot = rng() % 17;
      if (rng() % 2)
        member.namespace_bytes["tenant-" + std::to_string(rng() % 9)] = rng();
      member.state = rng() % 2 ? seqkv::cluster::MemberState::kServing
                               : seqkv::cluster::MemberState::kDraining;
      return seqkv::cluster::MemberToJson(member);
    }
    case 1:
      return "{\"placement_chunks\": " + std::to_string(rng() % 70) +
             ", \"replicas_hot\": " + std::to_string(rng() % 18) +
             ", \"hot_lookups\": " + std::to_string(rng() % 9) + "}";
    default:
      return "etcd://127.0.0.1:" + std::to_string(rng() % 70000) + ",h:1/c" +
             std::to_string(rng() % 9);
  }
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

void Expect(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto member = seqkv::cluster::ParseMember(text);
  if (member.ok()) {
    auto again = seqkv::cluster::ParseMember(MemberToJson(*member));
    Expect(again.ok() && *again == *member);
  } else {
    Expect(member.status().code() == absl::StatusCode::kInvalidArgument);
  }
  auto config = seqkv::cluster::ParsePlacementConfig(text);
  Expect(config.ok()
             ? config->prefix_chunks >= 1 && config->prefix_chunks <= 64
             : config.status().code() == absl::StatusCode::kInvalidArgument);
  auto target = seqkv::cluster::ParseClusterTarget(text);
  Expect(target.ok()
             ? !target->endpoints.empty() &&
                   seqkv::cluster::ValidName(target->name)
             : target.status().code() == absl::StatusCode::kInvalidArgument);
  return 0;
}
