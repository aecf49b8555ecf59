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

#include "cli/inspect.h"
#include "kiln/data.h"
#include "kiln/distributed.h"
#include "kiln/error.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/models.h"
#include "kiln/nn/training.h"
#include "kiln/threading.h"

namespace kiln::cli {
namespace {

struct Options {
  std::string model = "mlp";
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
  bool distributed = false;
  bool graph = false;
  double bucket_mb = 25;
  double timeout = 60;
};

std::shared_ptr<Sequential> make_model(const std::string& name) {
  return name == "cnn" ? make_cnn() : make_mlp();
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, double lr) {
  if (name == "sgd") return std::make_unique<SGD>(lr);
  if (name == "adamw") return std::make_unique<AdamW>(lr);
  if (name == "rmsprop") return std::make_unique<RMSprop>(lr);
  return std::make_unique<Adam>(lr);
}

// `threads` (0: the cores, shared by the ranks mpirun started on this machine).
void apply_threads(int threads) {
  if (threads <= 0) {
    int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int ranks = distributed::world_size() > 1 && local ? std::max(1, std::atoi(local)) : 1;
    threads = std::max(1, cores / ranks);
  }
  set_num_threads(threads);
}

void init_distributed(const Options& o) {
  if (!distributed::built_with_mpi()) {
    throw Error(
        "--distributed: this kiln was built without MPI (install libopenmpi-dev openmpi-bin "
        "and configure again)");
  }
  distributed::Options d;
  d.bucket_bytes = static_cast<int64_t>(std::clamp(o.bucket_mb * (1 << 20), 1.0, 1e18));
  d.timeout_seconds = o.timeout;
  distributed::init(d);
}

// Writes one JSON object per epoch, as each epoch ends (a crash keeps the epochs done so far).
class MetricsWriter : public Callback {
 public:
  explicit MetricsWriter(const std::string& path) : path_(path), file_(path, std::ios::trunc) {
    if (!file_) throw ValueError("--metrics-out: cannot write " + path);
  }
  void on_epoch_end(int epoch, const Logs& logs) override {
    nlohmann::json j;
    j["epoch"] = epoch + 1;
    for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}) {
      auto it = logs.find(key);
      j[key] = it == logs.end() ? nlohmann::json(nullptr) : nlohmann::json(it->second);
    }
    file_ << j.dump() << "\n";
    file_.flush();
    if (!file_) throw Error("--metrics-out: writing " + path_ + " failed");
  }

 private:
  std::string path_;
  std::ofstream file_;
};

int train(const Options& o, std::ostream& real_out) {
  if (o.distributed) init_distributed(o);
  // Rank 0 alone prints and writes files; the other ranks are silent.
  const bool lead = distributed::rank() == 0;
  std::ostream silent(nullptr);
  std::ostream& out = lead ? real_out : silent;
  apply_threads(o.threads);
  set_global_seed(o.seed);
  FashionMnist d = load_fashion_mnist(o.data);
  auto model = make_model(o.model);
  auto opt = make_optimizer(o.optimizer, o.lr);
  SparseCategoricalCrossentropy loss;
  Dataset train =
      Dataset(d.train_images, d.train_labels).shuffle(o.seed).batch(o.batch_size).prefetch(2);
  FitOptions fo;
  fo.epochs = o.epochs;
  fo.validation = Dataset(d.test_images, d.test_labels).batch(500);
  fo.out = &out;
  fo.distributed = o.distributed;
  fo.graph = o.graph;
  if (lead && !o.metrics_out.empty())
    fo.callbacks.push_back(std::make_shared<MetricsWriter>(o.metrics_out));
  out << "kiln train: " << o.model << " on Fashion-MNIST (" << d.train_images.dim(0) << " train, "
      << d.test_images.dim(0) << " test), " << o.optimizer << " lr " << o.lr << ", batch "
      << o.batch_size;
  if (o.distributed) {
    out << " over " << distributed::world_size()
        << (distributed::world_size() == 1 ? " rank" : " ranks");
  }
  out << ", seed " << o.seed << ", " << num_threads() << " threads"
      << (o.distributed ? " per rank" : "") << (o.graph ? ", graph mode" : "") << "\n";
  History h = fit(*model, *opt, loss, train, fo);
  std::string path = o.out.empty() ? "kiln_" + o.model + ".safetensors" : o.out;
  if (!lead) return 0;
  save_weights(*model, path);
  char acc[32];
  std::snprintf(acc, sizeof acc, "%.4f", h["val_accuracy"].back());
  out << "test accuracy " << acc << "; weights saved to " << path << "\n";
  return 0;
}

