#include "server/read_path.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/chunk_layout.h"
#include "server/stored_chunk.h"

namespace seqkv {
namespace {

std::span<const int32_t> Span(
    const google::protobuf::RepeatedField<int32_t>& r) {
  return {r.data(), static_cast<size_t>(r.size())};
}

// The buffers one chunk's part of a Get needs, taken from the memory
// budget on the request's thread so that a worker never waits for it.
struct ChunkBuffers {
  // Tokens [from, to) of the chunk in wire order, one message after another
  // (owned), or one span of the caller's destination.
  std::vector<ChunkBuffer> messages;
  std::vector<std::span<char>> targets;
  // The whole chunk decoded, for a payload that must be decoded.
  ChunkBuffer decoded;
  // The tokens before and after the range, for a payload stored in wire
  // order: they are read too, because the checksum covers them.
  ChunkBuffer before, after;
};

// Fills `buffers.messages`. A chunk stored verbatim in wire order is read
// straight into them; other payloads are decoded into a chunk, then moved
// into wire order.
absl::Status ReadToMessages(const ChunkDecoding& decoding,
                            const std::shared_ptr<const Model>& model,
                            const Codec& codec, const NodeRecord& record,
                            uint32_t from, uint32_t to, ChunkBuffers& buffers) {
  const Trie& trie = *decoding.trie;
  const KvLayout& layout = model->context.layout;
  const ChunkInfo info{&layout, static_cast<uint32_t>(record.tokens_size()),
                       record.first_position(), Span(record.tokens())};
  const size_t token_bytes = layout.bytes_per_token();
  if (record.payload_token_major()) {
    std::vector<std::span<char>> pieces;
    pieces.emplace_back(buffers.before.str());
    for (std::span<char> target : buffers.targets) pieces.push_back(target);
    pieces.emplace_back(buffers.after.str());
    return trie.ReadPayloadInto(record, pieces);
  }
  auto payload = trie.ReadPayload(record);
  if (!payload.ok()) return payload.status();
  std::span<const std::byte> chunk = std::as_bytes(std::span(payload->view()));
  if (HasReferences(record)) {
    // DATA_LOSS for damage; a memory or store refusal keeps its code, so
    // that the chunk is not taken for damaged.
    if (auto status =
            DecodeStoredChunk(decoding, model, codec, record, payload->view(),
                              buffers.decoded.bytes());
        !status.ok())
      return status;
    chunk = buffers.decoded.bytes();
  } else if (!codec.stores_chunk_verbatim()) {
    if (auto status =
            codec.Decode(info, payload->view(), buffers.decoded.bytes());
        !status.ok())
      return absl::DataLossError(
          absl::StrCat("its payload does not decode: ", status.message()));
    chunk = buffers.decoded.bytes();
  } else if (chunk.size() != info.num_bytes()) {
    return absl::DataLossError(absl::StrCat(
        "payload has ", chunk.size(), " bytes, expected ", info.num_bytes()));
  }
  for (std::span<char> target : buffers.targets) {
    const uint32_t count = static_cast<uint32_t>(target.size() / token_bytes);
    ChunkToTokenMajor(layout, info.num_tokens, chunk, from, from + count,
                      std::as_writable_bytes(target));
    from += count;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ChunkReader::Read(const std::shared_ptr<const Model>& model,
                               std::span<const TrieNode> nodes, uint32_t begin,
                               uint32_t end, size_t message_bytes,
                               const std::function<bool(std::string&)>& on_data,
                               const TrieNode** damaged) {
  return ReadSegments(model, nodes, begin, end, message_bytes, &on_data, {},
                      damaged);
}

absl::Status ChunkReader::ReadInto(const std::shared_ptr<const Model>& model,
                                   std::span<const TrieNode> nodes,
                                   uint32_t begin, uint32_t end,
                                   std::span<std::byte> destination,
                                   const TrieNode** damaged) {
  if (destination.size() !=
      uint64_t{end - begin} * model->context.layout.bytes_per_token())
    return absl::InternalError("a Get's destination is not its range's size");
  return ReadSegments(model, nodes, begin, end, 0, nullptr, destination,
                      damaged);
}

absl::Status ChunkReader::ReadSegments(
    const std::shared_ptr<const Model>& model, std::span<const TrieNode> nodes,
    uint32_t begin, uint32_t end, size_t message_bytes,
    const std::function<bool(std::string&)>* on_data,
    std::span<std::byte> destination, const TrieNode** damaged) {
  const bool into_destination = on_data == nullptr;
  const KvLayout& layout = model->context.layout;
  // The pieces of matched chunks that fall in [begin, end).
  struct Segment {
    const TrieNode* node;
    uint32_t from, to;  // token offsets inside the chunk
    std::shared_ptr<const Codec> codec;
    uint32_t node_start;  // the chunk's first token in the match
  };
  std::vector<Segment> segments;
  uint32_t node_start = 0;
  for (const TrieNode& node : nodes) {
    const uint32_t from = std::max(begin, node_start);
    const uint32_t to = std::min(end, node_start + node.matched_tokens);
    if (from < to) {
      auto codec = codecs_->CodecForChunk(model, node.record.codec(),
                                          node.record.codec_state_version());
      if (!codec.ok())
        return absl::DataLossError(absl::StrCat(
            "stored chunk uses codec '", node.record.codec(),
            "' which this server cannot build: ", codec.status().message()));
      segments.push_back(
          {&node, from - node_start, to - node_start, *codec, node_start});
    }
    node_start += node.matched_tokens;
  }
  // Decode on the worker pool, one chunk ahead of the one being sent, into
  // the messages' own buffers: whole tokens per message where a token fits
  // one, so nothing is copied again to split them.
  const size_t token_bytes = layout.bytes_per_token();
  const uint32_t tokens_per_message =
      static_cast<uint32_t>(std::max<size_t>(1, message_bytes / token_bytes));
  struct DecodeJob {
    ChunkBuffers buffers;
    absl::Status status;
    bool damaged = false;  // the stored chunk itself is unreadable
    absl::Notification done;
  };
  auto acquire = [&](size_t bytes) -> absl::StatusOr<ChunkBuffer> {
    return buffers_->Acquire(bytes, "a Get's chunk buffer");
  };
  auto start_decode = [&](const Segment& segment)
      -> absl::StatusOr<std::unique_ptr<DecodeJob>> {
    auto job = std::make_unique<DecodeJob>();
    ChunkBuffers& buffers = job->buffers;
    const NodeRecord& record = segment.node->record;
    if (into_destination) {
      const uint32_t out = segment.node_start + segment.from - begin;
      buffers.targets.push_back(
          std::span(reinterpret_cast<char*>(destination.data()) +
                        size_t{out} * token_bytes,
                    size_t{segment.to - segment.from} * token_bytes));
    }
    for (uint32_t first = segment.from; !into_destination && first < segment.to;
         first += tokens_per_message) {
      auto message =
          acquire(size_t{std::min(segment.to - first, tokens_per_message)} *
                  token_bytes);
      if (!message.ok()) return message.status();
      buffers.messages.push_back(*std::move(message));
    }
    for (ChunkBuffer& message : buffers.messages)
      buffers.targets.push_back(message.str());
    const uint32_t chunk_tokens = record.tokens_size();
    if (record.payload_token_major()) {
      auto before = acquire(size_t{segment.from} * token_bytes);
      if (!before.ok()) return before.status();
      buffers.before = *std::move(before);
      auto after = acquire(size_t{chunk_tokens - segment.to} * token_bytes);
      if (!after.ok()) return after.status();
      buffers.after = *std::move(after);
    } else if (!segment.codec->stores_chunk_verbatim()) {
      auto decoded = acquire(size_t{chunk_tokens} * token_bytes);
      if (!decoded.ok()) return decoded.status();
      buffers.decoded = *std::move(decoded);
    }
    pool_->Submit([this, &model, &segment, into_destination, raw = job.get()] {
      const NodeRecord& record = segment.node->record;
      raw->status = ReadToMessages({.trie = trie_,
                                    .codecs = codecs_,
                                    .buffers = buffers_,
                                    .cache = decoded_},
                                   model, *segment.codec, record, segment.from,
                                   segment.to, raw->buffers);
      if (into_destination && absl::IsDataLoss(raw->status) &&
          record.payload_token_major() && trie_->ReadPayload(record).ok()) {
        // Checked where another process may write: read privately, the
        // payload is whole, so the destination changed under the read.
        raw->status = absl::AbortedError(absl::StrCat(
            "the destination's bytes changed while chunk ",
            segment.node->key.Hex(),
            " was read into it (the client wrote there during the Get)"));
      }
      raw->buffers.decoded.reset();
      raw->buffers.before.reset();
      raw->buffers.after.reset();
      if (!raw->status.ok() && RemovedUnderRead(segment.node->key, record))
        raw->status = absl::AbortedError(
            absl::StrCat("stored chunk ", segment.node->key.Hex(),
                         " was deleted or evicted while this Get read it; "
                         "retry the Get"));
      else if (!raw->status.ok() && !absl::IsAborted(raw->status)) {
        raw->damaged = absl::IsDataLoss(raw->status);
        raw->status =
            absl::Status(raw->status.code(),
                         absl::StrCat("stored chunk ", segment.node->key.Hex(),
                                      ": ", raw->status.message()));
      }
      raw->done.Notify();
    });
    return job;
  };
  std::unique_ptr<DecodeJob> next;
  if (!segments.empty()) {
    auto first = start_decode(segments[0]);
    if (!first.ok()) return first.status();
    next = *std::move(first);
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    std::unique_ptr<DecodeJob> current = std::exchange(next, nullptr);
    absl::Status status;
    if (i + 1 < segments.size()) {
      auto started = start_decode(segments[i + 1]);
      if (started.ok()) {
        next = *std::move(started);
      } else {
        status = started.status();
      }
    }
    current->done.WaitForNotification();
    if (status.ok()) status = current->status;
    if (current->damaged && damaged != nullptr) *damaged = segments[i].node;
    for (ChunkBuffer& buffer : current->buffers.messages) {
      if (!status.ok()) break;
      std::string& message = buffer.str();
      if (message.size() <= message_bytes) {
        if (!(*on_data)(message))
          status = absl::CancelledError("client went away");
        continue;
      }
      // A token larger than a message is sent in slices.
      for (size_t offset = 0; status.ok() && offset < message.size();
           offset += message_bytes) {
        std::string piece = message.substr(offset, message_bytes);
        if (!(*on_data)(piece))
          status = absl::CancelledError("client went away");
      }
    }
    if (!status.ok()) {
      if (next) next->done.WaitForNotification();  // it points at segments
      return status;
    }
  }
  return absl::OkStatus();
}

bool ChunkReader::RemovedUnderRead(const NodeKey& key,
                                   const NodeRecord& record) const {
  auto now = trie_->ReadNode(key);
  // Gone, or stored again by a later Put under another payload key.
  return now.ok() &&
         (!now->has_value() || (*now)->payload_key() != record.payload_key());
}

}  // namespace seqkv
