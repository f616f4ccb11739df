// Test helper: runs a command line as a user would and captures stdout.
#ifndef SEQKV_TESTS_RUN_COMMAND_H_
#define SEQKV_TESTS_RUN_COMMAND_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace seqkv::testing {

struct CommandResult {
  int exit_code = -1;  // -1: did not start or did not exit normally
  std::string out;     // stdout only; stderr goes to the test log
};

// Runs `command` through /bin/sh.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    result.out.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_RUN_COMMAND_H_
