// `seqkv COMMAND [flags] [args]`: the dispatcher shared by seqkv,
// seqkv-bench and seqkv-lm (see command.h). It runs a command this binary
// holds, hands any other to the binary that holds it, and prints help.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command.h"

namespace seqkv::cli {
namespace {

// Exit status when a command's binary is not found, as a shell's.
constexpr int kExitNotFound = 127;

// The flags "connection" stands for in CommandInfo::shared_flags.
constexpr std::string_view kConnectionFlags[] = {"server", "api_key", "tls_ca",
                                                 "tls_cert", "tls_key"};

struct RegisteredCommand {
  Command command;
  std::string file;  // where it registered; its own flags are defined there
};

std::vector<RegisteredCommand>& Registered() {
  static auto* commands = new std::vector<RegisteredCommand>();
  return *commands;
}

const RegisteredCommand* FindRegistered(std::string_view name) {
  for (const RegisteredCommand& c : Registered())
    if (c.command.name == name) return &c;
  return nullptr;
}

// This Abseil's string_view is not std::string_view.
absl::string_view Absl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// absl reports a flag's file without leading slashes; compare likewise.
absl::string_view NormalizeFile(absl::string_view file) {
  while (absl::ConsumePrefix(&file, "/")) {
  }
  return file;
}

bool IsHelpFlag(absl::string_view arg) {
  absl::ConsumePrefix(&arg, "-");
  absl::ConsumePrefix(&arg, "-");
  return arg == "help" || arg == "h" || arg == "helpshort" || arg == "helpfull";
}

// True if a help flag comes before the end of the flags ("--"), not as the
// value of the flag before it (`--prompt -h`).
bool AsksForHelp(std::span<char* const> args) {
  bool takes_value = false;
  for (const char* arg : args) {
    const absl::string_view text = arg;
    if (takes_value) {
      takes_value = false;
      continue;
    }
    if (text == "--") return false;
    if (IsHelpFlag(text)) return true;
    absl::string_view name = text;
    if (absl::ConsumePrefix(&name, "-")) {
      absl::ConsumePrefix(&name, "-");
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      takes_value = !absl::StrContains(name, '=') && flag != nullptr &&
                    !flag->IsOfType<bool>();
    }
  }
  return false;
}

// The running program: /proc/self/exe, or argv[0] where that is unreadable.
std::filesystem::path SelfPath(const char* argv0) {
  std::error_code error;
  std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path(argv0) : self;
}

bool IsExecutableFile(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error) &&
         access(path.c_str(), X_OK) == 0;
}

// `binary` next to the running program, else the first on PATH.
std::optional<std::filesystem::path> FindBinary(
    const std::filesystem::path& self, std::string_view binary) {
  std::filesystem::path beside = self.parent_path() / binary;
  if (IsExecutableFile(beside)) return beside;
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::filesystem::path candidate =
        std::filesystem::path(dir.empty() ? "." : std::string(dir)) / binary;
    if (IsExecutableFile(candidate)) return candidate;
  }
  return std::nullopt;
}

// Fills `words` into lines of at most `width` columns: the first starts with
// `first`, the others with `indent` spaces.
void PrintFilled(std::ostream& out, absl::string_view first,
                 const std::vector<absl::string_view>& words, size_t indent,
                 size_t width = 80) {
  out << first;
  size_t column = first.size();
  bool line_empty = true;
  for (absl::string_view word : words) {
    if (!line_empty && column + 1 + word.size() > width) {
      out << "\n" << std::string(indent, ' ');
      column = indent;
      line_empty = true;
    }
    if (!line_empty) {
      out << ' ';
      ++column;
    }
    out << word;
    column += word.size();
    line_empty = false;
  }
  out << "\n";
}

// Fills `text` into lines of at most 80 columns, each indented.
void PrintWrapped(std::ostream& out, absl::string_view text, size_t indent) {
  PrintFilled(out, std::string(indent, ' '),
              absl::StrSplit(text, ' ', absl::SkipEmpty()), indent);
}

