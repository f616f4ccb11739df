// Assembles the response stream of a Get into a KvCache.
#ifndef SEQKV_CLIENT_GET_STREAM_H_
#define SEQKV_CLIENT_GET_STREAM_H_

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "model/kv_cache.h"
#include "seqkv/v1/kvcache.pb.h"

namespace seqkv {

// Takes the messages of one Get's response stream, in order, and fills
// `cache` from them: the header sizes it (reusing its memory), data bytes
// are scattered into place as they come, whatever their split. Every
// violation of the stream's contract is DATA_LOSS.
class GetStreamAssembler {
 public:
  // `tokens` are the Get's request tokens (the header picks a range of
  // them); both must outlive the assembler.
  GetStreamAssembler(std::span<const int32_t> tokens, KvCache& cache);

  // The next message of the stream.
  absl::Status Add(const v1::GetResponse& message);
  // The stream ended: the header and every announced byte must have come.
  absl::Status Finish() const;

 private:
  absl::Status AddHeader(const v1::GetHeader& header);
  absl::Status AddData(std::string_view data);

  std::span<const int32_t> tokens_;
  KvCache& cache_;
  bool have_header_ = false;
  uint64_t expected_ = 0;
  uint64_t received_ = 0;
};

}  // namespace seqkv

#endif  // SEQKV_CLIENT_GET_STREAM_H_
