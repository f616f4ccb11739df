// Flags shared by several `seqkv` subcommands. A command's own flags live in
// its own file.
#ifndef SEQKV_CLIENT_CLI_COMMON_FLAGS_H_
#define SEQKV_CLIENT_CLI_COMMON_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "client/client.h"

ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(std::string, api_key);
ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, codec);
ABSL_DECLARE_FLAG(std::string, namespace);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, admin);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, rope);
ABSL_DECLARE_FLAG(std::string, profile);
ABSL_DECLARE_FLAG(std::string, transport);
ABSL_DECLARE_FLAG(std::string, shm_socket);

namespace seqkv::cli {

// --server, --api_key (or $SEQKV_API_KEY), the --tls_* flags, and
// --transport / --shm_socket.
ClientOptions ClientOptionsFromFlags();

// Connects or prints the error; nullptr on failure.
std::unique_ptr<Client> ConnectOrDie();

// Prints "error: <status>" to stderr and returns the exit code for it.
int ReportError(const absl::Status& status);

// Parses --rope ("none", "rotate_half:10000", "interleaved:500000") into
// `rope`. A style without a theta keeps rope.theta; "" gives DefaultRope().
absl::Status ParseRopeFlag(const std::string& text, RopeConfig& rope);

// The RoPE of commands that have neither --rope nor a config.json to read:
// rotate_half with theta 10000 (HF Llama's defaults).
RopeConfig DefaultRope();

// The RoPE of the keys for a command with --model_dir: the RoPE that
// `model_dir`'s config.json states (model/hf_config.h), overridden by --rope
// where given; DefaultRope() under --rope when `model_dir` is empty. Errors
// name the unreadable config.json or the bad --rope.
absl::StatusOr<RopeConfig> RopeFromFlags(const std::string& model_dir);

}  // namespace seqkv::cli

#endif  // SEQKV_CLIENT_CLI_COMMON_FLAGS_H_
