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

namespace seqkv::cli {

// --server, --api_key (or $SEQKV_API_KEY) and the --tls_* flags.
ClientOptions ClientOptionsFromFlags();

// Connects or prints the error; nullptr on failure.
std::unique_ptr<Client> ConnectOrDie();

// Prints "error: <status>" to stderr and returns the exit code for it.
int ReportError(const absl::Status& status);

// Parses --rope ("none", "rotate_half:10000", "interleaved:500000") into
// `rope`.
absl::Status ParseRopeFlag(const std::string& text, RopeConfig& rope);

}  // namespace seqkv::cli

#endif  // SEQKV_CLIENT_CLI_COMMON_FLAGS_H_
