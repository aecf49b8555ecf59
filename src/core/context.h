// Per-thread execution state the dispatcher checks on every op: is a tape recording, is a
// trace being built. One thread-local load each, so eager code without them pays nothing more.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {
struct OpDef;
class Attrs;
}  // namespace kiln

namespace kiln::detail {

// Implemented by autograd/tape.cc. Receives every op run while the tape is recording.
class TapeRecorder {
 public:
  virtual ~TapeRecorder() = default;
  // Records op(inputs) -> outputs if any input is tracked; may mark outputs as tracked.
  virtual void record(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                      std::span<const Tensor> outputs) = 0;
  TapeRecorder* parent = nullptr;  // the enclosing tape, recorded on too
};

// Implemented by the graph tracer (kiln::function): while set, the dispatcher runs infer only,
// makes symbolic outputs (shape and dtype, no storage) and hands the node to trace(). Gradient
// rules are ops too, so a traced training step traces its backward pass the same way.
class TraceRecorder {
 public:
  virtual ~TraceRecorder() = default;
  virtual void trace(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                     std::span<const Tensor> outputs) = 0;
};

// Set by kiln::function while it traces (src/graph/function.cc); read by nn (layer names,
// VariableStore) so that layers built inside a traced function get the same names, and hence
// the same variables, on every trace of that function.
struct TraceScope {
  std::string name;                                  // prefix of the function's variables
  std::unordered_map<std::string, int> layer_names;  // this trace's layer name counters
  std::vector<std::function<void()>> undo;           // drops what a failed trace created
  size_t variables_created = 0;
};

struct ThreadContext {
  TapeRecorder* tape = nullptr;  // innermost recording tape
  TraceRecorder* tracer = nullptr;
  TraceScope* trace_scope = nullptr;
  bool force_reference = false;  // tests: run reference kernels only
  // Tests: the first op run since the counter was reset, and which kernel ran it.
  uint64_t ops_run = 0;
  const OpDef* first_op = nullptr;
  uint8_t first_path = 0;  // KernelPath (ops/op_def.h)
};

ThreadContext& thread_context();

}  // namespace kiln::detail
