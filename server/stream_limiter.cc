#include "server/stream_limiter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace seqkv {

OpenStream::OpenStream(Key, StreamLimiter* limiter,
                       grpc::ServerContext* context, std::string tenant)
    : limiter_(limiter), context_(context), tenant_(std::move(tenant)) {}

OpenStream::~OpenStream() { limiter_->Close(this); }

void OpenStream::BeginWait() {
  waiting_since_.store(absl::ToUnixMicros(absl::Now()));
}

void OpenStream::EndWait() { waiting_since_.store(0); }

absl::Status OpenStream::TimeoutError(std::string_view what) const {
  return absl::DeadlineExceededError(absl::StrCat(
      "waited ", absl::FormatDuration(limiter_->options().idle_timeout),
      " for ", std::string(what),
      " (--stream_idle_timeout_s); the call was cancelled"));
}

StreamLimiter::StreamLimiter(StreamLimitOptions options)
    : options_(std::move(options)) {
  if (options_.idle_timeout <= absl::ZeroDuration()) return;
  // Checks a few times per timeout, so a stream is cancelled at most a
  // quarter of it late.
  const absl::Duration period =
      std::min(absl::Seconds(1), options_.idle_timeout / 4);
  watchdog_ = std::thread([this, period] {
    while (!stop_.WaitForNotificationWithTimeout(period)) CancelIdle();
  });
}

StreamLimiter::~StreamLimiter() {
  stop_.Notify();
  if (watchdog_.joinable()) watchdog_.join();
}

absl::StatusOr<std::unique_ptr<OpenStream>> StreamLimiter::Open(
    grpc::ServerContext* context, const std::string& tenant) {
  absl::MutexLock lock(&mutex_);
  uint32_t& open = per_tenant_[tenant];
  if (options_.max_streams_per_tenant != 0 &&
      open >= options_.max_streams_per_tenant) {
    refusals_.fetch_add(1);
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant '", tenant, "' has ", open,
        " streams open, its limit (--max_streams_per_tenant); retry when one "
        "ends"));
  }
  ++open;
  auto stream =
      std::make_unique<OpenStream>(OpenStream::Key(), this, context, tenant);
  streams_.insert(stream.get());
  return stream;
}

void StreamLimiter::Close(OpenStream* stream) {
  absl::MutexLock lock(&mutex_);
  streams_.erase(stream);
  auto it = per_tenant_.find(stream->tenant_);
  if (it != per_tenant_.end() && --it->second == 0) per_tenant_.erase(it);
}

uint64_t StreamLimiter::open_streams() const {
  absl::MutexLock lock(&mutex_);
  return streams_.size();
}

void StreamLimiter::CancelIdle() {
  const int64_t now = absl::ToUnixMicros(absl::Now());
  const int64_t limit = absl::ToInt64Microseconds(options_.idle_timeout);
  // Under the lock: a stream is closed, and its context gone, only after
  // it leaves the set.
  absl::MutexLock lock(&mutex_);
  for (OpenStream* stream : streams_) {
    const int64_t since = stream->waiting_since_.load();
    if (since == 0 || now - since < limit || stream->timed_out_.load())
      continue;
    stream->timed_out_.store(true);
    idle_cancellations_.fetch_add(1);
    spdlog::info("cancelling a stream of tenant '{}' from {}: idle for {}",
                 stream->tenant_, stream->context_->peer(),
                 absl::FormatDuration(options_.idle_timeout));
    stream->context_->TryCancel();
  }
}

std::string StreamMetrics(const StreamLimiter& limiter) {
  return absl::StrCat(
      "# HELP seqkv_open_streams Put, Get and RegisterModelStream calls open "
      "now.\n# TYPE seqkv_open_streams gauge\nseqkv_open_streams ",
      limiter.open_streams(),
      "\n# HELP seqkv_stream_idle_cancellations_total Streams cancelled for "
      "waiting on their client longer than --stream_idle_timeout_s.\n"
      "# TYPE seqkv_stream_idle_cancellations_total counter\n"
      "seqkv_stream_idle_cancellations_total ",
      limiter.idle_cancellations(),
      "\n# HELP seqkv_stream_refusals_total Streams refused by "
      "--max_streams_per_tenant.\n# TYPE seqkv_stream_refusals_total "
      "counter\nseqkv_stream_refusals_total ",
      limiter.refusals(), "\n");
}

}  // namespace seqkv
