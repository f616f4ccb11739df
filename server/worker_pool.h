// A fixed set of threads for codec work, so encoding and decoding run beside
// the gRPC threads that receive and send the bytes.
#ifndef SEQKV_SERVER_WORKER_POOL_H_
#define SEQKV_SERVER_WORKER_POOL_H_

#include <deque>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace seqkv {

class WorkerPool {
 public:
  // `threads` == 0 means one per hardware thread.
  explicit WorkerPool(size_t threads);
  // Runs every submitted task, then joins.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(absl::AnyInvocable<void() &&> task);
  size_t size() const { return threads_.size(); }

 private:
  void Run();

  absl::Mutex mutex_;
  std::deque<absl::AnyInvocable<void() &&>> tasks_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_WORKER_POOL_H_
