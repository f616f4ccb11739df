#include "codec/model_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

constexpr std::string_view kLayer0Magic = "SKVL0TB1";
constexpr size_t kLayer0HeaderSize = 24;

void PutU32(uint32_t value, std::string& out) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>(value >> (8 * i)));
}
uint32_t GetU32(const char* p) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t(uint8_t(p[i])) << (8 * i);
  return value;
}

}  // namespace

std::string Layer0Table::Serialize(uint32_t vocab, uint32_t num_kv_heads,
                                   uint32_t head_dim,
                                   std::span<const uint16_t> k,
                                   std::span<const uint16_t> v) {
  std::string out(kLayer0Magic);
  PutU32(vocab, out);
  PutU32(num_kv_heads, out);
  PutU32(head_dim, out);
  PutU32(0, out);
  out.append(reinterpret_cast<const char*>(k.data()), k.size_bytes());
  out.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
  return out;
}

absl::StatusOr<Layer0Table> Layer0Table::Parse(std::string_view blob,
                                               const KvLayout& layout) {
  if (blob.size() < kLayer0HeaderSize ||
      blob.substr(0, kLayer0Magic.size()) != kLayer0Magic)
    return absl::InvalidArgumentError(
        "codec_state 'layer0': not a layer-0 table (bad magic)");
  Layer0Table table;
  table.vocab_ = GetU32(blob.data() + 8);
  table.num_kv_heads_ = GetU32(blob.data() + 12);
  table.head_dim_ = GetU32(blob.data() + 16);
  if (table.num_kv_heads_ != layout.num_kv_heads ||
      table.head_dim_ != layout.head_dim)
    return absl::InvalidArgumentError(
        absl::StrCat("codec_state 'layer0': table has ", table.num_kv_heads_,
                     " heads x ", table.head_dim_, ", layout has ",
                     layout.num_kv_heads, " x ", layout.head_dim));
  if (table.vocab_ == 0 || table.vocab_ > (1u << 24))
    return absl::InvalidArgumentError(absl::StrCat(
        "codec_state 'layer0': vocab ", table.vocab_, " out of range"));
  const size_t row_elements =
      size_t{table.vocab_} * table.num_kv_heads_ * table.head_dim_;
  if (blob.size() != kLayer0HeaderSize + 2 * row_elements * sizeof(uint16_t))
    return absl::InvalidArgumentError(
        absl::StrCat("codec_state 'layer0': ", blob.size(), " bytes, expected ",
                     kLayer0HeaderSize + 2 * row_elements * sizeof(uint16_t)));
  table.k_.resize(row_elements);
  table.v_.resize(row_elements);
  const char* data = blob.data() + kLayer0HeaderSize;
  std::memcpy(table.k_.data(), data, row_elements * sizeof(uint16_t));
  std::memcpy(table.v_.data(), data + row_elements * sizeof(uint16_t),
              row_elements * sizeof(uint16_t));
  return table;
}

const FidelityProfile::Group* FidelityProfile::Find(uint32_t layer,
                                                    uint32_t tensor) const {
  for (const Group& group : groups)
    if (group.layer == layer && group.tensor == tensor) return &group;
  return nullptr;
}

std::optional<double> FidelityProfile::Sensitivity(uint32_t layer,
                                                   uint32_t tensor) const {
  const Group* group = Find(layer, tensor);
  if (group == nullptr) return std::nullopt;
  return group->sensitivity;
}

double FidelityProfile::BudgetForKl(double kl) const {
  if (kl_map.size() < 2 || !(kl > 0)) return kl;
  // Measured KL grows with the budget; a noisy point that does not is left
  // out so that the inverse stays a function.
  std::vector<KlPoint> points;
  for (const KlPoint& point : kl_map)
    if (points.empty() || point.kl > points.back().kl) points.push_back(point);
  if (points.size() < 2) return kl;
  size_t i = 1;
  while (i + 1 < points.size() && kl > points[i].kl) ++i;
  const KlPoint& a = points[i - 1];
  const KlPoint& b = points[i];
  const double slope = std::log(b.budget / a.budget) /
                       std::log(b.kl / a.kl);  // d log B / d log KL
  const double budget = a.budget * std::exp(slope * std::log(kl / a.kl));
  return std::clamp(budget, points.front().budget / 4,
                    points.back().budget * 4);
}

