// Flags that commands of more than one binary read (seqkv, seqkv-bench and
// seqkv-lm; see command.h), defined here once so that every binary has them.
// The connection and data flags of the client commands are in
// common_flags.h; a flag only one command reads lives in its own file.
#ifndef SEQKV_CLIENT_CLI_SHARED_FLAGS_H_
#define SEQKV_CLIENT_CLI_SHARED_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

// model register, bench, replay.
ABSL_DECLARE_FLAG(std::string, layout);
// model register, codec-bench, eval, calibrate, generate, prefill.
ABSL_DECLARE_FLAG(std::string, model_dir);
// model register, bench, codec-bench, eval, generate.
ABSL_DECLARE_FLAG(uint32_t, chunk_tokens);
// get, delete, generate, prefill.
ABSL_DECLARE_FLAG(std::string, tokens);
// get, calibrate, prefill.
ABSL_DECLARE_FLAG(std::string, out);

#endif  // SEQKV_CLIENT_CLI_SHARED_FLAGS_H_
