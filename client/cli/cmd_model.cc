// seqkv model register|show: a model's layout and codec state on the server.
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"
#include "model/hf_config.h"
#include "model/model_state_builder.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, default_codec, "", "codec for Puts that name none");

namespace seqkv::cli {
namespace {

absl::Status ParseLayoutFlag(const std::string& text, KvLayout& layout) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  std::vector<std::string> dims = absl::StrSplit(parts[0], 'x');
  if (dims.size() != 3 || parts.size() > 2 ||
      !absl::SimpleAtoi(dims[0], &layout.num_layers) ||
      !absl::SimpleAtoi(dims[1], &layout.num_kv_heads) ||
      !absl::SimpleAtoi(dims[2], &layout.head_dim))
    return absl::InvalidArgumentError(absl::StrCat(
        "--layout must look like 32x8x128:bf16, got '", text, "'"));
  if (parts.size() == 2) {
    auto dtype = ParseDType(parts[1]);
    if (!dtype.ok()) return dtype.status();
    layout.dtype = *dtype;
  }
  return layout.Validate();
}

// Codec state from the model's files: the layer-0 table (when the model
// type supports one) and the calibration profile given with --profile.
absl::Status AddCodecState(ModelRegistration& registration) {
  if (const std::string dir = absl::GetFlag(FLAGS_model_dir); !dir.empty()) {
    auto state = BuildCodecStateFromModelDir(dir, registration.layout);
    if (state.ok()) {
      registration.codec_state.merge(*state);
    } else {
      std::cerr << "note: no layer-0 table: " << state.status().message()
                << "\n";
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_profile); !path.empty()) {
    auto profile = LoadProfile(path, registration.layout);
    if (!profile.ok()) return profile.status();
    registration.codec_state["profile"] = *std::move(profile);
  }
  return absl::OkStatus();
}

int RunModel(std::span<char* const> args) {
  const std::string verb = args.empty() ? "" : args[0];
  const std::string name = absl::GetFlag(FLAGS_model);
  if ((verb != "register" && verb != "show") || name.empty()) {
    return kShowUsage;
  }
  auto client = ConnectOrDie();
  if (!client) return 1;
  if (verb == "show") {
    auto model = client->GetModel(name);
    if (!model.ok()) return ReportError(model.status());
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& [key, blob] : model->codec_state) keys.push_back(key);
    std::cout << nlohmann::json({{"model", model->model},
                                 {"layout", model->layout.DebugString()},
                                 {"chunk_tokens", model->chunk_tokens},
                                 {"default_codec", model->default_codec},
                                 {"codec_state", keys}})
                     .dump()
              << std::endl;
    return 0;
  }
  ModelRegistration registration;
  registration.model = name;
  registration.chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  registration.default_codec = absl::GetFlag(FLAGS_default_codec);
  if (const std::string dir = absl::GetFlag(FLAGS_model_dir); !dir.empty()) {
    // Layout and RoPE as config.json states them; --rope overrides the RoPE.
    absl::StatusOr<HfConfig> config = ReadHfConfig(dir);
    if (!config.ok()) return ReportError(config.status());
    registration.layout = config->KvCacheLayout();
    absl::StatusOr<RopeConfig> rope = RopeFromFlags(dir);
    if (!rope.ok()) return ReportError(rope.status());
    registration.layout.rope = *rope;
    if (auto status = registration.layout.Validate(); !status.ok())
      return ReportError(status);
  } else {
    if (auto status =
            ParseLayoutFlag(absl::GetFlag(FLAGS_layout), registration.layout);
        !status.ok())
      return ReportError(status);
    if (auto status =
            ParseRopeFlag(absl::GetFlag(FLAGS_rope), registration.layout.rope);
        !status.ok())
      return ReportError(status);
  }
  if (auto status = AddCodecState(registration); !status.ok())
    return ReportError(status);
  auto created = client->RegisterModel(registration);
  if (!created.ok()) return ReportError(created.status());
  std::cout << nlohmann::json({{"model", name},
                               {"layout", registration.layout.DebugString()},
                               {"created", *created}})
                   .dump()
            << std::endl;
  return 0;
}

const CommandRegistrar registrar({"model", RunModel});

}  // namespace
}  // namespace seqkv::cli
