// Demotion: re-encodes the chunks the retention policy values least to the
// lossy fidelity tiers (server/tiers.h) while a namespace or the store is
// near its limit, so that eviction, which drops KV, comes later.
//
// It runs on a thread of its own, never inside a request: a chunk is read,
// decoded and re-encoded with no lock held, its new payload staged, and
// only the swap of the two payloads takes the trie's writer lock
// (Trie::ReplacePayload: a crash leaves the old payload or the new one).
// A chunk is demoted only from a lossless codec (or from a lossy tier),
// so that every tier's error target holds against what the Put sent.
#ifndef SEQKV_SERVER_DEMOTER_H_
#define SEQKV_SERVER_DEMOTER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/chunk_buffer_pool.h"
#include "server/codec_cache.h"
#include "server/node_index.h"
#include "server/retention.h"
#include "server/tiers.h"
#include "storage/model_registry.h"
#include "storage/trie.h"

namespace seqkv {

struct DemoterOptions {
  // How much of a limit (an evicting quota, or the capacity) each tier may
  // hold; eviction starts at the limit itself.
  TierShares shares;
  // Chunks demoted per step before the tiers' sizes are looked at again.
  int chunks_per_step = 16;
  // How often it looks without being woken.
  absl::Duration interval = absl::Seconds(1);
};

// Thread-safe. Everything it is given must outlive it.
class Demoter {
 public:
  struct Resources {
    Trie* trie;
    NodeIndex* index;
    Retention* retention;
    ModelRegistry* models;
    CodecCache* codecs;
    ChunkBufferPool* buffers;
    // The trie's writer lock, held for each payload swap.
    absl::Mutex* write_mutex;
    // A number no other payload of the same node uses (see NewChunk).
    std::function<uint64_t()> next_payload_id;
  };
  Demoter(Resources resources, DemoterOptions options);
  // Stops the thread, finishing the chunk in hand.
  ~Demoter();
  Demoter(const Demoter&) = delete;
  Demoter& operator=(const Demoter&) = delete;

  // Starts the thread.
  void Start();
  // Asks it to look now (after a commit added bytes).
  void Wake();

  // Demotes chunks until no tier holds more than its share of a limit or
  // none can go further; returns how many it demoted. The thread calls it;
  // tests too.
  uint64_t DemoteUnderPressure();

  // What DemoteSome did: chunks it took up (0: none left at the tier), and
  // of those, the ones demoted.
  struct Batch {
    uint32_t handled = 0;
    uint32_t demoted = 0;
  };
  // Demotes up to `max_chunks` chunks of `step.name_space` from tier
  // `step.from` to `step.to`, re-encoded one by one with no lock held and
  // swapped in one write under the writer lock. A chunk that cannot be
  // demoted (a lossy codec, a model gone, a codec error) is left at its
  // tier and not offered again.
  absl::StatusOr<Batch> DemoteSome(const Retention::DemotionStep& step,
                                   int max_chunks);

 private:
  void Run();
  // Reads `key`'s chunk, re-encodes it for `step` and stages the new
  // payload: the swap to make, or none where the chunk stays (left at its
  // tier, or changed meanwhile). RESOURCE_EXHAUSTED while the server's
  // chunk memory is short.
  absl::StatusOr<std::optional<Trie::PayloadReplacement>> Prepare(
      const Retention::DemotionStep& step, const NodeKey& key);
  // Logs once per model why its chunks stay at their tier.
  void ReportOnce(const std::string& model, const absl::Status& why);
  // The codec spec of a step from `from` to `to` for `model`
  // (LossyTierCodec, which parses the model's profile), kept by
  // `model_key`: the model's owner, name and state version.
  std::string TierCodec(const ModelContext& model, const std::string& model_key,
                        uint32_t from, uint32_t to);

  const Resources resources_;
  const DemoterOptions options_;
  absl::Mutex mutex_;
  bool wake_ ABSL_GUARDED_BY(mutex_) = false;
  bool stop_ ABSL_GUARDED_BY(mutex_) = false;
  // Models whose chunks could not be demoted, each logged once.
  absl::flat_hash_set<std::string> reported_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, std::string> tier_codecs_
      ABSL_GUARDED_BY(mutex_);
  std::thread thread_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_DEMOTER_H_
