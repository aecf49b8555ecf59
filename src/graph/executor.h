// Executor: a graph resolved for one set of input shapes into a flat list of kernel calls.
//
// Built once (Plan::build): shapes are inferred for the call's inputs, every intermediate gets
// its place in one arena (plan_memory), every value a TensorImpl (arena views, views of views,
// captured constants and variables), and every node a step with its KernelArgs bound. The
// first run tries each step's fast kernel and remembers whether it ran, so later runs call
// one function per step with no inference, no allocation and no dispatch.
//
// Outputs are never in the arena: run() writes them into the caller's tensors when those have
// the right shape and dtype (and share no storage with an argument or a capture), else into
// freshly allocated ones. So an output stays valid however many times the plan runs again.
// Outputs that are views, arguments or captures are copied into theirs.
//
// Not thread safe: one run at a time (Function serializes with mu(), falling back to the
// dispatcher when a plan is busy). A plan holds references to the graph's captured tensors.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "graph/memory_plan.h"
#include "graph/profiler.h"

namespace kiln::graph {

// A copy of `g` whose value metas are inferred for arguments shaped like `args` (a graph
// traced under unknown dims holds the traced sizes). Shape-dependent passes (fusion) then
// decide for these shapes. Throws what the ops' infer throws.
Graph with_shapes(const Graph& g, std::span<const Tensor> args);

class Plan {
 public:
  // Plans `g` for arguments shaped like `args`. Throws what the ops' infer throws.
  static std::unique_ptr<Plan> build(const Graph& g, std::span<const Tensor> args);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Whether args have the shapes and dtypes this plan was built for.
  bool matches(std::span<const Tensor> args) const;
  // Runs the steps in order. args as in matches(); outs has one tensor per graph output,
  // written in place when defined and fitting, else replaced by a new tensor. Allocates
  // nothing when every out fits. Kernel errors propagate (outs are then unspecified).
  void run(std::span<const Tensor> args, std::span<Tensor> outs);

  // Names the plan in profiles ("train_step (float32 [64, 784], training=true)").
  void set_label(std::string label) { label_ = std::move(label); }

  size_t arena_bytes() const { return memory_.arena_bytes; }
  size_t num_steps() const { return steps_.size(); }
  std::mutex& mu() { return mu_; }

 private:
  Plan() = default;

  struct Step {
    const OpDef* op;
    Attrs attrs;
    std::vector<Tensor> in, out;
    uint8_t path = 0;  // 0: not run yet, 1: fast, 2: reference
  };
  // A view whose root's storage changes per call (an argument, an output, a variable).
  struct Rebind {
    int32_t value, root;
    int64_t delta;  // bytes from the root's offset
  };
  struct OutputCopy {
    int32_t value;
    int index;
  };

  void bind_call(std::span<const Tensor> args, std::span<Tensor> outs);
  void unbind_call();
  static void run_step(Step& s);
  // Outputs that are views, arguments or captures, copied into outs after the steps.
  void copy_outputs(std::span<const Tensor> args, std::span<Tensor> outs);
  // run() with each step timed for the active profiler (graph/profiler.h).
  void run_profiled(std::span<const Tensor> args, std::span<Tensor> outs);

  MemoryPlan memory_;
  Tensor arena_;
  std::vector<Tensor> vals_;         // one per value
  std::vector<Meta> metas_;          // one per value, for this plan's shapes
  std::vector<int32_t> inputs_;      // graph input value ids
  std::vector<int32_t> direct_out_;  // per output: value written in place, or -1 (copied)
  std::vector<OutputCopy> copies_;   // outputs copied out after the steps
  std::vector<Rebind> rebinds_;      // in dependency order
  std::vector<Tensor> captured_;     // constants and variables: outs must not share them
  std::vector<Step> steps_;
  std::mutex mu_;
  std::string label_;
  std::shared_ptr<const PlanInfo> profile_info_;  // made on the first profiled run
};

}  // namespace kiln::graph
