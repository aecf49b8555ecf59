// `kiln inspect --model mlp|cnn --cache [--json] [--steps N] [--batch-size B] [--threads T]
// [--data DIR]`: runs a few steps of training and inference, eager and graph (a kiln::function
// over the model's forward pass; fit with graph = true), then prints kiln::cache_report(),
// taken at the end of the graph-mode training, as a table or as JSON.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <ostream>
#include <string>

namespace kiln::cli {

struct InspectOptions {
  std::string model = "mlp";
  bool cache = false;
  bool json = false;
  int steps = 3;
  int64_t batch_size = 32;
  int threads = 0;   // 0: all cores
  std::string data;  // empty: synthetic data of Fashion-MNIST's shape
};

// Adds the subcommand and its options to `app`, writing into `o`.
CLI::App* add_inspect_command(CLI::App& app, InspectOptions& o);
// Runs it; throws kiln::Error on failure (cli.cc prints "kiln: error: ..." and returns 1).
int run_inspect(const InspectOptions& o, std::ostream& out);

}  // namespace kiln::cli