int eval(const Options& o, std::ostream& out) {
  apply_threads(o.threads);
  FashionMnist d = load_fashion_mnist(o.data);
  auto model = make_model(o.model);
  load_weights(*model, o.weights);
  SparseCategoricalCrossentropy loss;
  Logs logs = evaluate(*model, loss, Dataset(d.test_images, d.test_labels).batch(o.batch_size),
                       /*accuracy=*/true, o.graph);
  char line[128];
  std::snprintf(line, sizeof line, "test loss %.4f, test accuracy %.4f (%lld examples)\n",
                logs["loss"], logs["accuracy"], static_cast<long long>(d.test_images.dim(0)));
  out << line;
  return 0;
}

int summary(const Options& o, std::ostream& out) {
  auto model = make_model(o.model);
  out << model->summary(Shape{28, 28, 1});
  return 0;
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

}  // namespace

int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"kiln: train, evaluate and inspect models on Fashion-MNIST", "kiln"};
  app.require_subcommand(1);
  Options o;
  const std::vector<std::string> models = {"mlp", "cnn"};
  auto add_model = [&](CLI::App* c) {
    c->add_option("--model", o.model, "mlp or cnn")->required()->check(CLI::IsMember(models));
  };
  auto add_threads = [&](CLI::App* c) {
    c->add_option("--threads", o.threads, "threads for kernels (default: all cores)")
        ->check(positive(true));
  };
  auto add_data = [&](CLI::App* c) {
    c->add_option("--data", o.data, "directory with the Fashion-MNIST IDX files")
        ->check(CLI::ExistingDirectory);
  };

  CLI::App* tr = app.add_subcommand("train", "train a model and save its weights");
  add_model(tr);
  tr->add_option("--epochs", o.epochs, "epochs (default 1)")->check(positive(true));
  tr->add_option("--batch-size", o.batch_size, "examples per step (default 64)")
      ->check(positive(true));
  tr->add_option("--optimizer", o.optimizer, "adam (default), sgd, adamw or rmsprop")
      ->check(CLI::IsMember({"adam", "sgd", "adamw", "rmsprop"}));
  tr->add_option("--lr", o.lr, "learning rate (default 1e-3)")->check(positive(false));
  tr->add_option("--seed", o.seed, "seed for weights and shuffling (default 0)");
  add_threads(tr);
  add_data(tr);
  tr->add_option("--out", o.out, "weights file (default kiln_<model>.safetensors)");
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

  CLI::App* ev = app.add_subcommand("eval", "evaluate saved weights on the test set");
  add_model(ev);
  ev->add_option("--weights", o.weights, "a file written by kiln train")
      ->required()
      ->check(CLI::ExistingFile);
  ev->add_option("--batch-size", o.batch_size, "examples per batch (default 64)")
      ->check(positive(true));
  ev->add_flag("--graph", o.graph, "run each batch as a traced graph function");
  add_threads(ev);
  add_data(ev);

  CLI::App* su = app.add_subcommand("summary", "print the model's layers and parameter counts");
  add_model(su);

  InspectOptions io;
  CLI::App* in = add_inspect_command(app, io);

  const std::string first = argc > 1 ? argv[1] : "";
  if (!first.empty() && first[0] != '-' && first != "train" && first != "eval" &&
      first != "summary" && first != "inspect") {
    err << "kiln: unknown command '" << argv[1]
        << "' (commands: train, eval, summary, inspect; see --help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
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
