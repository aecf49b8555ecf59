// The commands of the `kiln` program (cli.cc parses the arguments and calls one of them). Each
// throws kiln::Error on failure; cli.cc prints it as one "kiln: error: ..." line and exits 1.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kiln/tensor.h"

namespace kiln::cli {

struct Options {
  std::string model = "mlp";  // built-in model, when neither --config nor --resume is given
  std::string config;         // --config: a Keras-style JSON model config
  std::string resume;         // --resume: a model file to continue training
  std::string file;           // the model file of eval/predict/summary/freeze
  int epochs = 1;
  int64_t batch_size = 64;
  std::string optimizer = "adam";
  double lr = 1e-3;
  uint64_t seed = 0;
  int threads = 0;  // 0: the number of cores
  std::string data;
  std::string out;
  std::string metrics_out;
  std::string weights;
  std::string x, y;                  // --x / --y: .npy data of one's own
  std::vector<std::string> inputs;   // predict --input (repeatable; NAME=FILE or FILE)
  std::vector<std::string> outputs;  // predict --output
  std::string onnx;                  // export --onnx
  int opset = 13;
  bool distributed = false;
  bool graph = false;
  std::string precision = "fp32";  // train: fp32, or bf16 (the mixed_bfloat16 dtype policy)
  double bucket_mb = 25;
  double timeout = 60;
  // optimize
  double prune = -1;  // fraction of units/filters removed; < 0: no pruning
  std::string prune_norm = "l1";
  int finetune_epochs = 1;
  bool int8 = false;
  int qat_epochs = 0;
  bool keep_slower_int8 = false;  // int8 layers stay int8 even where float is faster here  // int8
                                  // by quantization-aware training instead of calibration
  int64_t calibrate = 512;
  std::string calibration = "minmax";
  double percentile = 99.99;
  double max_drop = 0.5;
  int latency_calls = 400;
  bool json = false;
};

// CLI11 check: a positive (whole) number, with a message that says so.
CLI::Validator positive(bool integer);
// `threads` (0: the cores, shared by the ranks mpirun started on this machine).
void apply_threads(int threads);

// Images and labels from --x / --y (.npy), checked: same first dim, floating images, integer
// labels; ValueError / DTypeError naming the flag and the file otherwise.
struct XY {
  Tensor x, y;
};
XY load_xy(const std::string& x_path, const std::string& y_path);

int train(const Options& o, std::ostream& out);        // train.cc
int eval(const Options& o, std::ostream& out);         // model_commands.cc
int predict(const Options& o, std::ostream& out);      // model_commands.cc
int summary(const Options& o, std::ostream& out);      // model_commands.cc
int freeze_file(const Options& o, std::ostream& out);  // model_commands.cc
int export_file(const Options& o, std::ostream& out);  // model_commands.cc: .kiln -> .onnx
int import_file(const Options& o, std::ostream& out);  // model_commands.cc: .onnx -> .kiln
int optimize(const Options& o, std::ostream& out);     // optimize.cc: prune and/or int8

}  // namespace kiln::cli
