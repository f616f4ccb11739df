// Maps codec specs to implementations. Each family parses its own params.
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "codec/codec.h"
#include "codec/kivi/kivi_codec.h"
#include "codec/lossless_codec.h"
#include "codec/predictive/predictive_codec.h"
#include "codec/raw_codec.h"
#include "codec/turbo/turbo_codec.h"

namespace seqkv {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<Codec>>(
    std::string_view params, const ModelContext& model)>;

struct Family {
  std::string_view name;
  Factory create;
};

const std::vector<Family>& Families() {
  static const auto* families = new std::vector<Family>{
      {"raw", CreateRawCodec},
      {"lossless", CreateLosslessCodec},
      {"turbo", CreateTurboCodec},
      {"kivi", CreateKiviCodec},
      {"predictive", CreatePredictiveCodec},
  };
  return *families;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(std::string_view spec,
                                                   const ModelContext& model) {
  std::string_view name = spec;
  std::string_view params;
  if (size_t colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    params = spec.substr(colon + 1);
  }
  for (const Family& family : Families()) {
    if (family.name == name) return family.create(params, model);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec '", std::string(spec),
                   "' (known: ", ListCodecNames(), ")"));
}

std::string ListCodecNames() {
  std::vector<std::string_view> names;
  for (const Family& family : Families()) names.push_back(family.name);
  return absl::StrJoin(
      names, ", ",
      [](std::string* out, std::string_view name) { out->append(name); });
}

std::vector<std::string> SplitCodecSpecs(std::string_view list) {
  std::vector<std::string> specs;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(list.data(), list.size()), ',',
                      absl::SkipEmpty())) {
    const bool continues = !specs.empty() &&
                           part.find('=') != absl::string_view::npos &&
                           part.find(':') == absl::string_view::npos;
    if (continues) {
      absl::StrAppend(&specs.back(), ",", part);
    } else {
      specs.emplace_back(part);
    }
  }
  return specs;
}

}  // namespace seqkv
