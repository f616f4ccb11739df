// Conversions between the wire API (seqkv.v1) and the engine's domain
// types: token ids from `tokens` or `packed_tokens`, chunk digests,
// layouts, results. Every check of a request's encoding lives here; what a
// request means is the engine's to check.
#ifndef SEQKV_SERVER_WIRE_CONVERT_H_
#define SEQKV_SERVER_WIRE_CONVERT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "seqkv/v1/kvcache.pb.h"
#include "server/cache_engine.h"

namespace seqkv {

// Decoded ids a query's spans point into; keep it alive as long as them.
struct DecodedIds {
  std::vector<int32_t> tokens;
  std::vector<uint64_t> digests;
};

// The ids of `tokens` or `packed_tokens` (little-endian int32s, copied
// into `storage`): INVALID_ARGUMENT when both are set, the packed bytes
// are not whole ids, there are more than `max_tokens`, or one is negative.
absl::StatusOr<std::span<const int32_t>> DecodeTokens(
    const google::protobuf::RepeatedField<int32_t>& tokens,
    const std::string& packed_tokens, uint32_t max_tokens,
    std::vector<int32_t>& storage);

absl::StatusOr<LookupQuery> ToLookupQuery(const v1::LookupRequest& request,
                                          uint32_t max_tokens, DecodedIds& ids);
// Error messages name the header's fields ("header.tokens ...").
absl::StatusOr<PutSpec> ToPutSpec(const v1::PutHeader& header,
                                  uint32_t max_tokens);
absl::StatusOr<GetQuery> ToGetQuery(const v1::GetRequest& request,
                                    uint32_t max_tokens, DecodedIds& ids);
absl::StatusOr<std::span<const int32_t>> ToDeleteTokens(
    const v1::DeleteRequest& request, uint32_t max_tokens, DecodedIds& ids);
// Moves the codec state out of `request`.
absl::StatusOr<ModelSpec> ToModelSpec(v1::RegisterModelRequest& request);

v1::PutResponse ToPutResponse(const PutSummary& summary);
v1::GetHeader ToGetHeader(const GetPlan& plan);
v1::GetModelResponse ToGetModelResponse(const ModelInfo& info);

}  // namespace seqkv

#endif  // SEQKV_SERVER_WIRE_CONVERT_H_
