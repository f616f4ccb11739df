// `seqkv SUBCOMMAND [flags] [args]`: the command-line client.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "client/cli/command.h"

namespace seqkv::cli {
namespace {

std::vector<Command>& Commands() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}

void PrintUsage() {
  std::vector<Command> sorted = Commands();
  std::sort(sorted.begin(), sorted.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::cout << "usage: seqkv COMMAND [--flags] [args]\n\ncommands:\n";
  for (const Command& command : sorted)
    std::cout << "  " << command.name
              << std::string(16 - std::min<size_t>(15, command.name.size()),
                             ' ')
              << command.summary << "\n";
  std::cout << "\n`seqkv COMMAND --help` lists every flag.\n";
}

}  // namespace

CommandRegistrar::CommandRegistrar(const Command& command) {
  Commands().push_back(command);
}

}  // namespace seqkv::cli

int main(int argc, char** argv) {
  using seqkv::cli::Commands;
  absl::SetProgramUsageMessage("seqkv COMMAND [--flags] [args]");
  if (argc < 2 || std::string(argv[1]) == "help" ||
      std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    seqkv::cli::PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto it = std::find_if(Commands().begin(), Commands().end(),
                         [&](const auto& c) { return c.name == name; });
  if (it == Commands().end()) {
    std::cerr << "seqkv: unknown command '" << name << "'\n\n";
    seqkv::cli::PrintUsage();
    return 2;
  }
  // Flags follow the command name; parse them as if the command were argv[0].
  std::vector<char*> rest(argv + 1, argv + argc);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  return it->run(std::span<char* const>(positional).subspan(1));
}