absl::StatusOr<FidelityProfile> ParseFidelityProfile(std::string_view json,
                                                     const KvLayout* layout) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return absl::InvalidArgumentError("profile: not a JSON object");
  FidelityProfile profile;
  if (auto it = doc.find("model"); it != doc.end() && it->is_string())
    profile.model = it->get<std::string>();
  if (auto it = doc.find("metric"); it != doc.end()) {
    if (!it->is_string())
      return absl::InvalidArgumentError("profile.metric must be a string");
    profile.metric = it->get<std::string>();
    if (profile.metric != "kl_per_rel_mse")
      return absl::InvalidArgumentError(absl::StrCat(
          "profile.metric '", profile.metric, "' is not 'kl_per_rel_mse'"));
  }
  if (auto map = doc.find("kl_map"); map != doc.end()) {
    if (!map->is_array())
      return absl::InvalidArgumentError("profile.kl_map must be an array");
    for (size_t i = 0; i < map->size(); ++i) {
      const nlohmann::json& point = (*map)[i];
      const std::string where = absl::StrCat("profile.kl_map[", i, "]");
      auto budget = point.is_object() ? point.find("budget") : point.end();
      auto kl = point.is_object() ? point.find("kl") : point.end();
      if (!point.is_object() || budget == point.end() || !budget->is_number() ||
          kl == point.end() || !kl->is_number())
        return absl::InvalidArgumentError(
            where + " must be {\"budget\": number, \"kl\": number}");
      const FidelityProfile::KlPoint p{budget->get<double>(),
                                       kl->get<double>()};
      if (!std::isfinite(p.budget) || !std::isfinite(p.kl) || !(p.budget > 0) ||
          !(p.kl > 0))
        return absl::InvalidArgumentError(where +
                                          " must hold positive finite numbers");
      if (!profile.kl_map.empty() && !(p.budget > profile.kl_map.back().budget))
        return absl::InvalidArgumentError(where + ": budgets must increase");
      profile.kl_map.push_back(p);
    }
  }
  auto groups = doc.find("groups");
  if (groups == doc.end() || !groups->is_array() || groups->empty())
    return absl::InvalidArgumentError(
        "profile.groups must be a non-empty array");
  for (size_t i = 0; i < groups->size(); ++i) {
    const nlohmann::json& g = (*groups)[i];
    const std::string where = absl::StrCat("profile.groups[", i, "]");
    if (!g.is_object())
      return absl::InvalidArgumentError(where + " is not an object");
    auto layer = g.find("layer");
    auto tensor = g.find("tensor");
    auto sensitivity = g.find("sensitivity");
    if (layer == g.end() || !layer->is_number_unsigned())
      return absl::InvalidArgumentError(where +
                                        ".layer must be an unsigned integer");
    if (tensor == g.end() || !tensor->is_string())
      return absl::InvalidArgumentError(where + ".tensor must be a string");
    if (sensitivity == g.end() || !sensitivity->is_number())
      return absl::InvalidArgumentError(where +
                                        ".sensitivity must be a number");
    FidelityProfile::Group group;
    group.layer = layer->get<uint32_t>();
    const std::string name = tensor->get<std::string>();
    if (name == "k" || name == "latent") {
      group.tensor = 0;
    } else if (name == "v") {
      group.tensor = 1;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".tensor '", name, "' is not k, v or latent"));
    }
    group.sensitivity = sensitivity->get<double>();
    if (!std::isfinite(group.sensitivity) || group.sensitivity < 0)
      return absl::InvalidArgumentError(where +
                                        ".sensitivity must be finite and >= 0");
    if (layout != nullptr && (group.layer >= layout->num_layers ||
                              group.tensor >= layout->tensors_per_layer()))
      return absl::InvalidArgumentError(absl::StrCat(
          where, " names layer ", group.layer, " tensor ", name,
          ", which the layout (", layout->DebugString(), ") lacks"));
    if (auto weights = g.find("channel_weights"); weights != g.end()) {
      if (!weights->is_array())
        return absl::InvalidArgumentError(where +
                                          ".channel_weights must be an array");
      for (const nlohmann::json& weight : *weights) {
        const double value = weight.is_number() ? weight.get<double>() : -1;
        if (!std::isfinite(value) || !(value > 0))
          return absl::InvalidArgumentError(
              where + ".channel_weights must be finite positive numbers");
        group.channel_weights.push_back(value);
      }
      const size_t width =
          layout == nullptr ? group.channel_weights.size()
                            : size_t{layout->num_kv_heads} * layout->head_dim;
      if (group.channel_weights.size() != width || width == 0)
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".channel_weights has ", group.channel_weights.size(),
            " entries, expected one per channel (", width, ")"));
    }
    if (profile.Sensitivity(group.layer, group.tensor).has_value())
      return absl::InvalidArgumentError(where + " repeats a group");
    profile.groups.push_back(group);
  }
  return profile;
}

}  // namespace seqkv
