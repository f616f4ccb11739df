#include "proto/layout_convert.h"

namespace seqkv {

absl::StatusOr<KvLayout> LayoutFromProto(const v1::Layout& proto) {
  KvLayout layout;
  layout.num_layers = proto.num_layers();
  layout.num_kv_heads = proto.num_kv_heads();
  layout.head_dim = proto.head_dim();
  layout.latent = proto.latent();
  switch (proto.dtype()) {
    case v1::DTYPE_BF16:
      layout.dtype = DType::kBF16;
      break;
    case v1::DTYPE_FP16:
      layout.dtype = DType::kFP16;
      break;
    case v1::DTYPE_FP32:
      layout.dtype = DType::kFP32;
      break;
    default:
      return absl::InvalidArgumentError(
          "layout.dtype must be DTYPE_BF16, DTYPE_FP16 or DTYPE_FP32");
  }
  switch (proto.rope().style()) {
    case v1::ROPE_STYLE_ROTATE_HALF:
      layout.rope.style = RopeStyle::kRotateHalf;
      break;
    case v1::ROPE_STYLE_INTERLEAVED:
      layout.rope.style = RopeStyle::kInterleaved;
      break;
    default:
      layout.rope.style = RopeStyle::kNone;
  }
  if (layout.rope.style != RopeStyle::kNone) {
    layout.rope.theta = proto.rope().theta();
    layout.rope.rotary_dim = proto.rope().rotary_dim();
  }
  if (auto status = layout.Validate(); !status.ok()) return status;
  return layout;
}

v1::Layout LayoutToProto(const KvLayout& layout) {
  v1::Layout proto;
  proto.set_num_layers(layout.num_layers);
  proto.set_num_kv_heads(layout.num_kv_heads);
  proto.set_head_dim(layout.head_dim);
  proto.set_latent(layout.latent);
  switch (layout.dtype) {
    case DType::kBF16:
      proto.set_dtype(v1::DTYPE_BF16);
      break;
    case DType::kFP16:
      proto.set_dtype(v1::DTYPE_FP16);
      break;
    case DType::kFP32:
      proto.set_dtype(v1::DTYPE_FP32);
      break;
  }
  if (layout.rope.style != RopeStyle::kNone) {
    proto.mutable_rope()->set_style(layout.rope.style == RopeStyle::kRotateHalf
                                        ? v1::ROPE_STYLE_ROTATE_HALF
                                        : v1::ROPE_STYLE_INTERLEAVED);
    proto.mutable_rope()->set_theta(layout.rope.theta);
    proto.mutable_rope()->set_rotary_dim(layout.rope.rotary_dim);
  }
  return proto;
}

}  // namespace seqkv
