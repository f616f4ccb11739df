#include "codec/kv_layout.h"

#include "absl/strings/str_cat.h"

namespace seqkv {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
    case DType::kFP16:
      return 2;
    case DType::kFP32:
      return 4;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "bf16";
    case DType::kFP16:
      return "fp16";
    case DType::kFP32:
      return "fp32";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "bf16" || name == "BF16") return DType::kBF16;
  if (name == "fp16" || name == "F16" || name == "f16") return DType::kFP16;
  if (name == "fp32" || name == "F32" || name == "f32") return DType::kFP32;
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype '", std::string(name), "' (want bf16, fp16 or fp32)"));
}

absl::Status KvLayout::Validate() const {
  // Generous bounds: they exist to reject garbage, not real models.
  if (num_layers == 0 || num_layers > 1024)
    return absl::InvalidArgumentError(absl::StrCat(
        "layout.num_layers must be in [1, 1024], got ", num_layers));
  if (num_kv_heads == 0 || num_kv_heads > 1024)
    return absl::InvalidArgumentError(absl::StrCat(
        "layout.num_kv_heads must be in [1, 1024], got ", num_kv_heads));
  if (head_dim == 0 || head_dim > 65536)
    return absl::InvalidArgumentError(
        absl::StrCat("layout.head_dim must be in [1, 65536], got ", head_dim));
  if (latent && num_kv_heads != 1)
    return absl::InvalidArgumentError(
        "layout.num_kv_heads must be 1 for a latent (MLA) layout");
  if (DTypeSize(dtype) == 0)
    return absl::InvalidArgumentError("layout.dtype is not set");
  if (rope.style != RopeStyle::kNone) {
    uint32_t rotary = rope.rotary_dim == 0 ? head_dim : rope.rotary_dim;
    if (rotary > head_dim || rotary % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "layout.rope.rotary_dim must be even and <= head_dim, got ", rotary));
    if (!(rope.theta > 0))
      return absl::InvalidArgumentError("layout.rope.theta must be positive");
  }
  return absl::OkStatus();
}

std::string KvLayout::DebugString() const {
  return absl::StrCat(num_layers, " layers x ", num_kv_heads, " kv heads x ",
                      head_dim, " ", DTypeName(dtype), latent ? " latent" : "");
}

const char* RopeStyleName(RopeStyle style) {
  switch (style) {
    case RopeStyle::kNone:
      return "none";
    case RopeStyle::kRotateHalf:
      return "rotate_half";
    case RopeStyle::kInterleaved:
      return "interleaved";
  }
  return "unknown";
}

std::string DescribeLayoutDifference(const KvLayout& expected,
                                     const KvLayout& got) {
  std::string out;
  auto add = [&out](const char* field, const auto& got_value,
                    const auto& expected_value) {
    if (!out.empty()) out += ", ";
    out +=
        absl::StrCat(field, " ", got_value, " (expected ", expected_value, ")");
  };
  if (got.num_layers != expected.num_layers)
    add("layers", got.num_layers, expected.num_layers);
  if (got.num_kv_heads != expected.num_kv_heads)
    add("kv heads", got.num_kv_heads, expected.num_kv_heads);
  if (got.head_dim != expected.head_dim)
    add("head_dim", got.head_dim, expected.head_dim);
  if (got.dtype != expected.dtype)
    add("dtype", DTypeName(got.dtype), DTypeName(expected.dtype));
  if (got.latent != expected.latent)
    add("latent", got.latent ? "true" : "false",
        expected.latent ? "true" : "false");
  if (got.rope.style == RopeStyle::kNone) return out;
  if (got.rope.style != expected.rope.style)
    add("rope style", RopeStyleName(got.rope.style),
        RopeStyleName(expected.rope.style));
  if (expected.rope.style == RopeStyle::kNone) return out;
  if (got.rope.theta != expected.rope.theta)
    add("rope theta", got.rope.theta, expected.rope.theta);
  if (got.rope.rotary_dim != expected.rope.rotary_dim)
    add("rope rotary_dim", got.rope.rotary_dim, expected.rope.rotary_dim);
  return out;
}

}  // namespace seqkv
