#include "server/put_session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/chunk_layout.h"
#include "spdlog/spdlog.h"

namespace seqkv {

PutSession::PutSession(Resources resources, Target target)
    : resources_(std::move(resources)),
      target_(std::move(target)),
      parent_(RootKey(target_.name_space, target_.model->fingerprint)) {}

PutSession::~PutSession() {
  Collect(0).IgnoreError();  // tasks point into this session
  if (!committed_) resources_.trie->DiscardPayloads(staged_);
  if (resources_.on_done) resources_.on_done();
}

uint64_t PutSession::data_bytes() const {
  return uint64_t{target_.tokens.size()} *
         target_.model->context.layout.bytes_per_token();
}

absl::Status PutSession::Collect(size_t keep) {
  absl::Status first_error;
  while (in_flight_.size() > keep) {
    std::unique_ptr<EncodeJob> job = std::move(in_flight_.front());
    in_flight_.pop_front();
    job->done.WaitForNotification();
    if (job->status.ok()) {
      staged_.push_back(std::move(job->node));
    } else if (first_error.ok()) {
      // Its payload may be half written; discard it with the rest.
      staged_.push_back(std::move(job->node));
      first_error = job->status;
    }
  }
  return first_error;
}

absl::Status PutSession::Append(std::string_view bytes) {
  const KvLayout& layout = target_.model->context.layout;
  const size_t token_bytes = layout.bytes_per_token();
  const uint64_t expected = data_bytes();
  if (bytes_received_ + bytes.size() > expected)
    return absl::InvalidArgumentError(absl::StrCat(
        "data exceeds the ", expected, " bytes that ", target_.tokens.size(),
        " tokens of layout ", layout.DebugString(), " need"));
  bytes_received_ += bytes.size();
  // Tokens go straight from the message into their places in the chunk;
  // only a token split across messages is copied twice.
  while (!bytes.empty()) {
    if (!chunk_) {
      chunk_size_ = std::min<uint32_t>(target_.model->chunk_tokens,
                                       target_.tokens.size() - next_token_);
      auto chunk = resources_.buffers->Acquire(
          size_t{chunk_size_} * token_bytes,
          absl::StrCat("a chunk of ", chunk_size_, " tokens"));
      if (!chunk.ok()) return chunk.status();
      chunk_ = *std::move(chunk);
      chunk_filled_ = 0;
    }
    if (!partial_token_.empty() || bytes.size() < token_bytes) {
      const size_t take =
          std::min(bytes.size(), token_bytes - partial_token_.size());
      partial_token_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (partial_token_.size() < token_bytes) break;
      PlaceTokens(std::as_bytes(std::span(partial_token_)), 1);
      partial_token_.clear();
    } else {
      const uint32_t count = static_cast<uint32_t>(std::min<size_t>(
          bytes.size() / token_bytes, chunk_size_ - chunk_filled_));
      PlaceTokens(std::as_bytes(std::span(bytes.data(), count * token_bytes)),
                  count);
      bytes.remove_prefix(count * token_bytes);
    }
    if (chunk_filled_ == chunk_size_) {
      if (auto status = FlushChunk(); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

void PutSession::PlaceTokens(std::span<const std::byte> token_major,
                             uint32_t count) {
  const KvLayout& layout = target_.model->context.layout;
  if (target_.codec->stores_chunk_verbatim()) {
    // Kept in wire order, so that a Get reads it straight into messages.
    std::memcpy(
        chunk_.bytes().data() + chunk_filled_ * layout.bytes_per_token(),
        token_major.data(), token_major.size());
  } else {
    ScatterTokens(layout, chunk_size_, chunk_filled_, count, token_major,
                  chunk_.bytes());
  }
  chunk_filled_ += count;
}

absl::Status PutSession::FlushChunk() {
  const Model& model = *target_.model;
  const KvLayout& layout = model.context.layout;
  const uint32_t count = chunk_size_;
  const std::span<const int32_t> chunk_tokens(
      target_.tokens.data() + next_token_, count);
  const NodeKey key = ChildKey(parent_, chunk_tokens);
  auto existing = resources_.trie->ReadNode(key);
  if (!existing.ok()) return existing.status();
  std::optional<std::string> upgrades;
  if (existing->has_value()) {
    const auto& stored = (*existing)->tokens();
    if (!std::equal(chunk_tokens.begin(), chunk_tokens.end(), stored.begin(),
                    stored.end()))
      return absl::InternalError(
          absl::StrCat("hash collision on trie node ", key.Hex()));
    // Held at a lower fidelity (demoted, or tokens only): this Put stores
    // it again as sent.
    if ((*existing)->tokens_only() || (*existing)->lossy_tier() > 0)
      upgrades = (*existing)->payload_key();
  }
  if (existing->has_value() && !upgrades) {
    path_.push_back(key);
    chunk_.reset();
  } else {
    const Codec& codec = *target_.codec;
    auto job = std::make_unique<EncodeJob>();
    job->node = NewPendingNode(
        {.parent = parent_,
         .tokens = chunk_tokens,
         .depth = next_token_ / model.chunk_tokens,
         .first_position = next_token_,
         .codec = codec.spec(),
         .token_major = codec.stores_chunk_verbatim(),
         .bytes_logical = uint64_t{count} * layout.bytes_per_token(),
         .name_space = target_.name_space,
         .model = model.record.name(),
         .codec_state_version = model.codec_state_version(),
         .put_id = target_.put_id},
        absl::ToUnixMicros(absl::Now()));
    job->node.upgrades = std::move(upgrades);
    job->chunk = std::move(chunk_);
    EncodeJob* raw = job.get();
    resources_.pool->Submit([this, raw, &codec, parent = parent_,
                             info = ChunkInfo{&layout, count, next_token_,
                                              chunk_tokens}] {
      const std::span<const std::byte> chunk = raw->chunk.bytes();
      std::string payload;
      std::string_view stored;
      if (codec.stores_chunk_verbatim()) {
        stored = {reinterpret_cast<const char*>(chunk.data()), chunk.size()};
      } else if (resources_.planner != nullptr &&
                 codec.codes_against_references()) {
        raw->status = EncodeAgainstReferences(parent, *raw, payload);
        stored = payload;
      } else {
        raw->status = codec.Encode(info, chunk, payload);
        stored = payload;
      }
      if (raw->status.ok())
        raw->status = resources_.trie->StagePayload(stored, raw->node.record);
      raw->chunk.reset();
      raw->done.Notify();
    });
    in_flight_.push_back(std::move(job));
    if (auto status = Collect(kMaxChunksInFlight); !status.ok()) return status;
  }
  parent_ = key;
  next_token_ += count;
  return absl::OkStatus();
}

absl::Status PutSession::EncodeAgainstReferences(const NodeKey& parent,
                                                 EncodeJob& job,
                                                 std::string& payload) const {
  const Codec& codec = *target_.codec;
  const KvLayout& layout = target_.model->context.layout;
  NodeRecord& record = job.node.record;
  const std::span<const int32_t> tokens(record.tokens().data(),
                                        record.tokens_size());
  const ChunkInfo whole{&layout, static_cast<uint32_t>(tokens.size()),
                        record.first_position(), tokens};
  const std::span<const std::byte> chunk = job.chunk.bytes();
  auto on_its_own = [&] {
    record.clear_references();
    record.clear_reference_runs();
    record.set_copied_tokens(0);
    record.set_reference_depth(0);
    payload.clear();
    return codec.Encode(whole, chunk, payload);
  };
  if (!resources_.planner
           ->Plan({.parent = parent,
                   .name_space = target_.name_space,
                   .model = target_.model->record.name(),
                   .codec = record.codec(),
                   .tokens = tokens,
                   .bytes_per_token = layout.bytes_per_token()},
                  record)
           .ok() ||
      !HasReferences(record))
    return on_its_own();
  auto references =
      DecodeReferences(resources_.decoding, target_.model, record);
  if (!references.ok()) {
    spdlog::debug(
        "a chunk is coded on its own: the chunks it could be "
        "coded against do not decode: {}",
        references.status().ToString());
    return on_its_own();
  }
  const uint32_t copied = record.copied_tokens();
  const ChunkInfo part = CodedPart(layout, record, &references->references);
  std::span<const std::byte> data = chunk;
  ChunkBuffer rest;
  if (copied > 0) {
    auto buffer =
        resources_.buffers->Acquire(part.num_bytes(), "a chunk's coded part");
    if (!buffer.ok()) return buffer.status();
    rest = *std::move(buffer);
    CopyChunkTokens(layout, chunk, whole.num_tokens, copied, rest.bytes(),
                    part.num_tokens, 0, part.num_tokens);
    data = rest.bytes();
  }
  if (auto status = codec.Encode(part, data, payload); !status.ok()) {
    spdlog::debug("a chunk is coded on its own: {}", status.ToString());
    return on_its_own();
  }
  return absl::OkStatus();
}

absl::Status PutSession::Seal() {
  const uint64_t expected = data_bytes();
  if (bytes_received_ != expected)
    return absl::InvalidArgumentError(absl::StrCat(
        "stream ended after ", bytes_received_, " of the ", expected,
        " data bytes that ", target_.tokens.size(), " tokens need"));
  // Every chunk was handed off when its last token arrived.
  return Collect(0);
}

}  // namespace seqkv
