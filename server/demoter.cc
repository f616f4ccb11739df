#include "server/demoter.h"

#include <cstring>
#include <utility>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "server/chunk_layout.h"
#include "server/tiers.h"
#include "spdlog/spdlog.h"

namespace seqkv {
namespace {

std::span<const int32_t> TokensOf(const NodeRecord& record) {
  return {record.tokens().data(), static_cast<size_t>(record.tokens_size())};
}

}  // namespace

Demoter::Demoter(Resources resources, DemoterOptions options)
    : resources_(std::move(resources)), options_(options) {}

Demoter::~Demoter() {
  {
    absl::MutexLock lock(&mutex_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Demoter::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Demoter::Wake() {
  absl::MutexLock lock(&mutex_);
  wake_ = true;
}

void Demoter::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return wake_ || stop_;
      };
      mutex_.AwaitWithTimeout(absl::Condition(&woken), options_.interval);
      if (stop_) return;
      wake_ = false;
    }
    DemoteUnderPressure();
  }
}

void Demoter::ReportOnce(const std::string& model, const absl::Status& why) {
  {
    absl::MutexLock lock(&mutex_);
    if (!reported_.insert(model).second) return;
  }
  spdlog::info(
      "chunks of model '{}' stay at their tier where they cannot be demoted "
      "(logged once): {}",
      model, why.ToString());
}

uint64_t Demoter::DemoteUnderPressure() {
  uint64_t demoted = 0;
  for (bool progress = true; progress;) {
    progress = false;
    {
      absl::MutexLock lock(&mutex_);
      if (stop_) break;
    }
    // The namespace storing the most first; the order is taken anew after
    // each chunk.
    for (const std::string& ns :
         resources_.retention->NamespacesToDemote(options_.demote_above)) {
      auto one = DemoteOne(ns);
      if (!one.ok()) {
        spdlog::warn("demotion in namespace '{}' failed: {}", ns,
                     one.status().ToString());
        continue;
      }
      if (*one) {
        ++demoted;
        progress = true;
        break;
      }
    }
  }
  return demoted;
}

absl::StatusOr<bool> Demoter::DemoteOne(const std::string& name_space) {
  NodeIndex& index = *resources_.index;
  Trie& trie = *resources_.trie;
  auto key = index.NextDemotion(name_space, kLossyTiers);
  if (!key) return false;
  auto stored = trie.ReadNode(*key);
  if (!stored.ok()) return stored.status();
  // Each way out that leaves the chunk where it is also stops it from
  // being offered again, so that the loop moves on.
  auto keep = [&] {
    index.KeepTier(*key);
    return true;
  };
  if (!stored->has_value()) return keep();  // removed meanwhile
  const NodeRecord& record = **stored;
  const uint32_t from = TierOf(record);
  if (from >= kLossyTiers) return keep();
  // The chunk's model: its namespace's own, else one stored before owners.
  auto model = resources_.models->Find({record.namespace_(), record.model()});
  if (!model.ok()) model = resources_.models->Find({"", record.model()});
  if (!model.ok()) return keep();
  const KvLayout& layout = (*model)->context.layout;
  const ChunkInfo info{&layout, static_cast<uint32_t>(record.tokens_size()),
                       record.first_position(), TokensOf(record)};
  // Registered again with another layout: not this chunk's model.
  if (info.num_bytes() != record.bytes_logical()) return keep();
  auto source = resources_.codecs->CodecForChunk(*model, record.codec(),
                                                 record.codec_state_version());
  if (!source.ok() || (from == 0 && !(*source)->lossless())) return keep();
  const uint32_t to = from + 1;
  auto target = resources_.codecs->CodecFor(
      *model, LossyTierCodec((*model)->context, from, to));
  if (!target.ok()) {
    ReportOnce(record.model(), target.status());
    return keep();
  }

  auto chunk = resources_.buffers->Acquire(info.num_bytes(), "a demotion");
  if (!chunk.ok()) return false;  // memory is short: try again later
  auto payload = trie.ReadPayload(record);
  if (!payload.ok()) return keep();  // a Get quarantines a damaged chunk
  const std::span<const std::byte> bytes =
      std::as_bytes(std::span(payload->view()));
  if (record.payload_token_major()) {
    if (bytes.size() != info.num_bytes()) return keep();
    TokenMajorToChunk(layout, info.num_tokens, bytes, chunk->bytes());
  } else if ((*source)->stores_chunk_verbatim()) {
    if (bytes.size() != info.num_bytes()) return keep();
    std::memcpy(chunk->bytes().data(), bytes.data(), bytes.size());
  } else if (!(*source)->Decode(info, payload->view(), chunk->bytes()).ok()) {
    return keep();
  }
  std::string encoded;
  if (auto status = (*target)->Encode(info, chunk->bytes(), encoded);
      !status.ok()) {
    ReportOnce(record.model(), status);
    return keep();
  }

  NodeRecord demoted = record;
  std::string payload_key = key->Bytes();
  char id[8];
  absl::big_endian::Store64(id, resources_.next_payload_id());
  payload_key.append(id, 8);
  demoted.set_payload_key(std::move(payload_key));
  demoted.set_codec((*target)->spec());
  demoted.set_codec_state_version((*model)->codec_state_version());
  demoted.set_payload_token_major(false);
  demoted.set_lossy_tier(to);
  if (auto status = trie.StagePayload(encoded, demoted); !status.ok()) {
    trie.DiscardPayloads({{PendingNode{*key, demoted}}});
    return status;
  }
  absl::Status swapped;
  {
    absl::MutexLock lock(resources_.write_mutex);
    swapped = trie.ReplacePayload(*key, record.payload_key(), demoted);
    if (swapped.ok()) index.ChangeTier(*key, demoted);
  }
  if (!swapped.ok()) {
    trie.DiscardPayloads({{PendingNode{*key, demoted}}});
    // Evicted, upgraded or quarantined meanwhile: nothing lost.
    if (absl::IsFailedPrecondition(swapped)) return true;
    return swapped;
  }
  return true;
}

}  // namespace seqkv
