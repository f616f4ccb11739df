// The commands of the `seqkv` CLI and the binaries that hold them.
//
// The CLI is three programs that share this registry and the dispatcher in
// main.cc (the seqkv_cli_main library):
//   seqkv        client operations and admin (put, get, lookup, model, ...)
//   seqkv-bench  benchmarks (bench, replay, codec-bench), with the peers'
//                compressors
//   seqkv-lm     the model runtime (eval, calibrate, generate, prefill), with
//                OpenBLAS and ICU
// Each command registers itself from its own .cc file, which is compiled
// into one of them. Any of the three runs any command: one it does not hold
// is handed to the binary that does (found next to the running one, then on
// PATH) with the same arguments, so `seqkv bench ...` runs `seqkv-bench
// bench ...`. CommandTable() says which binary holds which command.
//
// Everything here is set up before main() and only read afterwards.
#ifndef SEQKV_CLIENT_CLI_COMMAND_H_
#define SEQKV_CLIENT_CLI_COMMAND_H_

#include <source_location>
#include <span>
#include <string_view>

namespace seqkv::cli {

// What `seqkv help` and `seqkv COMMAND --help` say about a command, and
// where it lives. One entry per command in CommandTable().
struct CommandInfo {
  std::string_view name;     // "put", "codec-bench", "model"...
  std::string_view binary;   // "seqkv", "seqkv-bench" or "seqkv-lm"
  std::string_view summary;  // one line for `seqkv help`
  // The usage line(s) after "usage: ", e.g. "seqkv put --model NAME FILE...".
  std::string_view usage;
  // Flags the command reads that are defined outside its own .cc file,
  // comma-separated ("model,codec,json"). "connection" stands for --server,
  // --api_key and the --tls_* flags. `--help` lists these after the flags of
  // the command's own file.
  std::string_view shared_flags;
};

// Every command of every binary, sorted by name.
std::span<const CommandInfo> CommandTable();

// The entry for `name`, or nullptr.
const CommandInfo* FindCommandInfo(std::string_view name);

// A command returns this from `run` when its arguments are missing or
// malformed: the dispatcher prints the command's help to stderr and exits
// with status 2.
inline constexpr int kShowUsage = -2;

struct Command {
  std::string_view name;  // must have an entry in CommandTable()
  // Receives the positional arguments left after flag parsing; returns the
  // process exit code, or kShowUsage.
  int (*run)(std::span<char* const> args);
};

// Static registration: `const CommandRegistrar registrar({"put", RunPut});`
// in the command's own .cc file. `where` records that file: `--help` lists
// the flags defined in it as the command's own.
class CommandRegistrar {
 public:
  explicit CommandRegistrar(
      const Command& command,
      std::source_location where = std::source_location::current());
};

}  // namespace seqkv::cli

#endif  // SEQKV_CLIENT_CLI_COMMAND_H_
