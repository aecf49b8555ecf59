// Function: the per-signature cache of traced graphs (ConcreteFunctions), retrace
// explanations and policies, and the trace scope that makes layers created inside the
// callable reuse their variables across traces.
#include "kiln/function.h"

#include <algorithm>
#include <iostream>
#include <list>
#include <mutex>

#include "cache/registry.h"
#include "core/context.h"
#include "graph/executor.h"
#include "graph/fusion.h"
#include "graph/graph.h"
#include "graph/passes.h"
#include "graph/scoped_recorders.h"
#include "graph/signature.h"
#include "graph/tracer.h"
#include "kiln/error.h"

namespace kiln {

namespace {

struct ConcreteFunction {
  Signature signature;                         // may hold unknown dims
  std::shared_ptr<const graph::Graph> graph;   // optimized and fused; shared: a call outlives
                                               // an eviction
  std::shared_ptr<const graph::Graph> traced;  // as traced, before the passes (for to_text)
  graph::PassStats passes;
  // Executor plans, one per set of concrete shapes seen (several only with unknown dims: e.g.
  // a full batch and a last partial one), most recently used first, at most kMaxPlans.
  // Shared: a running call keeps its plan alive through an eviction.
  static constexpr size_t kMaxPlans = 4;
  std::vector<std::shared_ptr<graph::Plan>> plans;
  // Optimized, not fused: what runs op by op under a tape, and what plans for other sizes of
  // unknown dims fuse again (fusion decides on shapes: a [1, C] at trace time may be [7, C]).
  std::shared_ptr<const graph::Graph> unfused;
  bool polymorphic = false;  // the signature has unknown dims
};

// Signature::accepts for a call's tensors, without building a Signature (no allocation).
bool accepts_args(const Signature& sig, std::span<const Tensor> args, bool training) {
  if (sig.training != training || sig.dtype_policy != dtype_policy_kind() ||
      sig.args.size() != args.size()) {
    return false;
  }
  for (size_t k = 0; k < args.size(); ++k) {
    const TensorSpec& s = sig.args[k];
    const Shape& shape = args[k].shape();
    if (s.dtype != args[k].dtype() || s.dims.size() != static_cast<size_t>(shape.rank())) {
      return false;
    }
    for (size_t d = 0; d < s.dims.size(); ++d) {
      if (s.dims[d] != kUnknownDim && s.dims[d] != shape[static_cast<int>(d)]) return false;
    }
  }
  return true;
}

// Graphs traced for two sizes of an unknown dim must be the same program: same ops, attrs and
// wiring, and captured tensors of the same shapes. Otherwise some op baked the size in.
bool same_program(const graph::Graph& a, const graph::Graph& b) {
  if (a.nodes.size() != b.nodes.size() || a.values.size() != b.values.size() ||
      a.outputs != b.outputs) {
    return false;
  }
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const graph::Node &x = a.nodes[i], &y = b.nodes[i];
    if (x.op != y.op || !(x.attrs == y.attrs) || x.inputs != y.inputs) return false;
  }
  for (size_t v = 0; v < a.values.size(); ++v) {
    const graph::Value &x = a.values[v], &y = b.values[v];
    if (x.kind != y.kind) return false;
    if (x.kind == graph::ValueKind::kConstant || x.kind == graph::ValueKind::kVariable) {
      if (x.captured.shape() != y.captured.shape() || x.captured.dtype() != y.captured.dtype()) {
        return false;
      }
      if (x.kind == graph::ValueKind::kVariable && x.captured.impl() != y.captured.impl()) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

struct Function::State {
  Callable fn;
  FunctionOptions options;
  mutable std::mutex mu;
  std::list<ConcreteFunction> cache;  // most recently used first
  FunctionCacheInfo info;
  bool warned = false;
  std::vector<Signature> traced;  // the last 64 signatures traced (to explain retraces)
  uint64_t peak_arena_bytes = 0;
  std::map<std::string, uint64_t> constant_sources;  // set_constant_sources()
  cache::Registration registration;        // in kiln::cache_report(); last: unregistered first
  cache::Registration arena_registration;  // its plans' arenas, in the report's "arenas"

  // Bytes held by one concrete function: its plans' arenas and its folded constants.
  static uint64_t bytes_of(const ConcreteFunction& cf) {
    uint64_t b = cf.graph->constant_bytes();
    for (const std::shared_ptr<graph::Plan>& p : cf.plans) b += p->arena_bytes();
    return b;
  }

  // Evicts least recently used concrete functions (never the front) past options.max_bytes.
  void enforce_bytes() {
    if (options.max_bytes == 0) return;
    uint64_t total = 0;
    for (const ConcreteFunction& cf : cache) total += bytes_of(cf);
    while (total > options.max_bytes && cache.size() > 1) {
      total -= bytes_of(cache.back());
      cache.pop_back();
      ++info.evictions;
    }
  }

  ArenaInfo arena_info() {
    std::lock_guard<std::mutex> lock(mu);
    ArenaInfo a;
    a.owner = "function '" + options.name + "'";
    for (const ConcreteFunction& cf : cache) {
      for (const std::shared_ptr<graph::Plan>& p : cf.plans) {
        a.bytes += p->arena_bytes();
        ++a.buffers;
      }
    }
    peak_arena_bytes = std::max<uint64_t>(peak_arena_bytes, a.bytes);
    a.peak_bytes = peak_arena_bytes;
    return a;
  }

  // For kiln::cache_report() (and clear_caches()).
  cache::FunctionReport report() const {
    std::lock_guard<std::mutex> lock(mu);
    cache::FunctionReport r{options.name, info, options.max_entries, {}};
    r.info.signatures.clear();
    for (const ConcreteFunction& cf : cache) {
      r.info.signatures.push_back(cf.signature);
      uint64_t n = 0;
      for (const graph::Value& v : cf.graph->values) n += v.kind == graph::ValueKind::kConstant;
      r.folded.push_back(
          {cf.signature.to_string(), n, cf.graph->constant_bytes(), constant_sources});
    }
    return r;
  }

  void resolve(std::span<const Tensor> args, bool training, std::shared_ptr<const graph::Graph>& g,
               std::shared_ptr<graph::Plan>& plan);

  // Traces fn for `sig` (concrete shapes taken from `example` where sig has unknown dims).
  graph::Graph trace(const Signature& example, bool training) {
    detail::TraceScope scope;
    scope.name = options.name;
    // Tapes outside the function do not see its trace; its graph records on them when run.
    graph::ScopedRecorders recorders(nullptr, detail::thread_context().tracer, &scope);
    try {
      graph::Tracer tracer;
      std::vector<Tensor> args;
      for (const TensorSpec& s : example.args) {
        args.push_back(tracer.add_input(Shape(s.dims), s.dtype));
      }
      std::vector<Tensor> out = fn(args, training);
      tracer.set_outputs(out);
      info.variables += scope.variables_created;
      return tracer.take();
    } catch (...) {
      for (auto it = scope.undo.rbegin(); it != scope.undo.rend(); ++it) (*it)();
      throw;
    }
  }

  // An example of `sig` with every unknown dim replaced by `fill`'s dims, or by size + 1.
  // Unknown dims of size 0 or 1 are traced at 2: a size-1 dim broadcasts, so a graph traced
  // at 1 may differ from one traced at 2 although both serve every size >= 1.
  static Signature probe(const Signature& sig, const Signature& concrete, int64_t bump) {
    Signature p = concrete;
    for (size_t k = 0; k < sig.args.size(); ++k) {
      for (size_t d = 0; d < sig.args[k].dims.size(); ++d) {
        if (sig.args[k].dims[d] == kUnknownDim) {
          p.args[k].dims[d] = std::max<int64_t>(concrete.args[k].dims[d], 2) + bump;
        }
      }
    }
    return p;
  }

  static bool has_unknown(const Signature& s) {
    for (const TensorSpec& t : s.args) {
      if (std::find(t.dims.begin(), t.dims.end(), kUnknownDim) != t.dims.end()) return true;
    }
    return false;
  }

  // The signature to trace for a missed call: the input signature, or the concrete one
  // (relaxed when the policy says so), after explaining the miss.
  Signature plan_miss(const Signature& concrete) {
    if (options.input_signature) {
      Signature s;
      s.args = *options.input_signature;
      s.training = concrete.training;
      s.dtype_policy = concrete.dtype_policy;
      if (!s.accepts(concrete)) {
        throw ShapeError("function '" + options.name + "': call " + concrete.to_string() +
                         " does not fit its input signature " + s.to_string());
      }
      explain(concrete);
      return s;
    }
    const Signature* nearest = explain(concrete);
    const int retraces = static_cast<int>(info.traces);  // traces before this one
    if (!nearest || retraces <= options.retrace_budget) return concrete;
    Signature relaxed = graph::relax(*nearest, concrete);
    const std::string diff = info.last_retrace_reason;
    switch (options.policy) {
      case RetracePolicy::kThrow:
        throw StateError("function '" + options.name + "': retrace " + std::to_string(retraces) +
                         " exceeds the budget of " + std::to_string(options.retrace_budget) + ": " +
                         diff + "; an input signature " + relaxed.to_string() + " would avoid it");
      case RetracePolicy::kRelax:
        return relaxed;
      case RetracePolicy::kWarn:
        if (!warned) {
          warned = true;
          std::string w = "kiln: function '" + options.name + "' traced " +
                          std::to_string(retraces + 1) + " times (budget " +
                          std::to_string(options.retrace_budget) + "); last change: " + diff +
                          "; consider input_signature " + relaxed.to_string();
          info.warnings.push_back(w);
          std::cerr << w << "\n";
        }
        return concrete;
    }
    return concrete;
  }

  // Records why `concrete` missed; returns the nearest traced signature (null on a first call).
  const Signature* explain(const Signature& concrete) {
    const Signature* nearest = nullptr;
    int best = 0;
    for (auto it = traced.rbegin(); it != traced.rend(); ++it) {  // ties: the most recent
      int d = graph::signature_distance(*it, concrete);
      if (!nearest || d < best) nearest = &*it, best = d;
    }
    if (!nearest) return nullptr;
    std::vector<std::string> diff = graph::signature_diff(*nearest, concrete);
    if (diff.empty()) diff.push_back("evicted from the cache earlier");
    std::string reason;
    for (size_t k = 0; k < diff.size(); ++k) reason += (k ? "; " : "") + diff[k];
    info.last_retrace_reason = reason;
    return nearest;
  }

  ConcreteFunction& lookup(const Signature& concrete) {
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (it->signature.accepts(concrete)) {
        ++info.hits;
        if (it != cache.begin()) cache.splice(cache.begin(), cache, it);
        return cache.front();
      }
    }
    ++info.misses;
    Signature sig = plan_miss(concrete);
    const Signature base = probe(sig, concrete, 0);
    graph::Graph g = trace(base, concrete.training);
    ++info.traces;
    if (has_unknown(sig)) {
      // Check that the graph does not depend on the unknown sizes; if it does, keep it for
      // the concrete shapes only (and say so).
      bool polymorphic = false;
      try {
        graph::Graph other = trace(probe(sig, concrete, 1), concrete.training);
        polymorphic = same_program(g, other);
      } catch (const Error&) {
      }
      if (!polymorphic) {
        if (options.input_signature) {
          throw ShapeError("function '" + options.name +
                           "': its graph depends on the sizes its "
                           "input signature " +
                           sig.to_string() +
                           " leaves unknown (an op "
                           "bakes a size into its attributes)");
        }
        info.last_retrace_reason += (info.last_retrace_reason.empty() ? "" : "; ") +
                                    std::string("graph depends on the relaxed dims: traced for ") +
                                    concrete.to_string();
        sig = concrete;
        if (!(base == concrete)) g = trace(concrete, concrete.training);
      }
    }
    traced.push_back(sig);
    if (traced.size() > 64) traced.erase(traced.begin());  // enough to explain retraces
    auto traced_graph = std::make_shared<const graph::Graph>(g);
    graph::PassStats stats = graph::optimize(g);
    g.plan_lifetimes();
    auto unfused = std::make_shared<const graph::Graph>(g);
    stats.fused_nodes = graph::fuse(g);
    g.plan_lifetimes();
    cache.push_front({sig,
                      std::make_shared<const graph::Graph>(std::move(g)),
                      traced_graph,
                      stats,
                      {},
                      unfused,
                      has_unknown(sig)});
    while (cache.size() > options.max_entries) {
      cache.pop_back();
      ++info.evictions;
    }
    return cache.front();
  }
};

Function::Function(Callable f, FunctionOptions options) : state_(std::make_unique<State>()) {
  if (!f) throw ValueError("kiln::function: the callable is empty");
  if (options.max_entries == 0) throw ValueError("kiln::function: max_entries must be >= 1");
  if (options.retrace_budget < 0) throw ValueError("kiln::function: retrace_budget must be >= 0");
  if (options.name.empty() || options.name.find('/') != std::string::npos) {
    throw ValueError("kiln::function: name '" + options.name +
                     "' must be non-empty and contain no '/'");
  }
  state_->fn = std::move(f);
  state_->options = std::move(options);
  if (const uint64_t cap = cache::function_entries_cap()) {  // KILN_FUNCTION_CACHE_ENTRIES
    state_->options.max_entries = std::min<size_t>(state_->options.max_entries, cap);
  }
  State* s = state_.get();
  s->registration = cache::register_function([s] { return s->report(); },
                                             [s] {
                                               std::lock_guard<std::mutex> lock(s->mu);
                                               s->cache.clear();
                                             });
  s->arena_registration = cache::register_arena([s] { return s->arena_info(); },
                                                [s] {
                                                  std::lock_guard<std::mutex> lock(s->mu);
                                                  for (ConcreteFunction& cf : s->cache) {
                                                    cf.plans.clear();
                                                  }
                                                });
}
Function::~Function() = default;
Function::Function(Function&&) noexcept = default;
Function& Function::operator=(Function&&) noexcept = default;

namespace {
void check_defined(const std::string& name, std::span<const Tensor> args) {
  for (size_t k = 0; k < args.size(); ++k) {
    if (!args[k].defined()) {
      throw ValueError("function '" + name + "': argument " + std::to_string(k) +
                       " is an undefined tensor");
    }
  }
}
}  // namespace

// The cached graph for a call (tracing on a miss; unfused, for the dispatcher) and, when the
// call may run the executor (no tape recording, no forced reference kernels), its plan for
// these shapes.
void Function::State::resolve(std::span<const Tensor> args, bool training,
                              std::shared_ptr<const graph::Graph>& g,
                              std::shared_ptr<graph::Plan>& plan) {
  std::lock_guard<std::mutex> lock(mu);
  ConcreteFunction* cf = nullptr;
  for (auto it = cache.begin(); it != cache.end(); ++it) {  // a hit allocates nothing
    if (accepts_args(it->signature, args, training)) {
      ++info.hits;
      if (it != cache.begin()) cache.splice(cache.begin(), cache, it);
      cf = &cache.front();
      break;
    }
  }
  if (!cf) {
    std::vector<Tensor> a(args.begin(), args.end());
    cf = &lookup(graph::signature_of(a, training));  // counts the miss, traces
  }
  g = cf->unfused;
  const detail::ThreadContext& ctx = detail::thread_context();
  if (ctx.tape || ctx.force_reference) return;  // the dispatcher path: differentiable
  std::vector<std::shared_ptr<graph::Plan>>& plans = cf->plans;
  auto it = std::find_if(plans.begin(), plans.end(),
                         [&](const std::shared_ptr<graph::Plan>& p) { return p->matches(args); });
  if (it == plans.end()) {
    if (plans.size() == ConcreteFunction::kMaxPlans) plans.pop_back();
    // Fused for these shapes when dims are unknown; the traced shapes' fusion otherwise.
    plans.insert(plans.begin(), cf->polymorphic ? [&] {
      graph::Graph shaped = graph::with_shapes(*cf->unfused, args);
      graph::fuse(shaped);
      return graph::Plan::build(shaped, args);
    }()
                                                : graph::Plan::build(*cf->graph, args));
    plan = plans.front();
    plan->set_label(options.name + " " + cf->signature.to_string());
    enforce_bytes();  // may evict other concrete functions, never this one (the front)
    return;
  } else if (it != plans.begin()) {
    std::rotate(plans.begin(), it, it + 1);  // no allocation: a hit stays allocation-free
  }
  plan = plans.front();
}

void Function::run(std::span<const Tensor> args, bool training, std::vector<Tensor>* result,
                   std::span<Tensor> outs) {
  std::shared_ptr<const graph::Graph> g;
  std::shared_ptr<graph::Plan> plan;
  state_->resolve(args, training, g, plan);
  // Run outside the function's lock: a cached graph is immutable, and our references keep it
  // and its plan alive through an eviction by another thread.
  if (plan) {
    std::unique_lock<std::mutex> busy(plan->mu(), std::try_to_lock);
    if (busy.owns_lock()) {  // else another thread runs this plan: take the dispatcher path
      if (result) {
        result->resize(g->outputs.size());
        outs = *result;
      } else if (outs.size() != g->outputs.size()) {
        throw ValueError("function '" + state_->options.name + "': returns " +
                         std::to_string(g->outputs.size()) + " tensors, got " +
                         std::to_string(outs.size()) + " to write them to");
      }
      plan->run(args, outs);
      return;
    }
  }
  std::vector<Tensor> r = graph::execute(*g, std::vector<Tensor>(args.begin(), args.end()));
  if (result) {
    *result = std::move(r);
    return;
  }
  if (outs.size() != r.size()) {
    throw ValueError("function '" + state_->options.name + "': returns " +
                     std::to_string(r.size()) + " tensors, got " + std::to_string(outs.size()) +
                     " to write them to");
  }
  for (size_t k = 0; k < r.size(); ++k) outs[k] = std::move(r[k]);
}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args, bool training) {
  check_defined(state_->options.name, args);
  // Called while another function traces: inline the callable into that trace.
  if (detail::thread_context().tracer) return state_->fn(args, training);
  std::vector<Tensor> result;
  run(args, training, &result, {});
  return result;
}

void Function::call(std::span<const Tensor> args, std::span<Tensor> outs, bool training) {
  check_defined(state_->options.name, args);
  if (detail::thread_context().tracer) {
    std::vector<Tensor> r = state_->fn(std::vector<Tensor>(args.begin(), args.end()), training);
    if (r.size() != outs.size()) {
      throw ValueError("function '" + state_->options.name + "': returns " +
                       std::to_string(r.size()) + " tensors, got " + std::to_string(outs.size()) +
                       " to write them to");
    }
    for (size_t k = 0; k < r.size(); ++k) outs[k] = std::move(r[k]);
    return;
  }
  run(args, training, nullptr, outs);
}

FunctionCacheInfo Function::cache_info() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  FunctionCacheInfo info = state_->info;
  info.signatures.clear();
  for (const ConcreteFunction& cf : state_->cache) {
    info.signatures.push_back(cf.signature);
    for (const std::shared_ptr<graph::Plan>& p : cf.plans) {
      info.arena_bytes += p->arena_bytes();
      info.plan_steps += p->num_steps();
    }
    info.fused_nodes += cf.passes.fused_nodes;
  }
  return info;
}

std::string Function::graph_text(const std::vector<Tensor>& args, bool training, bool optimized) {
  std::lock_guard<std::mutex> lock(state_->mu);
  const ConcreteFunction& cf = state_->lookup(graph::signature_of(args, training));
  return (optimized ? cf.graph : cf.traced)->to_text();
}

std::string Function::graph_dot(const std::vector<Tensor>& args, bool training, bool optimized) {
  std::lock_guard<std::mutex> lock(state_->mu);
  const ConcreteFunction& cf = state_->lookup(graph::signature_of(args, training));
  return (optimized ? cf.graph : cf.traced)->to_dot(state_->options.name);
}

void Function::clear_cache() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->cache.clear();
}

void Function::set_constant_sources(std::map<std::string, uint64_t> sources) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->constant_sources = std::move(sources);
}

Function function(std::function<Tensor(const Tensor&)> f, FunctionOptions options) {
  if (!f) throw ValueError("kiln::function: the callable is empty");
  return Function(
      [f = std::move(f)](const std::vector<Tensor>& a, bool) -> std::vector<Tensor> {
        if (a.size() != 1) {
          throw ValueError("function: takes 1 tensor, got " + std::to_string(a.size()));
        }
        return {f(a[0])};
      },
      std::move(options));
}

Function function(std::function<Tensor(const Tensor&, const Tensor&)> f, FunctionOptions options) {
  if (!f) throw ValueError("kiln::function: the callable is empty");
  return Function(
      [f = std::move(f)](const std::vector<Tensor>& a, bool) -> std::vector<Tensor> {
        if (a.size() != 2) {
          throw ValueError("function: takes 2 tensors, got " + std::to_string(a.size()));
        }
        return {f(a[0], a[1])};
      },
      std::move(options));
}

Function function(Function::Callable f, FunctionOptions options) {
  return Function(std::move(f), std::move(options));
}

}  // namespace kiln
