// Graph functions: kiln's tf.function. A Function traces its callable once per input signature
// into a graph, caches the graph (a ConcreteFunction) and runs it on later calls without running
// the C++ callable again:
//
//   kiln::Function f = kiln::function([](const kiln::Tensor& x) { return kiln::relu(x * 2.0); });
//   kiln::Tensor y = f(x);         // traces: signature (float32 [64, 784], training false)
//   y = f(x2);                     // same signature: a cache hit, the callable does not run
//   std::cout << f.cache_info().last_retrace_reason;   // why the last trace happened
//
// Every cache is explicit: cache_info() lists the cached signatures, traces, hits, misses and
// evictions, and each retrace is explained as a diff against the nearest cached signature
// ('arg 0: shape [64, 784] -> [32, 784]'). The cache is an LRU bounded by entries and bytes.
//
// A traced graph is optimized (constant folding, common subexpressions, dead code, fusion of
// matmul/conv + bias + activation and of elementwise chains) and planned: intermediates live in
// one arena placed by liveness, kernels are resolved once. Results never live in the arena,
// so a tensor a call returned stays valid after later calls.
//
// Variables and layers created while tracing: the first trace creates them; every later trace
// of the same Function (another signature) gets the same variables back, in creation order,
// named "<function name>/<layer>/<weight>". TensorFlow refuses this; eager code instead makes
// new layers (and new variables) on every call.
//
// Thread safety: a Function may be called from several threads; tracing holds its lock, so
// concurrent first calls trace once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kiln/dtype_policy.h"
#include "kiln/tensor.h"

namespace kiln {

// One tensor argument of a signature: dtype and shape, where a dim of -1 matches any size.
struct TensorSpec {
  std::vector<int64_t> dims;  // may hold kUnknownDim
  DType dtype = float32;
  bool operator==(const TensorSpec& o) const { return dims == o.dims && dtype == o.dtype; }
};
inline constexpr int64_t kUnknownDim = -1;

// What a call is keyed on: its tensor arguments and the training flag.
struct Signature {
  std::vector<TensorSpec> args;
  bool training = false;
  // The global dtype policy when called: a function traced under one policy retraces under
  // another (include/kiln/dtype_policy.h).
  DTypePolicy dtype_policy = DTypePolicy::kFloat32;
  bool operator==(const Signature& o) const {
    return args == o.args && training == o.training && dtype_policy == o.dtype_policy;
  }
  // "(float32 [64, 784], training=false)"; ", dtype_policy=mixed_bfloat16" added when not float32
  std::string to_string() const;
  // Whether a call with `concrete` (no unknown dims) may run a graph traced for this signature.
  bool accepts(const Signature& concrete) const;
};

// What to do once a Function has traced more than `retrace_budget` times.
enum class RetracePolicy {
  kWarn,   // log once, with the diff and a suggested relaxed signature; keep tracing
  kRelax,  // mark the dims that changed unknown and trace once more for that relaxed signature
  kThrow,  // throw StateError with the diff
};

struct FunctionOptions {
  std::string name = "function";  // names the function's variables and its log lines
  // Fixes the signature up front (dims may be -1); calls that do not fit are a ShapeError.
  std::optional<std::vector<TensorSpec>> input_signature;
  int retrace_budget = 8;  // traces allowed after the first before `policy` applies
  RetracePolicy policy = RetracePolicy::kWarn;
  size_t max_entries = 32;  // cached concrete functions (least recently used are evicted)
  // Bytes the cache may hold in plans' arenas and folded constants (0: no limit). Past it the
  // least recently used concrete functions are evicted, never the one just used.
  size_t max_bytes = 0;
};

struct FunctionCacheInfo {
  uint64_t traces = 0, hits = 0, misses = 0, evictions = 0;
  std::vector<Signature> signatures;  // cached, most recently used first
  std::string last_retrace_reason;    // "" until a second trace
  std::vector<std::string> warnings;  // what the kWarn policy logged
  size_t variables = 0;               // variables created by traces of this function
  // Summed over the cached concrete functions and their plans (one per set of concrete shapes,
  // up to 4 each): executor arena bytes (the intermediates of one call, placed by liveness),
  // kernel calls per run, and nodes removed by fusion.
  size_t arena_bytes = 0;
  size_t plan_steps = 0;
  size_t fused_nodes = 0;
};

class Function {
 public:
  // f receives the arguments (symbolic tensors while tracing) and the training flag.
  using Callable = std::function<std::vector<Tensor>(const std::vector<Tensor>&, bool)>;

  explicit Function(Callable f, FunctionOptions options = {});
  ~Function();
  Function(Function&&) noexcept;
  Function& operator=(Function&&) noexcept;

  // Runs the concrete function for these arguments, tracing first on a miss. Errors in the
  // callable while tracing propagate and leave the cache as it was (variables created by the
  // failed trace are dropped too).
  std::vector<Tensor> operator()(const std::vector<Tensor>& args, bool training = false);
  Tensor operator()(const Tensor& x, bool training = false) {
    return (*this)(std::vector<Tensor>{x}, training)[0];
  }
  // The allocation-free form: results go to `outs` (one per result, else ValueError). An out
  // that is defined with the result's shape and dtype, and shares no storage with an argument
  // or a captured tensor, is written in place; any other is replaced by a new tensor. So a
  // loop reusing its outs allocates no heap memory after the first call (a cache hit runs the
  // plan: no signature is built, no callable runs, no kernel is looked up by name). With a
  // GradientTape recording, calls run op by op through the dispatcher instead (differentiable)
  // and outs are replaced.
  void call(std::span<const Tensor> args, std::span<Tensor> outs, bool training = false);

  FunctionCacheInfo cache_info() const;
  // The graph for `args` (tracing it if needed) after the passes (constant folding, common
  // subexpressions, dead code, fusion for the traced shapes), or as traced (optimized =
  // false); as text or Graphviz dot.
  std::string graph_text(const std::vector<Tensor>& args, bool training = false,
                         bool optimized = true);
  std::string graph_dot(const std::vector<Tensor>& args, bool training = false,
                        bool optimized = true);
  // Drops every cached concrete function (variables stay).
  void clear_cache();
  // Records which variables (name -> version) the callable's captured constants were copied
  // from (kiln::freeze does); kiln::cache_report() lists them with the folded constants.
  void set_constant_sources(std::map<std::string, uint64_t> sources);

  struct State;

 private:
  // operator() and call(): results into *result (resized) when non-null, else into outs.
  void run(std::span<const Tensor> args, bool training, std::vector<Tensor>* result,
           std::span<Tensor> outs);
  std::unique_ptr<State> state_;
};

// kiln::function(f) for f(const Tensor&) -> Tensor, f(const Tensor&, const Tensor&) -> Tensor,
// or f(const std::vector<Tensor>&, bool training) -> std::vector<Tensor>.
Function function(std::function<Tensor(const Tensor&)> f, FunctionOptions options = {});
Function function(std::function<Tensor(const Tensor&, const Tensor&)> f,
                  FunctionOptions options = {});
Function function(Function::Callable f, FunctionOptions options = {});

}  // namespace kiln