// The words of a usage line, an optional part ("[--codec C]") as one.
std::vector<absl::string_view> UsageWords(absl::string_view line) {
  std::vector<absl::string_view> words;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i < line.size() && line[i] == '[') ++depth;
    if (i < line.size() && line[i] == ']') --depth;
    if (i == line.size() || (line[i] == ' ' && depth <= 0)) {
      if (i > start) words.push_back(line.substr(start, i - start));
      start = i + 1;
    }
  }
  return words;
}

void PrintFlag(std::ostream& out, const absl::CommandLineFlag& flag) {
  out << "  --" << flag.Name();
  const std::string default_value = flag.DefaultValue();
  if (flag.IsOfType<std::string>()) {
    if (!default_value.empty())
      out << " (default: \"" << default_value << "\")";
  } else {
    out << " (default: " << default_value << ")";
  }
  out << "\n";
  PrintWrapped(out, flag.Help(), 6);
}

void PrintFlagsNamed(std::ostream& out, std::string_view names) {
  std::vector<absl::string_view> expanded;
  for (absl::string_view name :
       absl::StrSplit(Absl(names), ',', absl::SkipEmpty())) {
    if (name == "connection") {
      for (std::string_view flag : kConnectionFlags)
        expanded.push_back(Absl(flag));
    } else {
      expanded.push_back(name);
    }
  }
  for (absl::string_view name : expanded) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    // A name in the table that no linked file defines is a bug in the table;
    // say so rather than hide it.
    if (flag == nullptr) {
      out << "  --" << name << " (not defined in this binary)\n";
    } else {
      PrintFlag(out, *flag);
    }
  }
}

