// Subcommands of the `seqkv` CLI register themselves here, one file each.
#ifndef SEQKV_CLIENT_CLI_COMMAND_H_
#define SEQKV_CLIENT_CLI_COMMAND_H_

#include <span>
#include <string_view>

namespace seqkv::cli {

struct Command {
  std::string_view name;     // "put", "codec-bench", "model register"...
  std::string_view summary;  // one line for `seqkv help`
  // Receives the positional arguments left after flag parsing; returns the
  // process exit code.
  int (*run)(std::span<char* const> args);
};

// Static registration: `static CommandRegistrar registrar({...});` in the
// command's own .cc file, which is compiled into the seqkv executable.
class CommandRegistrar {
 public:
  explicit CommandRegistrar(const Command& command);
};

}  // namespace seqkv::cli

#endif  // SEQKV_CLIENT_CLI_COMMAND_H_
