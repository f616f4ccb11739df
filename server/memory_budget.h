// The server-wide budget for request memory: the chunks a Put assembles,
// the buffers a Get decodes and sends from, and the codec state a
// RegisterModelStream accumulates. Every such allocation reserves its bytes
// here first, so that no mix of requests, however hostile their declared
// sizes, holds more than the budget at once.
#ifndef SEQKV_SERVER_MEMORY_BUDGET_H_
#define SEQKV_SERVER_MEMORY_BUDGET_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace seqkv {

struct MemoryBudgetOptions {
  // Bytes that may be reserved at once (0: unlimited).
  uint64_t limit_bytes = 0;
  // How long a reservation waits for others to be released before it is
  // refused.
  absl::Duration max_wait = absl::Seconds(2);
};

class MemoryBudget;

// Bytes held from a budget until the reservation is destroyed or reset.
// Move-only; not thread-safe (one owner), though reservations of one budget
// may be used from any threads.
class MemoryReservation {
 public:
  MemoryReservation() = default;
  MemoryReservation(MemoryReservation&& other) noexcept;
  MemoryReservation& operator=(MemoryReservation&& other) noexcept;
  ~MemoryReservation() { reset(); }

  uint64_t bytes() const { return bytes_; }
  // Holds `more` bytes besides, waiting as MemoryBudget::Reserve does; on
  // error the reservation is unchanged.
  absl::Status Grow(uint64_t more, std::string_view what);
  // Gives every byte back.
  void reset();

 private:
  friend class MemoryBudget;
  MemoryReservation(MemoryBudget* budget, uint64_t bytes)
      : budget_(budget), bytes_(bytes) {}

  MemoryBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

// Thread-safe. Must outlive its reservations.
class MemoryBudget {
 public:
  explicit MemoryBudget(MemoryBudgetOptions options);
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Reserves `bytes`, waiting up to `max_wait` for other reservations to be
  // released. RESOURCE_EXHAUSTED, naming `what`, when they are not, or at
  // once when `bytes` alone is over the limit.
  absl::StatusOr<MemoryReservation> Reserve(uint64_t bytes,
                                            std::string_view what);
  // Reserves `bytes` only if they fit now.
  std::optional<MemoryReservation> TryReserve(uint64_t bytes);

  uint64_t limit_bytes() const { return options_.limit_bytes; }
  uint64_t reserved_bytes() const;
  // The most bytes reserved at once since the server started.
  uint64_t peak_bytes() const;
  // Reservations refused.
  uint64_t refusals() const;

 private:
  friend class MemoryReservation;
  // Takes `bytes` under the limit, waiting as Reserve does.
  absl::Status Take(uint64_t bytes, std::string_view what);
  void Give(uint64_t bytes);
  bool Fits(uint64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const MemoryBudgetOptions options_;
  mutable absl::Mutex mutex_;
  uint64_t reserved_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t peak_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t refusals_ ABSL_GUARDED_BY(mutex_) = 0;
};

// A quarter of the memory this process may use: the smaller of physical
// memory and the cgroup's limit (v2 memory.max, or v1's).
uint64_t DefaultMemoryBudgetBytes();

}  // namespace seqkv

#endif  // SEQKV_SERVER_MEMORY_BUDGET_H_
