// Runs the `kiln` program in-process (kiln::cli::run) and captures its exit code and output.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"

namespace kiln::testing {

struct CliResult {
  int code;
  std::string out, err;
};

// args without the program name: {"train", "--model", "mlp"}.
inline CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "kiln");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int code = cli::run(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

}  // namespace kiln::testing
