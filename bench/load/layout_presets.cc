#include "bench/load/layout_presets.h"

#include <cctype>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace seqkv::bench {
namespace {

struct Preset {
  std::string_view name;
  uint32_t layers, kv_heads, head_dim;
  double rope_theta;
};

// Shapes from the models' published configs; keys carry rotate_half RoPE.
constexpr Preset kPresets[] = {
    {"llama3-8b", 32, 8, 128, 500000.0},
    {"llama3-70b", 80, 8, 128, 500000.0},
    {"tiny", 6, 2, 128, 10000.0},
};

}  // namespace

absl::StatusOr<KvLayout> ResolveLayout(std::string_view name) {
  KvLayout layout;
  for (const Preset& preset : kPresets) {
    if (preset.name != name) continue;
    layout.num_layers = preset.layers;
    layout.num_kv_heads = preset.kv_heads;
    layout.head_dim = preset.head_dim;
    layout.dtype = DType::kBF16;
    layout.rope.style = RopeStyle::kRotateHalf;
    layout.rope.theta = preset.rope_theta;
    return layout;
  }
  const absl::string_view text(name.data(), name.size());
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  std::vector<absl::string_view> dims = absl::StrSplit(parts[0], 'x');
  if (dims.size() != 3 || parts.size() > 2 ||
      !absl::SimpleAtoi(dims[0], &layout.num_layers) ||
      !absl::SimpleAtoi(dims[1], &layout.num_kv_heads) ||
      !absl::SimpleAtoi(dims[2], &layout.head_dim))
    return absl::InvalidArgumentError(absl::StrCat(
        "--layout: '", std::string(name), "' is neither a preset (",
        LayoutPresetNames(), ") nor LAYERSxKV_HEADSxHEAD_DIM:DTYPE"));
  if (parts.size() == 2) {
    auto dtype = ParseDType(std::string_view(parts[1].data(), parts[1].size()));
    if (!dtype.ok()) return dtype.status();
    layout.dtype = *dtype;
  }
  if (auto status = layout.Validate(); !status.ok()) return status;
  return layout;
}

std::string LayoutPresetNames() {
  std::string names;
  for (const Preset& preset : kPresets)
    absl::StrAppend(&names, names.empty() ? "" : ", ",
                    std::string(preset.name));
  return names;
}

std::string LayoutSlug(std::string_view name) {
  std::string slug;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    slug.push_back(std::isalnum(u) ? static_cast<char>(std::tolower(u)) : '-');
  }
  return slug;
}

}  // namespace seqkv::bench
