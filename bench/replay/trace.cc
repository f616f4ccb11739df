#include "bench/replay/trace.h"

#include <fstream>
#include <list>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

uint32_t TraceRequest::BlockTokens(size_t index) const {
  const uint64_t start = uint64_t{index} * block_tokens;
  if (start >= input_length) return 0;
  return static_cast<uint32_t>(
      std::min<uint64_t>(block_tokens, input_length - start));
}

absl::StatusOr<std::vector<TraceRequest>> ReadMooncakeTrace(
    const std::string& path, size_t max_requests, uint32_t block_tokens) {
  if (block_tokens == 0 || block_tokens > 65536)
    return absl::InvalidArgumentError(
        absl::StrCat("block_tokens must be in [1, 65536], got ", block_tokens));
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read trace ", path));
  std::vector<TraceRequest> requests;
  std::string line;
  size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (max_requests > 0 && requests.size() >= max_requests) break;
    const auto where = [&](std::string_view field) {
      return absl::StrCat(path, ":", line_number, ": ", std::string(field));
    };
    nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
    if (object.is_discarded() || !object.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": not a JSON object"));
    for (const char* field : {"timestamp", "input_length", "hash_ids"})
      if (!object.contains(field))
        return absl::InvalidArgumentError(
            absl::StrCat(where(field), " is missing"));
    const auto& input = object["input_length"];
    if (!input.is_number_integer() || input.get<int64_t>() < 0 ||
        input.get<int64_t>() > (int64_t{1} << 31))
      return absl::InvalidArgumentError(absl::StrCat(
          where("input_length"), " must be an integer in [0, 2^31]"));
    if (!object["timestamp"].is_number())
      return absl::InvalidArgumentError(
          absl::StrCat(where("timestamp"), " must be a number"));
    const auto& ids = object["hash_ids"];
    if (!ids.is_array())
      return absl::InvalidArgumentError(
          absl::StrCat(where("hash_ids"), " must be an array"));
    TraceRequest request;
    request.timestamp_ms = object["timestamp"].get<int64_t>();
    request.input_length = input.get<uint32_t>();
    const auto& output = object.value("output_length", nlohmann::json(0));
    request.output_length =
        output.is_number_unsigned() ? output.get<uint32_t>() : 0;
    request.block_tokens = block_tokens;
    const uint64_t blocks =
        (uint64_t{request.input_length} + block_tokens - 1) / block_tokens;
    if (ids.size() != blocks)
      return absl::InvalidArgumentError(absl::StrCat(
          where("hash_ids"), " has ", ids.size(), " ids; input_length ",
          request.input_length, " needs ", blocks, " blocks of ", block_tokens,
          " tokens (--block_tokens)"));
    for (const auto& id : ids) {
      if (!id.is_number_unsigned())
        return absl::InvalidArgumentError(absl::StrCat(
            where("hash_ids"), " must hold non-negative integers"));
      request.hash_ids.push_back(id.get<uint64_t>());
    }
    requests.push_back(std::move(request));
  }
  return requests;
}

void HitCounts::Add(const HitCounts& other) {
  requests += other.requests;
  blocks += other.blocks;
  blocks_hit += other.blocks_hit;
  tokens += other.tokens;
  tokens_hit += other.tokens_hit;
}

HitCounts CountPrefixHits(const TraceRequest& request,
                          uint32_t matched_tokens) {
  HitCounts counts;
  counts.requests = 1;
  uint64_t end = 0;
  bool missed = false;
  for (size_t i = 0; i < request.hash_ids.size(); ++i) {
    const uint32_t tokens = request.BlockTokens(i);
    end += tokens;
    ++counts.blocks;
    counts.tokens += tokens;
    if (!missed && end <= matched_tokens) {
      ++counts.blocks_hit;
      counts.tokens_hit += tokens;
    } else {
      missed = true;
    }
  }
  return counts;
}

uint64_t DistinctBlocks(const std::vector<TraceRequest>& requests) {
  absl::flat_hash_set<uint64_t> seen;
  for (const TraceRequest& request : requests)
    seen.insert(request.hash_ids.begin(), request.hash_ids.end());
  return seen.size();
}

HitCounts SimulateLruCache(const std::vector<TraceRequest>& requests,
                           uint64_t capacity_blocks) {
  // Most recently used at the front.
  std::list<uint64_t> order;
  absl::flat_hash_map<uint64_t, std::list<uint64_t>::iterator> where;
  HitCounts total;
  for (const TraceRequest& request : requests) {
    uint32_t matched = 0;
    bool missed = false;
    for (size_t i = 0; i < request.hash_ids.size(); ++i) {
      const uint64_t id = request.hash_ids[i];
      auto it = where.find(id);
      if (it != where.end()) {
        if (!missed) matched += request.BlockTokens(i);
        order.splice(order.begin(), order, it->second);
      } else {
        missed = true;
        order.push_front(id);
        where[id] = order.begin();
        if (capacity_blocks > 0 && order.size() > capacity_blocks) {
          where.erase(order.back());
          order.pop_back();
        }
      }
    }
    total.Add(CountPrefixHits(request, matched));
  }
  return total;
}

}  // namespace seqkv::bench
