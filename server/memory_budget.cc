#include "server/memory_budget.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace seqkv {

MemoryReservation::MemoryReservation(MemoryReservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

MemoryReservation& MemoryReservation::operator=(
    MemoryReservation&& other) noexcept {
  if (this != &other) {
    reset();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::Status MemoryReservation::Grow(uint64_t more, std::string_view what) {
  if (budget_ == nullptr)
    return absl::FailedPreconditionError("growing an empty reservation");
  if (auto status = budget_->Take(more, what); !status.ok()) return status;
  bytes_ += more;
  return absl::OkStatus();
}

void MemoryReservation::reset() {
  if (budget_ != nullptr) std::exchange(budget_, nullptr)->Give(bytes_);
  bytes_ = 0;
}

MemoryBudget::MemoryBudget(MemoryBudgetOptions options)
    : options_(std::move(options)) {}

bool MemoryBudget::Fits(uint64_t bytes) const {
  return options_.limit_bytes == 0 ||
         (bytes <= options_.limit_bytes &&
          reserved_ <= options_.limit_bytes - bytes);
}

absl::Status MemoryBudget::Take(uint64_t bytes, std::string_view what) {
  absl::MutexLock lock(&mutex_);
  if (options_.limit_bytes != 0 && bytes > options_.limit_bytes) {
    ++refusals_;
    return absl::ResourceExhaustedError(
        absl::StrCat(std::string(what), " needs ", bytes,
                     " bytes, more than the server's whole memory budget (",
                     options_.limit_bytes, " bytes, --memory_budget_bytes)"));
  }
  const auto fits = [this, bytes]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return Fits(bytes);
  };
  if (!mutex_.AwaitWithTimeout(absl::Condition(&fits), options_.max_wait)) {
    ++refusals_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "server memory budget exhausted: ", std::string(what), " needs ", bytes,
        " bytes and ", reserved_, " of ", options_.limit_bytes,
        " are in use by other requests (--memory_budget_bytes); retry later"));
  }
  reserved_ += bytes;
  peak_ = std::max(peak_, reserved_);
  return absl::OkStatus();
}

void MemoryBudget::Give(uint64_t bytes) {
  absl::MutexLock lock(&mutex_);
  reserved_ -= bytes;
}

absl::StatusOr<MemoryReservation> MemoryBudget::Reserve(uint64_t bytes,
                                                        std::string_view what) {
  if (auto status = Take(bytes, what); !status.ok()) return status;
  return MemoryReservation(this, bytes);
}

std::optional<MemoryReservation> MemoryBudget::TryReserve(uint64_t bytes) {
  absl::MutexLock lock(&mutex_);
  if (!Fits(bytes)) return std::nullopt;
  reserved_ += bytes;
  peak_ = std::max(peak_, reserved_);
  return MemoryReservation(this, bytes);
}

uint64_t MemoryBudget::reserved_bytes() const {
  absl::MutexLock lock(&mutex_);
  return reserved_;
}

uint64_t MemoryBudget::peak_bytes() const {
  absl::MutexLock lock(&mutex_);
  return peak_;
}

uint64_t MemoryBudget::refusals() const {
  absl::MutexLock lock(&mutex_);
  return refusals_;
}

namespace {

// The number in the first line of `path`, if it holds one ("max" does not).
std::optional<uint64_t> ReadLimit(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &value))
    return std::nullopt;
  return value;
}

}  // namespace

uint64_t DefaultMemoryBudgetBytes() {
  uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                    static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (const char* path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (auto limit = ReadLimit(path); limit && *limit > 0)
      memory = std::min(memory, *limit);
  }
  return memory / 4;
}

}  // namespace seqkv
