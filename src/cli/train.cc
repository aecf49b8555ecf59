// `kiln train`: a built-in model (--model), any architecture as a Keras-style JSON config
// (--config) or a saved model continued where it stopped (--resume), on Fashion-MNIST or on
// .npy data (--x/--y); saves a model file (.kiln: config, weights, optimizer state, frozen
// graph) or, for a .safetensors path, the weights alone.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "kiln/data.h"
#include "kiln/distributed.h"
#include "kiln/dtype_policy.h"
#include "kiln/error.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/config.h"
#include "kiln/threading.h"

namespace kiln::cli {
namespace {

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, double lr) {
  if (name == "sgd") return std::make_unique<SGD>(lr);
  if (name == "adamw") return std::make_unique<AdamW>(lr);
  if (name == "rmsprop") return std::make_unique<RMSprop>(lr);
  return std::make_unique<Adam>(lr);
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

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The model a --config file describes (its variables in `store`), built for examples shaped
// like `example` (no batch dim) unless its config says how to build it.
std::shared_ptr<Layer> model_from_config_file(const std::string& path, const Shape& example,
                                              VariableStore& store) {
  std::shared_ptr<Layer> model = model_from_json(path, &store);
  std::vector<int64_t> dims{1};
  for (int64_t d : example.dims()) dims.push_back(d);
  model->output_shape(Shape(dims));
  return model;
}

int64_t training_int(const ModelFileInfo& info, const char* key, int64_t fallback) {
  auto it = info.training.find(key);
  if (it == info.training.end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw FormatError("--resume: training field '" + std::string(key) + "' is '" +
                      it->second.substr(0, 40) + "', not a number");
  }
}

}  // namespace

int train(const Options& given, std::ostream& real_out) {
  Options o = given;
  if (o.distributed) init_distributed(o);
  // Rank 0 alone prints and writes files; the other ranks are silent.
  const bool lead = distributed::rank() == 0;
  std::ostream silent(nullptr);
  std::ostream& out = lead ? real_out : silent;
  apply_threads(o.threads);
  // The dtype policy is process-wide: set for this run, restored after it (tests run in-process).
  struct RestorePolicy {
    DTypePolicy saved = dtype_policy_kind();
    ~RestorePolicy() { set_dtype_policy(saved); }
  } restore_policy;
  set_dtype_policy(o.precision == "bf16" ? "mixed_bfloat16" : "float32");  // refused: names why

  // The saved run's settings come first when resuming (a flag given again overrides them).
  LoadedModel resumed;
  int initial_epoch = 0;
  if (!o.resume.empty()) {
    resumed = load_model(o.resume);
    resumed.trainable_model();  // throws, naming why, for a graph-only file
    initial_epoch = static_cast<int>(training_int(resumed.info, "epochs_done", 0));
    o.seed =
        static_cast<uint64_t>(training_int(resumed.info, "seed", static_cast<int64_t>(o.seed)));
    if (given.batch_size == Options{}.batch_size) {
      o.batch_size = training_int(resumed.info, "batch_size", o.batch_size);
    }
    if (o.epochs <= initial_epoch) {
      throw ValueError("--resume: " + o.resume + " has trained " + std::to_string(initial_epoch) +
                       " epochs already; --epochs counts from the start, so give more than that");
    }
  }
  set_global_seed(o.seed);

  Tensor train_x, train_y;
  std::optional<Dataset> validation;
  std::string data_name;
  if (!o.x.empty()) {
    XY xy = load_xy(o.x, o.y);
    train_x = xy.x;
    train_y = xy.y;
    data_name = o.x;
  } else {
    FashionMnist d = load_fashion_mnist(o.data);
    train_x = d.train_images;
    train_y = d.train_labels;
    validation = Dataset(d.test_images, d.test_labels).batch(500);
    data_name = "Fashion-MNIST";
  }
  Shape example;
  for (int i = 1; i < train_x.rank(); ++i) example.push_back(train_x.shape()[i]);

  // A run is one program: layer names and initial weights depend only on the seed, as if the
  // process were fresh (in-process callers such as tests get the same numbers every time).
  LayerNameScope names;
  VariableStore store(o.seed);  // declared before `model`: outlives it
  std::shared_ptr<Layer> model;
  std::unique_ptr<Optimizer> opt;
  std::string model_name = o.model;
  if (!o.resume.empty()) {
    model = resumed.model;
    opt = std::move(resumed.optimizer);
    model_name = resumed.info.model_name;
  } else if (!o.config.empty()) {
    model = model_from_config_file(o.config, example, store);
    model_name = model->name();
  } else {
    model = o.model == "cnn" ? make_cnn(&store) : make_mlp(&store);
  }
  if (!opt) opt = make_optimizer(o.optimizer, o.lr);

  SparseCategoricalCrossentropy loss;
  Dataset train = Dataset(train_x, train_y).shuffle(o.seed).batch(o.batch_size).prefetch(2);
  FitOptions fo;
  fo.epochs = o.epochs;
  fo.initial_epoch = initial_epoch;
  fo.validation = validation;
  fo.out = &out;
  fo.distributed = o.distributed;
  fo.graph = o.graph;
  if (lead && !o.metrics_out.empty()) {
    fo.callbacks.push_back(std::make_shared<MetricsWriter>(o.metrics_out));
  }
  out << "kiln train: " << model_name << " on " << data_name << " (" << train_x.dim(0) << " train";
  if (validation) out << ", " << validation->num_batches() * 500 << " test";
  out << "), " << opt->name() << " lr " << opt->learning_rate() << ", batch " << o.batch_size;
  if (o.distributed) {
    out << " over " << distributed::world_size()
        << (distributed::world_size() == 1 ? " rank" : " ranks");
  }
  out << ", seed " << o.seed << ", " << num_threads() << " threads"
      << (o.distributed ? " per rank" : "") << (o.graph ? ", graph mode" : "")
      << (o.precision == "bf16" ? ", bf16 mixed precision" : "");
  if (initial_epoch > 0) out << ", resuming after epoch " << initial_epoch;
  out << "\n";
  History h = fit(*model, *opt, loss, train, fo);
  if (!lead) return 0;
  const std::string path = o.out.empty() ? "kiln_" + o.model + ".kiln" : o.out;
  if (ends_with(path, ".safetensors")) {
    save_weights(*model, path);
  } else {
    SaveModelOptions so;
    so.optimizer = opt.get();
    so.training = {
        {"epochs_done", std::to_string(h.epochs.empty() ? initial_epoch : h.epochs.back() + 1)},
        {"seed", std::to_string(o.seed)},
        {"batch_size", std::to_string(o.batch_size)},
        {"data", data_name}};
    save_model(*model, path, so);
  }
  if (h.history.count("val_accuracy")) {
    char acc[32];
    std::snprintf(acc, sizeof acc, "%.4f", h["val_accuracy"].back());
    out << "test accuracy " << acc << "; ";
  }
  out << (ends_with(path, ".safetensors") ? "weights" : "model") << " saved to " << path << "\n";
  return 0;
}

}  // namespace kiln::cli
