// kiln's side of bench/peers/torch_train_bench.cc: the same models, optimizer (Adam 1e-3), batch
// (64) and data, trained with kiln::fit eagerly or in graph mode (--graph 1: a traced step);
// prints the same JSON line per epoch.
//   kiln_train_bench [--model mlp|cnn] [--epochs N] [--threads T] [--seed S] [--data DIR]
//                    [--graph 0|1] [--precision fp32|bf16]
//                    [--prefetch N]  (batches prepared ahead on a thread; 0: none)
#include <cstdio>
#include <cstdlib>
#include <string>

#include <kiln/data.h>
#include <kiln/dtype_policy.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "machine.h"

namespace {

class JsonLines : public kiln::Callback {
 public:
  JsonLines(std::string model, int64_t steps, int threads, bool graph)
      : model_(std::move(model)), steps_(steps), threads_(threads), graph_(graph) {}
  std::string seed_precision;  // ,"seed":S,"precision":"P"
  void on_epoch_end(int epoch, const kiln::Logs& logs) override {
    double s = logs.at("seconds");
    std::printf(
        "{\"model\":\"%s\",\"epoch\":%d,\"loss\":%.6f,\"accuracy\":%.6f,\"val_accuracy\":%.6f,"
        "\"seconds\":%.4f,\"ms_per_step\":%.4f,\"threads\":%d,\"cpu_model\":\"%s\","
        "\"cpu_isa\":\"%s\",\"mode\":\"%s\"%s}\n",
        model_.c_str(), epoch + 1, logs.at("loss"), logs.at("accuracy"), logs.at("val_accuracy"), s,
        1e3 * s / static_cast<double>(steps_), threads_, kiln_bench::cpu_model().c_str(),
        kiln_bench::cpu_isa(), graph_ ? "graph" : "eager", seed_precision.c_str());
    std::fflush(stdout);
  }

 private:
  std::string model_;
  int64_t steps_;
  int threads_;
  bool graph_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "mlp", data_dir, precision = "fp32";
  int epochs = 1, threads = 2, prefetch = 2;
  bool graph = false;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr,
                   "usage: %s [--model mlp|cnn] [--epochs N] [--threads T] [--seed S] [--data DIR] "
                   "[--graph 0|1] [--precision fp32|bf16] [--prefetch N]\n",
                   argv[0]);
      return 2;
    }
    std::string v = argv[++i];
    if (a == "--model")
      model_name = v;
    else if (a == "--epochs")
      epochs = std::atoi(v.c_str());
    else if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--seed")
      seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--data")
      data_dir = v;
    else if (a == "--graph")
      graph = v == "1";
    else if (a == "--prefetch")
      prefetch = std::atoi(v.c_str());
    else if (a == "--precision" && (v == "fp32" || v == "bf16"))
      precision = v;
    else {
      std::fprintf(stderr, "kiln_train_bench: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  try {
    kiln::set_num_threads(threads);
    kiln::set_dtype_policy(precision == "bf16" ? "mixed_bfloat16" : "float32");
    kiln::set_global_seed(seed);
    kiln::FashionMnist d = kiln::load_fashion_mnist(data_dir);
    auto model = model_name == "cnn" ? kiln::make_cnn() : kiln::make_mlp();
    kiln::Adam opt(1e-3);
    kiln::SparseCategoricalCrossentropy loss;
    kiln::Dataset train = kiln::Dataset(d.train_images, d.train_labels).shuffle(seed).batch(64);
    if (prefetch > 0) train = train.prefetch(prefetch);
    kiln::FitOptions o;
    o.epochs = epochs;
    o.verbose = 0;
    o.validation = kiln::Dataset(d.test_images, d.test_labels).batch(500);
    o.graph = graph;
    auto lines = std::make_shared<JsonLines>(model_name, train.num_batches(), threads, graph);
    lines->seed_precision =
        ",\"seed\":" + std::to_string(seed) + ",\"precision\":\"" + precision + "\"";
    o.callbacks.push_back(lines);
    kiln::fit(*model, opt, loss, train, o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_train_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