// `seqkv COMMAND --help`: usage, summary, the flags of the command's own
// file, then the shared flags it reads.
void PrintCommandHelp(std::ostream& out, const CommandInfo& info,
                      const RegisteredCommand& command) {
  // The usage lines, filled; a line's continuation is indented past its own
  // leading spaces.
  bool first_line = true;
  for (absl::string_view line : absl::StrSplit(Absl(info.usage), '\n')) {
    const size_t lead = line.find_first_not_of(' ');
    const std::string prefix =
        (first_line ? "usage: " : "") +
        std::string(line.substr(0, lead == line.npos ? 0 : lead));
    PrintFilled(out, prefix, UsageWords(line), prefix.size() + 4);
    first_line = false;
  }
  out << "\n" << info.summary << "\n";
  std::vector<const absl::CommandLineFlag*> own;
  for (const auto& [name, flag] : absl::GetAllFlags())
    if (NormalizeFile(flag->Filename()) == NormalizeFile(command.file))
      own.push_back(flag);
  std::sort(own.begin(), own.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  if (!own.empty()) {
    out << "\nflags of " << info.name << ":\n";
    for (const absl::CommandLineFlag* flag : own) PrintFlag(out, *flag);
  }
  if (!info.shared_flags.empty()) {
    out << "\ncommon flags:\n";
    PrintFlagsNamed(out, info.shared_flags);
  }
}

// `seqkv help`: every command of every binary, grouped by binary, and which
// binaries are missing.
void PrintUsage(std::ostream& out, const std::filesystem::path& self) {
  out << "usage: seqkv COMMAND [--flags] [args]\n";
  std::vector<std::string_view> binaries;
  for (const CommandInfo& info : CommandTable())
    if (std::find(binaries.begin(), binaries.end(), info.binary) ==
        binaries.end())
      binaries.push_back(info.binary);
  std::sort(binaries.begin(), binaries.end());
  std::vector<std::string> missing;
  std::vector<absl::string_view> missing_binaries;
  for (std::string_view binary : binaries) {
    bool here = false;
    for (const CommandInfo& info : CommandTable())
      here = here || (info.binary == binary && FindRegistered(info.name));
    const bool found = here || FindBinary(self, binary).has_value();
    out << "\ncommands of " << binary
        << (found ? "" : " (not built: these commands are unavailable)")
        << ":\n";
    std::vector<absl::string_view> names;
    for (const CommandInfo& info : CommandTable()) {
      if (info.binary != binary) continue;
      out << "  " << info.name
          << std::string(16 - std::min<size_t>(15, info.name.size()), ' ')
          << info.summary << "\n";
      names.push_back(Absl(info.name));
    }
    if (!found) {
      missing.push_back(
          absl::StrCat(Absl(binary), " (", absl::StrJoin(names, ", "), ")"));
      missing_binaries.push_back(Absl(binary));
    }
  }
  if (!missing.empty())
    out << "\nmissing: " << absl::StrJoin(missing, "; ")
        << ": not found next to " << self.string()
        << " or on PATH; build with `cmake --build BUILD_DIR --target "
        << absl::StrJoin(missing_binaries, " ") << "`.\n";
  out << "\n`seqkv COMMAND --help` (or `seqkv help COMMAND`) lists a "
         "command's flags. Every command that talks to a server takes:\n";
  PrintFlagsNamed(out, "connection");
}

// Runs the binary that holds `info`'s command with argv[1...]; returns only
// on failure.
int ExecHolder(const CommandInfo& info, const std::filesystem::path& self,
               std::span<char* const> args) {
  const std::optional<std::filesystem::path> holder =
      FindBinary(self, info.binary);
  if (!holder) {
    std::cerr << self.filename().string() << ": '" << info.name
              << "' is a command of " << info.binary
              << ", which was not found next to " << self.string()
              << " or on PATH; build it with `cmake --build BUILD_DIR "
                 "--target "
              << info.binary << "`\n";
    return kExitNotFound;
  }
  std::error_code error;
  if (std::filesystem::equivalent(*holder, self, error)) {
    std::cerr << self.filename().string() << ": '" << info.name
              << "' belongs to " << info.binary
              << " but this build of it lacks the command\n";
    return kExitNotFound;
  }
  const std::string program = holder->string();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(nullptr);
  execv(program.c_str(), argv.data());
  std::cerr << self.filename().string() << ": cannot run " << program << ": "
            << std::strerror(errno) << "\n";
  return kExitNotFound;
}

int Main(int argc, char** argv) {
  const std::filesystem::path self = SelfPath(argv[0]);
  for (const RegisteredCommand& c : Registered()) {
    if (FindCommandInfo(c.command.name) == nullptr) {
      std::cerr << "internal error: command '" << c.command.name
                << "' is registered but missing from CommandTable() "
                   "(client/cli/command_table.cc)\n";
      return 70;
    }
  }
  // `seqkv help COMMAND` is `seqkv COMMAND --help`.
  static char help_flag[] = "--help";
  std::vector<char*> rewritten;
  if (argc >= 3 && std::string_view(argv[1]) == "help") {
    rewritten = {argv[0], argv[2], help_flag};
    argc = static_cast<int>(rewritten.size());
    argv = rewritten.data();
  }
  if (argc < 2 || IsHelpFlag(argv[1]) || std::string_view(argv[1]) == "help") {
    PrintUsage(argc < 2 ? std::cerr : std::cout, self);
    return argc < 2 ? 2 : 0;
  }
  const std::string_view name = argv[1];
  const CommandInfo* info = FindCommandInfo(name);
  if (info == nullptr) {
    std::cerr << "seqkv: unknown command '" << name << "'\n\n";
    PrintUsage(std::cerr, self);
    return 2;
  }
  const RegisteredCommand* command = FindRegistered(name);
  std::span<char* const> args(argv + 1, argv + argc);
  if (command == nullptr) return ExecHolder(*info, self, args);
  if (AsksForHelp(args.subspan(1))) {
    PrintCommandHelp(std::cout, *info, *command);
    return 0;
  }
  // Flags follow the command name; parse them as if the command were argv[0].
  absl::SetProgramUsageMessage(Absl(info->usage));
  std::vector<char*> rest(args.begin(), args.end());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  const int status =
      command->command.run(std::span<char* const>(positional).subspan(1));
  if (status == kShowUsage) {
    PrintCommandHelp(std::cerr, *info, *command);
    return 2;
  }
  return status;
}

}  // namespace

CommandRegistrar::CommandRegistrar(const Command& command,
                                   std::source_location where) {
  Registered().push_back({command, where.file_name()});
}

}  // namespace seqkv::cli

int main(int argc, char** argv) { return seqkv::cli::Main(argc, argv); }
