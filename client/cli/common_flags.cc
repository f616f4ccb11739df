#include "client/cli/common_flags.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "model/hf_config.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50551",
          "seqkv server address: host:port or unix:/path");
ABSL_FLAG(std::string, api_key, "",
          "API key (default: $SEQKV_API_KEY); sent as a Bearer token");
ABSL_FLAG(std::string, model, "", "model name");
ABSL_FLAG(std::string, codec, "",
          "codec spec, e.g. raw, lossless, turbo:3 (default: the server's)");
ABSL_FLAG(std::string, namespace, "",
          "namespace to use (default: the caller's own)");
ABSL_FLAG(bool, json, false, "print machine-readable JSON");
ABSL_FLAG(std::string, admin, "",
          "admin endpoint host:port: for seqkv stats (empty: "
          "127.0.0.1:50552) and for seqkv replay against a --server (to read "
          "its usage)");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificate; turns TLS on");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM client key for mutual TLS");
ABSL_FLAG(std::string, rope, "",
          "RoPE convention of the keys: none, rotate_half[:THETA] or "
          "interleaved[:THETA] (a style without THETA keeps the theta it "
          "overrides). Empty: what --model_dir's config.json says; for "
          "put, the registered model's; else rotate_half:10000. eval, "
          "calibrate and generate run the model as its config.json says");

ABSL_FLAG(std::string, transport, "shm",
          "how KV bytes travel: shm (through shared memory regions, where "
          "the server's region socket is on this host; gRPC messages "
          "otherwise) or grpc (messages always)");
ABSL_FLAG(std::string, shm_socket, "",
          "the server's region socket (seqkv-server --shm_listen); empty: "
          "PATH.shm beside a --server of unix:PATH");

ABSL_FLAG(std::string, profile, "",
          "fidelity profile JSON (from `seqkv calibrate`) given to codecs as "
          "model state");

namespace seqkv::cli {

ClientOptions ClientOptionsFromFlags() {
  ClientOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty()) {
    if (const char* env = std::getenv("SEQKV_API_KEY")) options.api_key = env;
  }
  options.tls_root_cert_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  if (absl::GetFlag(FLAGS_transport) == "shm") {
    std::string socket = absl::GetFlag(FLAGS_shm_socket);
    const bool named = !socket.empty();
    if (!named && options.server.starts_with("unix:"))
      socket = options.server.substr(5) + ".shm";
    // A socket named outright must work; one derived only where it exists.
    std::error_code error;
    if (named || (!socket.empty() &&
                  std::filesystem::is_socket(socket, error)))
      options.shm_socket = socket;
  }
  return options;
}

std::unique_ptr<Client> ConnectOrDie() {
  if (const std::string transport = absl::GetFlag(FLAGS_transport);
      transport != "shm" && transport != "grpc") {
    ReportError(absl::InvalidArgumentError(absl::StrCat(
        "--transport must be shm or grpc, got '", transport, "'")));
    return nullptr;
  }
  auto client = Client::Connect(ClientOptionsFromFlags());
  if (!client.ok()) {
    ReportError(client.status());
    return nullptr;
  }
  return std::move(*client);
}

int ReportError(const absl::Status& status) {
  std::cerr << "error: " << status << "\n";
  return 1;
}

absl::Status ParseRopeFlag(const std::string& text, RopeConfig& rope) {
  if (text.empty()) {
    rope = DefaultRope();
    return absl::OkStatus();
  }
  if (text == "none") {
    rope = RopeConfig{};
    return absl::OkStatus();
  }
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts[0] == "rotate_half") {
    rope.style = RopeStyle::kRotateHalf;
  } else if (parts[0] == "interleaved") {
    rope.style = RopeStyle::kInterleaved;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--rope: unknown style '", parts[0], "'"));
  }
  if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &rope.theta))
    return absl::InvalidArgumentError(
        absl::StrCat("--rope: bad theta '", parts[1], "'"));
  return absl::OkStatus();
}

RopeConfig DefaultRope() {
  return RopeConfig{RopeStyle::kRotateHalf, 10000.0, 0};
}

absl::StatusOr<RopeConfig> RopeFromFlags(const std::string& model_dir) {
  RopeConfig rope = DefaultRope();
  if (!model_dir.empty()) {
    absl::StatusOr<HfConfig> config = ReadHfConfig(model_dir);
    if (!config.ok()) return config.status();
    rope = config->rope;
  }
  if (const std::string text = absl::GetFlag(FLAGS_rope); !text.empty())
    if (absl::Status s = ParseRopeFlag(text, rope); !s.ok()) return s;
  return rope;
}

}  // namespace seqkv::cli
