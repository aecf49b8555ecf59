#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/inspect.h"
#include "kiln/compress.h"
#include "kiln/data.h"
#include "kiln/distributed.h"
#include "kiln/error.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/models.h"
#include "kiln/nn/training.h"
#include "kiln/threading.h"

namespace kiln::cli {

void apply_threads(int threads) {
  if (threads <= 0) {
    int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int ranks = distributed::world_size() > 1 && local ? std::max(1, std::atoi(local)) : 1;
    threads = std::max(1, cores / ranks);
  }
  set_num_threads(threads);
}

// CLI11's PositiveNumber prints "Value two not in range 0 to 1.79e308"; this says what is wrong.
CLI::Validator positive(bool integer) {
  return CLI::Validator(
      [integer](std::string& v) -> std::string {
        size_t used = 0;
        double x = 0;
        try {
          x = std::stod(v, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != v.size() || !(x > 0) ||
            (integer && x != static_cast<double>(static_cast<int64_t>(x)))) {
          return std::string("expected a positive ") + (integer ? "whole number" : "number") +
                 ", got '" + v + "'";
        }
        return "";
      },
      integer ? "POSITIVE INT" : "POSITIVE");
}

int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  register_compress_layers();  // model files may hold pruning / QAT wrappers
  CLI::App app{"kiln: train, evaluate, run and inspect models", "kiln"};
  app.require_subcommand(1);
  Options o;
  const std::vector<std::string> models = {"mlp", "cnn"};
  auto add_threads = [&](CLI::App* c) {
    c->add_option("--threads", o.threads, "threads for kernels (default: all cores)")
        ->check(positive(true));
  };
  auto add_data = [&](CLI::App* c) {
    c->add_option("--data", o.data, "directory with the Fashion-MNIST IDX files")
        ->check(CLI::ExistingDirectory);
  };
  auto add_xy = [&](CLI::App* c) {
    CLI::Option* x =
        c->add_option("--x", o.x, "examples as .npy (float32 [N, ...])")->check(CLI::ExistingFile);
    CLI::Option* y =
        c->add_option("--y", o.y, "integer labels as .npy ([N])")->check(CLI::ExistingFile);
    x->needs(y);
    y->needs(x);
  };
  auto add_batch = [&](CLI::App* c, const char* what) {
    c->add_option("--batch-size", o.batch_size, what)->check(positive(true));
  };

  CLI::App* tr = app.add_subcommand("train", "train a model and save it");
  CLI::Option* model_opt =
      tr->add_option("--model", o.model, "built-in model: mlp (default) or cnn")
          ->check(CLI::IsMember(models));
  CLI::Option* config_opt = tr->add_option("--config", o.config, "a Keras-style JSON model config")
                                ->check(CLI::ExistingFile);
  CLI::Option* resume_opt = tr->add_option("--resume", o.resume,
                                           "a model file to continue training (its optimizer "
                                           "state, epochs and seed)")
                                ->check(CLI::ExistingFile);
  model_opt->excludes(config_opt)->excludes(resume_opt);
  config_opt->excludes(resume_opt);
  tr->add_option("--epochs", o.epochs, "epochs in all, counted from the start (default 1)")
      ->check(positive(true));
  add_batch(tr, "examples per step (default 64)");
  tr->add_option("--optimizer", o.optimizer, "adam (default), sgd, adamw or rmsprop")
      ->check(CLI::IsMember({"adam", "sgd", "adamw", "rmsprop"}));
  tr->add_option("--lr", o.lr, "learning rate (default 1e-3)")->check(positive(false));
  tr->add_option("--seed", o.seed, "seed for weights and shuffling (default 0)");
  add_threads(tr);
  add_data(tr);
  add_xy(tr);
  tr->add_option("--out", o.out,
                 "model file (default kiln_<model>.kiln; a .safetensors path saves weights only)");
  tr->add_option("--metrics-out", o.metrics_out, "write one JSON object per epoch to this file");
  tr->add_flag("--distributed", o.distributed,
               "data-parallel over the ranks of mpirun (batch split across them)");
  tr->add_option("--bucket-mb", o.bucket_mb, "gradient all-reduce bucket size (default 25)")
      ->check(positive(false));
  tr->add_option("--timeout", o.timeout,
                 "seconds a rank may wait for another before the job ends (default 60)")
      ->check(positive(false));
  tr->add_flag("--graph", o.graph,
               "run each step as a traced graph function (forward, gradients and update)");
  tr->add_option("--precision", o.precision,
                 "fp32 (default) or bf16: matmul/conv in bfloat16 with float32 weights and loss "
                 "(Keras' mixed_bfloat16; needs AVX512_BF16 or AMX)")
      ->check(CLI::IsMember({"fp32", "bf16"}));

  CLI::App* ev = app.add_subcommand("eval", "evaluate a model file (or weights) on test data");
  ev->add_option("file", o.file, "a model file (.kiln) or an ONNX model (.onnx)")
      ->check(CLI::ExistingFile);
  CLI::Option* ev_model = ev->add_option("--model", o.model, "with --weights: mlp or cnn")
                              ->check(CLI::IsMember(models));
  CLI::Option* ev_weights = ev->add_option("--weights", o.weights, "a weights file (.safetensors)")
                                ->check(CLI::ExistingFile);
  ev_weights->needs(ev_model);
  add_batch(ev, "examples per batch (default 64)");
  ev->add_flag("--graph", o.graph, "with --weights: run each batch as a traced graph function");
  add_threads(ev);
  add_data(ev);
  add_xy(ev);

  CLI::App* pr = app.add_subcommand("predict", "run a model file on .npy inputs");
  pr->add_option("file", o.file, "a model file (.kiln) or an ONNX model (.onnx)")
      ->required()
      ->check(CLI::ExistingFile);
  pr->add_option("--input", o.inputs,
                 "an input as .npy; repeat for several (in the model's "
                 "order, or NAME=FILE.npy)")
      ->required();
  pr->add_option("--output", o.outputs, "write an output as .npy; repeat for several");
  add_batch(pr, "rows per call (default 64)");
  add_threads(pr);

  CLI::App* su = app.add_subcommand("summary", "print a model's layers, parameters and graph");
  su->add_option("file", o.file, "a model file (.kiln) or an ONNX model (.onnx)")
      ->check(CLI::ExistingFile);
  CLI::Option* su_model = su->add_option("--model", o.model, "a built-in model: mlp or cnn")
                              ->check(CLI::IsMember(models));

  CLI::App* fr = app.add_subcommand("freeze", "write a model file holding only its frozen graph");
  fr->add_option("file", o.file, "a model file (.kiln)")->required()->check(CLI::ExistingFile);
  fr->add_option("-o,--out", o.out, "the frozen model file to write")->required();

  CLI::App* ex = app.add_subcommand("export", "write a model file's frozen graph as ONNX");
  ex->add_option("file", o.file, "a model file (.kiln)")->required()->check(CLI::ExistingFile);
  ex->add_option("--onnx", o.onnx, "the .onnx file to write")->required();
  ex->add_option("--opset", o.opset, "ONNX opset, 13 (default) to 17")->check(CLI::Range(13, 17));

  CLI::App* im = app.add_subcommand("import", "import an ONNX model as a kiln model file");
  im->add_option("file", o.file, "an ONNX model (.onnx)")->required()->check(CLI::ExistingFile);
  im->add_option("-o,--out", o.out, "the model file to write (.kiln)")->required();

  CLI::App* op = app.add_subcommand(
      "optimize", "prune and/or quantize a model and measure it before and after");
  op->add_option("file", o.file, "a model file (.kiln) or an ONNX model (.onnx)")
      ->required()
      ->check(CLI::ExistingFile);
  op->add_option("-o,--out", o.out, "the model file to write (.kiln)")->required();
  op->add_option("--onnx", o.onnx, "also write the result as ONNX (int8: QDQ)");
  op->add_option("--prune", o.prune,
                 "structured pruning: the fraction of each layer's units/filters removed, "
                 "in [0, 1)")
      ->check(CLI::Range(0.0, 0.999999));
  op->add_option("--prune-norm", o.prune_norm, "l1 (default) or l2: the norm that ranks units")
      ->check(CLI::IsMember({"l1", "l2"}));
  op->add_option("--finetune-epochs", o.finetune_epochs,
                 "epochs of fine-tuning after pruning (default 1; 0: none)")
      ->check(CLI::Range(0, 1000));
  op->add_option("--lr", o.lr, "fine-tuning learning rate (Adam, default 1e-3)")
      ->check(positive(false));
  op->add_flag("--int8", o.int8, "post-training int8 quantization with the per-layer check");
  op->add_option("--qat-epochs", o.qat_epochs,
                 "with --int8: quantization-aware training for N epochs instead of calibration")
      ->check(CLI::Range(0, 1000));
  op->add_flag("--keep-slower-int8", o.keep_slower_int8,
               "keep int8 layers that are not faster on this CPU (e.g. for another target CPU); "
               "the error check still applies");
  op->add_option("--calibrate", o.calibrate, "calibration examples (default 512)")
      ->check(positive(true));
  op->add_option("--calibration", o.calibration, "minmax (default), percentile or mse")
      ->check(CLI::IsMember({"minmax", "percentile", "mse"}));
  op->add_option("--percentile", o.percentile, "with --calibration percentile (default 99.99)")
      ->check(CLI::Range(50.000001, 100.0));
  op->add_option("--max-drop", o.max_drop,
                 "accuracy points int8 may lose on held-out data (default 0.5)")
      ->check(CLI::Range(0.0, 100.0));
  op->add_option("--latency-calls", o.latency_calls, "timed calls at batch 1 (default 400)")
      ->check(positive(true));
  op->add_flag("--json", o.json, "print the figures as JSON");
  add_batch(op, "fine-tuning batch size (default 64)");
  op->add_option("--seed", o.seed, "fine-tuning shuffle seed (default 0)");
  add_threads(op);
  add_data(op);
  add_xy(op);

  InspectOptions io;
  CLI::App* in = add_inspect_command(app, io);

  const std::string first = argc > 1 ? argv[1] : "";
  static const std::vector<std::string> kCommands = {
      "train", "eval", "predict", "summary", "freeze", "export", "import", "optimize", "inspect"};
  if (!first.empty() && first[0] != '-' &&
      std::find(kCommands.begin(), kCommands.end(), first) == kCommands.end()) {
    err << "kiln: unknown command '" << argv[1]
        << "' (commands: train, eval, predict, summary, freeze, export, import, optimize, inspect; "
           "see "
           "--help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
    if (ev->parsed() && o.file.empty() == o.weights.empty()) {
      throw CLI::ValidationError("eval", "give a model file, or --model with --weights");
    }
    if (su->parsed() && o.file.empty() == (su_model->count() == 0)) {
      throw CLI::ValidationError("summary", "give a model file or --model mlp|cnn");
    }
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e, out, err);  // --help, for the right command
    // One clear line; CLI11's messages already name the option and the bad value.
    CLI::App* sub = nullptr;
    for (CLI::App* c : app.get_subcommands()) sub = c;
    err << "kiln" << (sub ? " " + sub->get_name() : "") << ": " << e.what() << " (see --help)\n";
    return 2;
  }
  try {
    if (tr->parsed()) return train(o, out);
    if (ev->parsed()) return eval(o, out);
    if (pr->parsed()) return predict(o, out);
    if (fr->parsed()) return freeze_file(o, out);
    if (ex->parsed()) return export_file(o, out);
    if (im->parsed()) return import_file(o, out);
    if (op->parsed()) return optimize(o, out);
    if (in->parsed()) return run_inspect(io, out);
    return summary(o, out);
  } catch (const std::exception& e) {
    // One rank failing alone would leave the others waiting: end the whole job.
    if (distributed::world_size() > 1) distributed::abort_job(e.what());
    err << "kiln: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace kiln::cli
