#include "cli/inspect.h"

#include <algorithm>
#include <filesystem>
#include <thread>

#include "kiln/cache_report.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/function.h"
#include "kiln/nn/callbacks.h"
#include "kiln/nn/models.h"
#include "kiln/nn/training.h"
#include "kiln/threading.h"

namespace kiln::cli {
namespace {

// Images and labels for `n` examples: a slice of Fashion-MNIST from `dir`, or synthetic data
// of the same shape and dtypes (the report is about caches, not accuracy).
void inputs(const InspectOptions& o, int64_t n, Tensor& x, Tensor& y) {
  if (!o.data.empty()) {
    FashionMnist d = load_fashion_mnist(o.data);
    if (d.train_images.dim(0) < n) {
      throw ValueError("--data " + o.data + ": " + std::to_string(d.train_images.dim(0)) +
                       " training images, fewer than the " + std::to_string(n) +
                       " that --steps and --batch-size ask for");
    }
    x = d.train_images.rows(0, n);
    y = d.train_labels.rows(0, n);
    return;
  }
  x = random_uniform(Shape{n, 28, 28, 1}, 0, 1, 1);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>(i % 10);
  y = from_vector(labels);
}

// Takes the report at the end of graph-mode training, while fit's traced train step (a
// Function that lives only inside fit) is still there to be reported.
class ReportAtEpochEnd : public Callback {
 public:
  explicit ReportAtEpochEnd(CacheReport* out) : out_(out) {}
  void on_epoch_end(int, const Logs&) override { *out_ = cache_report(); }

 private:
  CacheReport* out_;
};

}  // namespace

CLI::App* add_inspect_command(CLI::App& app, InspectOptions& o) {
  CLI::App* c = app.add_subcommand(
      "inspect",
      "train and run a model for a few steps, then report caches (--cache) or profile the graph "
      "steps (--profile)");
  c->add_option("--model", o.model, "mlp or cnn; with --profile also a model file (.kiln, .onnx)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "mlp" || v == "cnn" || std::filesystem::is_regular_file(v)) return "";
            return v + ": not mlp, cnn or an existing model file";
          },
          "mlp|cnn|FILE"));
  c->add_flag("--cache", o.cache, "report every cache: variables, functions, kernels, ...");
  CLI::Option* profile = c->add_flag(
      "--profile", o.profile, "profile graph steps by op: time, share, GFLOP/s, GB/s, floor");
  c->add_flag("--json", o.json, "print the report as JSON");
  c->add_option("--steps", o.steps,
                "training steps and inference batches (default 3); --profile: recorded steps")
      ->check(CLI::Range(1, 1000));
  c->add_option("--batch-size,--batch", o.batch_size, "examples per step (default 32)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  c->add_option("--threads", o.threads, "threads for kernels (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_option("--data", o.data, "Fashion-MNIST directory (default: synthetic data)")
      ->check(CLI::ExistingDirectory);
  c->add_flag("--train", o.train, "--profile: training steps (default: inference)")->needs(profile);
  c->add_flag("--per-step", o.per_step, "--profile: also list every step of the plan")
      ->needs(profile);
  c->add_option("--trace", o.trace, "--profile: write the recorded steps as a Chrome trace")
      ->needs(profile);
  c->add_option("--precision", o.precision,
                "--profile: fp32 (default) or bf16 (Keras' mixed_bfloat16 dtype policy)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->needs(profile);
  c->final_callback([&o] {
    if (o.cache == o.profile) throw CLI::ValidationError("give one of --cache and --profile");
    if (o.cache && o.model.empty()) throw CLI::RequiredError("--model");
    if (o.cache && o.model != "mlp" && o.model != "cnn") {
      throw CLI::ValidationError("--model", o.model + ": --cache takes mlp or cnn");
    }
    if (o.profile && !o.data.empty()) {
      throw CLI::ValidationError("--data", "--profile runs on synthetic data");
    }
  });
  return c;
}

int run_inspect(const InspectOptions& o, std::ostream& out) {
  if (o.profile) return run_inspect_profile(o, out);
  set_num_threads(o.threads > 0
                      ? o.threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  auto model = o.model == "cnn" ? make_cnn() : make_mlp();
  const int64_t n = o.steps * o.batch_size;
  Tensor x, y;
  inputs(o, n, x, y);

  // Eager: training steps, then inference.
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss;
  FitOptions fo;
  fo.batch_size = o.batch_size;
  fo.shuffle_seed = std::nullopt;
  fo.verbose = 0;
  fit(*model, opt, loss, x, y, fo);
  predict(*model, x, o.batch_size);
  model->summary();  // cached per model: the report lists it

  // Graph: the model's forward pass as a kiln::function, over the same batches and one of
  // half the size (a second signature, so the report shows a retrace and its reason); then
  // graph-mode training, whose traced step the report is taken beside.
  Function forward =
      function([&](const Tensor& t) { return (*model)(t, false); }, {.name = o.model + "_forward"});
  for (int s = 0; s < o.steps; ++s) forward(x.rows(s * o.batch_size, (s + 1) * o.batch_size));
  if (o.batch_size > 1) forward(x.rows(0, o.batch_size / 2));
  CacheReport r;
  fo.graph = true;
  fo.callbacks.push_back(std::make_shared<ReportAtEpochEnd>(&r));
  fit(*model, opt, loss, x, y, fo);

  if (o.json) {
    out << r.to_json() << "\n";
  } else {
    out << "kiln inspect: " << o.model << ", batches of " << o.batch_size << " ("
        << (o.data.empty() ? "synthetic data" : o.data) << "): eager " << o.steps
        << " training steps and " << o.steps << " inference batches; graph "
        << o.steps + (o.batch_size > 1) << " inference calls and " << o.steps
        << " training steps (fit with graph = true)\n\n"
        << r.to_text();
  }
  return 0;
}

}  // namespace kiln::cli
