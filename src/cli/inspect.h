// `kiln inspect --model mlp|cnn --cache [--json] [--steps N] [--batch-size B] [--threads T]
// [--data DIR]`: runs a few steps of training and inference, eager and graph (a kiln::function
// over the model's forward pass; fit with graph = true), then prints kiln::cache_report(),
// taken at the end of the graph-mode training, as a table or as JSON.
//
// `kiln inspect --profile [--model mlp|cnn|FILE] [--train] [--batch N] [--steps N]
// [--trace OUT.json] [--json] [--per-step] [--threads T]`: profiles N graph-mode training steps
// (--train: fit's traced train step, after an unrecorded epoch of N steps) or N inference calls
// (the model's forward pass, or a model file's frozen graph) and prints kiln::Profile's table
// grouped by op (or its JSON); --trace also writes the steps as a Chrome trace.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <ostream>
#include <string>

namespace kiln::cli {

struct InspectOptions {
  std::string model;  // --cache: mlp or cnn; --profile: mlp (default), cnn or a model file
  bool cache = false;
  bool profile = false;
  bool train = false;     // --profile: training steps instead of inference
  bool per_step = false;  // --profile: also every step of the plan
  std::string trace;      // --profile: Chrome trace JSON to write
  bool json = false;
  int steps = 3;
  int64_t batch_size = 32;
  int threads = 0;                 // 0: all cores
  std::string data;                // empty: synthetic data of Fashion-MNIST's shape
  std::string precision = "fp32";  // --profile: fp32, or bf16 (the mixed_bfloat16 policy)
};

// Adds the subcommand and its options to `app`, writing into `o`.
CLI::App* add_inspect_command(CLI::App& app, InspectOptions& o);
// Runs it; throws kiln::Error on failure (cli.cc prints "kiln: error: ..." and returns 1).
int run_inspect(const InspectOptions& o, std::ostream& out);
// The --profile report (inspect_profile.cc).
int run_inspect_profile(const InspectOptions& o, std::ostream& out);

}  // namespace kiln::cli
