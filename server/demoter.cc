#include "server/demoter.h"

#include <cstring>
#include <utility>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "server/chunk_layout.h"
#include "server/stored_chunk.h"
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

std::string Demoter::TierCodec(const ModelContext& model,
                               const std::string& model_key, uint32_t from,
                               uint32_t to) {
  const std::string key = absl::StrCat(model_key, "/", from, "/", to);
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = tier_codecs_.find(key); it != tier_codecs_.end())
      return it->second;
  }
  std::string spec = LossyTierCodec(model, from, to);
  absl::MutexLock lock(&mutex_);
  return tier_codecs_.try_emplace(key, std::move(spec)).first->second;
}

uint64_t Demoter::DemoteUnderPressure() {
  uint64_t demoted = 0;
  for (bool progress = true; progress;) {
    progress = false;
    // The step most needed first; the tiers' sizes are taken anew after
    // each batch.
    for (const Retention::DemotionStep& step :
         resources_.retention->DemotionsDue(options_.shares)) {
      {
        absl::MutexLock lock(&mutex_);
        if (stop_) return demoted;
      }
      auto batch = DemoteSome(step, options_.chunks_per_step);
      if (!batch.ok()) {
        spdlog::warn("demotion in namespace '{}' failed: {}", step.name_space,
                     batch.status().ToString());
        continue;
      }
      if (batch->handled > 0) {
        demoted += batch->demoted;
        progress = true;
        break;
      }
    }
  }
  return demoted;
}

absl::StatusOr<Demoter::Batch> Demoter::DemoteSome(
    const Retention::DemotionStep& step, int max_chunks) {
  if (step.from >= step.to || step.to > kLossyTiers)
    return absl::InvalidArgumentError(
        absl::StrCat("no demotion from tier ", step.from, " to ", step.to));
  Batch batch;
  std::vector<Trie::PayloadReplacement> staged;
  absl::flat_hash_set<NodeKey> in_hand;
  absl::Status status;
  // Sampling may offer a chunk already in hand: a few tries more.
  for (int tries = 0; tries < 2 * max_chunks &&
                      staged.size() < static_cast<size_t>(max_chunks);
       ++tries) {
    auto key = resources_.index->NextDemotion(step.name_space, step.from);
    if (!key) break;
    if (in_hand.contains(*key)) continue;
    auto prepared = Prepare(step, *key);
    if (!prepared.ok()) {
      // Memory is short: the chunk is left for a later pass.
      if (!absl::IsResourceExhausted(prepared.status()))
        status = prepared.status();
      break;
    }
    ++batch.handled;
    if (!*prepared) continue;
    in_hand.insert(*key);
    staged.push_back(std::move(**prepared));
  }
  Trie& trie = *resources_.trie;
  std::vector<bool> replaced(staged.size(), false);
  if (!staged.empty() && status.ok()) {
    // One write for the batch: the writer lock is taken once.
    absl::MutexLock lock(resources_.write_mutex);
    auto swapped = trie.ReplacePayloads(staged);
    if (swapped.ok()) {
      replaced = *std::move(swapped);
      for (size_t i = 0; i < staged.size(); ++i)
        if (replaced[i])
          resources_.index->ChangeTier(staged[i].key, staged[i].replacement);
    } else {
      status = swapped.status();
    }
  }
  // Evicted, upgraded or quarantined meanwhile (or not written): nothing
  // lost, the staged payload goes.
  std::vector<PendingNode> discard;
  for (size_t i = 0; i < staged.size(); ++i) {
    if (replaced[i]) {
      ++batch.demoted;
    } else {
      discard.push_back(PendingNode{staged[i].key, staged[i].replacement});
    }
  }
  if (!discard.empty()) trie.DiscardPayloads(discard);
  if (!status.ok()) return status;
  return batch;
}

absl::StatusOr<std::optional<Trie::PayloadReplacement>> Demoter::Prepare(
    const Retention::DemotionStep& step, const NodeKey& key) {
  NodeIndex& index = *resources_.index;
  Trie& trie = *resources_.trie;
  auto stored = trie.ReadNode(key);
  if (!stored.ok()) return stored.status();
  // Each way out that leaves the chunk where it is also stops it from
  // being offered again, so that the loop moves on.
  auto keep = [&]() -> std::optional<Trie::PayloadReplacement> {
    index.KeepTier(key);
    return std::nullopt;
  };
  if (!stored->has_value()) return keep();  // removed meanwhile
  const NodeRecord& record = **stored;
  const uint32_t from = TierOf(record);
  if (from >= kLossyTiers) return keep();
  // Coded against other chunks, or others coded against it: kept as it
  // is, since their decoding depends on its bytes.
  if (HasReferences(record)) return keep();
  if (auto referenced = trie.IsReferenced(record.payload_key());
      !referenced.ok() || *referenced)
    return keep();
  // Changed meanwhile: the index follows.
  if (from != step.from) return std::nullopt;
  // The chunk's model: its namespace's own, else one stored before owners.
  std::string model_owner = record.namespace_();
  auto model = resources_.models->Find({model_owner, record.model()});
  if (!model.ok()) {
    model_owner.clear();
    model = resources_.models->Find({"", record.model()});
  }
  if (!model.ok()) return keep();
  const KvLayout& layout = (*model)->context.layout;
  const ChunkInfo info{&layout, static_cast<uint32_t>(record.tokens_size()),
                       record.first_position(), TokensOf(record)};
  // Registered again with another layout: not this chunk's model.
  if (info.num_bytes() != record.bytes_logical()) return keep();
  auto source = resources_.codecs->CodecForChunk(*model, record.codec(),
                                                 record.codec_state_version());
  if (!source.ok() || (from == 0 && !(*source)->lossless())) return keep();
  auto target = resources_.codecs->CodecFor(
      *model, TierCodec((*model)->context,
                        absl::StrCat(model_owner, "/", record.model(), "/",
                                     (*model)->codec_state_version()),
                        from, step.to));
  if (!target.ok()) {
    ReportOnce(record.model(), target.status());
    return keep();
  }

  auto chunk = resources_.buffers->Acquire(info.num_bytes(), "a demotion");
  if (!chunk.ok()) return chunk.status();
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

  Trie::PayloadReplacement swap{key, record.payload_key(), record};
  NodeRecord& demoted = swap.replacement;
  std::string payload_key = key.Bytes();
  char id[8];
  absl::big_endian::Store64(id, resources_.next_payload_id());
  payload_key.append(id, 8);
  demoted.set_payload_key(std::move(payload_key));
  demoted.set_codec((*target)->spec());
  demoted.set_codec_state_version((*model)->codec_state_version());
  demoted.set_payload_token_major(false);
  demoted.set_lossy_tier(step.to);
  if (auto status = trie.StagePayload(encoded, demoted); !status.ok()) {
    trie.DiscardPayloads({{PendingNode{key, demoted}}});
    return status;
  }
  return swap;
}

}  // namespace seqkv
