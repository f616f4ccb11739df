// Conversions between seqkv.v1 messages and the codec layer's types.
#ifndef SEQKV_PROTO_LAYOUT_CONVERT_H_
#define SEQKV_PROTO_LAYOUT_CONVERT_H_

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"
#include "seqkv/v1/kvcache.pb.h"

namespace seqkv {

// Fails with INVALID_ARGUMENT (naming the field) on an unset dtype or a
// layout that KvLayout::Validate rejects.
absl::StatusOr<KvLayout> LayoutFromProto(const v1::Layout& proto);
v1::Layout LayoutToProto(const KvLayout& layout);

}  // namespace seqkv

#endif  // SEQKV_PROTO_LAYOUT_CONVERT_H_
