// `kiln inspect --profile`: graph-mode training steps or inference calls under a kiln::Profiler.
#include <memory>
#include <optional>
#include <thread>

#include "cli/inspect.h"
#include "kiln/dtype_policy.h"
#include "kiln/error.h"
#include "kiln/function.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/callbacks.h"
#include "kiln/onnx.h"
#include "kiln/profile.h"
#include "kiln/threading.h"

namespace kiln::cli {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Records the second epoch of fit: the first traces, plans and settles the train step.
class ProfileSecondEpoch : public Callback {
 public:
  explicit ProfileSecondEpoch(Profile* out) : out_(out) {}
  void on_epoch_begin(int epoch, const Logs&) override {
    if (epoch == 1) profiler_.emplace();
  }
  void on_epoch_end(int epoch, const Logs&) override {
    if (epoch == 1) *out_ = profiler_->stop();
  }

 private:
  Profile* out_;
  std::optional<Profiler> profiler_;
};

// fit(graph = true) for two epochs of `steps` batches; the second is recorded.
// `example` is one example's dims (no batch dim).
Profile profile_training(Layer& model, Optimizer& opt, const InspectOptions& o,
                         std::vector<int64_t> example) {
  const int64_t n = o.steps * o.batch_size;
  example.insert(example.begin(), n);
  Tensor x = random_uniform(Shape(example), 0, 1, 1);
  // Labels within the model's classes (its output's last dim).
  const Tensor probe = model(x.rows(0, 1), false);
  const int64_t classes = probe.rank() > 0 ? probe.dim(probe.rank() - 1) : 1;
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>(i % classes);
  Tensor y = from_vector(labels);
  SparseCategoricalCrossentropy loss;
  Profile p;
  FitOptions fo;
  fo.batch_size = o.batch_size;
  fo.epochs = 2;
  fo.shuffle_seed = std::nullopt;
  fo.verbose = 0;
  fo.graph = true;
  fo.callbacks.push_back(std::make_shared<ProfileSecondEpoch>(&p));
  fit(model, opt, loss, x, y, fo);
  return p;
}

// Two unrecorded calls (trace and plan, then a settled run), then `steps` recorded ones.
template <typename Call>
Profile profile_calls(const InspectOptions& o, Call&& call) {
  call();
  call();
  Profiler p;
  for (int s = 0; s < o.steps; ++s) call();
  return p.stop();
}

// Inputs for a model file's graph: unknown dims are the batch; floats uniform in [0, 1),
// integers zero.
std::vector<Tensor> graph_inputs(const GraphModel& g, int64_t batch) {
  std::vector<Tensor> in;
  uint64_t seed = 1;
  for (const GraphPort& p : g.inputs()) {
    std::vector<int64_t> dims = p.spec.dims;
    for (int64_t& d : dims) d = d == kUnknownDim ? batch : d;
    const Shape s(dims);
    in.push_back(is_floating(p.spec.dtype) ? cast(random_uniform(s, 0, 1, seed++), p.spec.dtype)
                                           : zeros(s, p.spec.dtype));
  }
  return in;
}

}  // namespace

int run_inspect_profile(const InspectOptions& o, std::ostream& out) {
  set_num_threads(o.threads > 0
                      ? o.threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  set_dtype_policy(o.precision == "bf16" ? "mixed_bfloat16" : "float32");  // refused: names why
  struct Float32After {
    ~Float32After() { set_dtype_policy("float32"); }
  } float32_after;
  const std::string model = o.model.empty() ? "mlp" : o.model;
  const bool builtin = model == "mlp" || model == "cnn";
  std::string what;
  Profile p;
  if (builtin) {
    std::shared_ptr<Sequential> m = model == "cnn" ? make_cnn() : make_mlp();
    if (o.train) {
      Adam opt(1e-3);
      p = profile_training(*m, opt, o, {28, 28, 1});
      what = "training steps";
    } else {
      Function forward =
          function([&](const Tensor& t) { return (*m)(t, false); }, {.name = model + "_forward"});
      const Tensor x = random_uniform(Shape{o.batch_size, 28, 28, 1}, 0, 1, 1);
      p = profile_calls(o, [&] { forward(x); });
      what = "inference calls";
    }
  } else if (o.train) {
    if (ends_with(model, ".onnx")) {
      throw ValueError(model + ": an ONNX model is a graph only; --train needs a kiln model file");
    }
    LoadedModel m = load_model(model);
    Layer& layer = m.trainable_model();  // StateError naming the file's model when graph-only
    std::unique_ptr<Optimizer> adam;
    Optimizer* opt = m.optimizer.get();
    if (!opt) {
      adam = std::make_unique<Adam>(1e-3);
      opt = adam.get();
    }
    std::vector<TensorSpec> sig = inference_signature(layer);
    if (sig.size() != 1 || sig[0].dims.empty()) {
      throw ValueError(model + ": --train profiles models of one input; this one takes " +
                       std::to_string(sig.size()));
    }
    p = profile_training(layer, *opt, o, {sig[0].dims.begin() + 1, sig[0].dims.end()});
    what = "training steps";
  } else {
    GraphModel g;
    if (ends_with(model, ".onnx")) {
      g = import_onnx(model);
    } else {
      LoadedModel m = load_model(model);
      g = m.graph.empty() ? freeze(*m.model) : m.graph;
    }
    const std::vector<Tensor> in = graph_inputs(g, o.batch_size);
    p = profile_calls(o, [&] { g(in); });
    what = "inference calls (frozen graph)";
  }
  if (!o.trace.empty()) p.write_chrome_trace(o.trace);
  if (o.json) {
    out << p.to_json() << "\n";
    return 0;
  }
  out << "kiln inspect --profile: " << model << ", batch " << o.batch_size << ", " << o.steps << " "
      << what << " recorded (" << num_threads() << " thread" << (num_threads() == 1 ? "" : "s")
      << (o.precision == "bf16" ? ", bf16 mixed precision" : "") << ")\n"
      << p.to_text(o.per_step);
  if (!o.trace.empty()) {
    out << "\nChrome trace of " << p.runs.size() << " run" << (p.runs.size() == 1 ? "" : "s")
        << " written to " << o.trace << " (open in chrome://tracing or ui.perfetto.dev)\n";
  }
  return 0;
}

}  // namespace kiln::cli
