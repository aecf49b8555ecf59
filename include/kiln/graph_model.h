// GraphModel: an inference graph that runs without the code that made it. It comes from
// kiln::freeze(model) (variables folded to constants, BatchNormalization folded, dropout gone),
// from a model file's frozen graph (kiln/model_file.h) or from an imported ONNX model
// (kiln/onnx.h). It runs on kiln's graph executor: the graph is traced once per input
// signature (unknown dims stay unknown, so one trace serves every batch size), fused, memory
// planned, and later calls run the plan without allocating.
//
//   kiln::GraphModel g = kiln::freeze(*model, {{kiln::kUnknownDim, 28, 28, 1}});
//   kiln::Tensor logits = g(images);            // any batch size
//   std::cout << g.graph_text();                // the fused graph that runs
//
// Thread safety: const methods may be called from several threads (calls serialize on the
// plan, as kiln::Function does). Copies share the graph and its cache of plans.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/function.h"
#include "kiln/tensor.h"

namespace kiln {

namespace graph {
struct Graph;
}

// A named input or output of a GraphModel: its dtype and dims (kUnknownDim where any size is
// accepted, e.g. the batch dim).
struct GraphPort {
  std::string name;
  TensorSpec spec;
};

// Counted over a GraphModel's graph (ops as stored, before fusion).
struct GraphSummary {
  int64_t nodes = 0;
  int64_t parameters = 0;        // elements of captured float and (u)int8 constants
  int64_t parameter_bytes = 0;   // bytes of every captured constant
  int64_t flops_per_sample = 0;  // matmul/conv multiply-adds x 2 at batch 1
  std::vector<std::pair<std::string, int64_t>> op_counts;  // op name -> nodes, by name
  std::string to_text() const;
};

// A variable a frozen graph's constant was copied from, and its version then.
struct FoldedVariableInfo {
  std::string name;
  uint64_t version = 0;
};

class GraphModel {
 public:
  // An empty model; calling it is a StateError.
  GraphModel();
  // Takes `g` (inputs and outputs in `inputs` / `outputs` order; every value of kind
  // kVariable must already be folded to a constant: ValueError otherwise). Validates the graph
  // (every node's op, attrs and inferred shapes: FormatError naming the node otherwise) and the
  // ports (counts match g.inputs / g.outputs; input dtypes and known dims match the graph's).
  GraphModel(graph::Graph g, std::vector<GraphPort> inputs, std::vector<GraphPort> outputs,
             std::string name = "graph");
  ~GraphModel();
  GraphModel(const GraphModel&);
  GraphModel& operator=(const GraphModel&);
  GraphModel(GraphModel&&) noexcept;
  GraphModel& operator=(GraphModel&&) noexcept;

  bool empty() const { return impl_ == nullptr; }
  const std::string& name() const;
  const std::vector<GraphPort>& inputs() const;
  const std::vector<GraphPort>& outputs() const;

  // Runs the graph. Each input must match its port (dtype, rank, known dims): ShapeError /
  // DTypeError naming the port and both shapes otherwise. Returns one tensor per output.
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs) const;
  // Single-input, single-output shorthand (ValueError for other models).
  Tensor operator()(const Tensor& x) const;
  // The allocation-free form (kiln::Function::call): outs reused when they fit.
  void call(std::span<const Tensor> inputs, std::span<Tensor> outs) const;

  // The stored graph (as saved: before fusion), or the fused graph that runs for inputs shaped
  // like the ports with unknown dims set to 1 (fused = true).
  std::string graph_text(bool fused = false) const;
  GraphSummary summary() const;
  // The stored graph, shared (serialization, ONNX export, passes read it; nobody mutates it).
  const graph::Graph& graph() const;
  // The cache of traced plans (kiln::Function's), for reports and tests.
  FunctionCacheInfo cache_info() const;

  // The variables the constants were copied from (freeze records them; kiln::cache_report()
  // lists them under folded constants). Empty for imported graphs.
  const std::vector<FoldedVariableInfo>& folded_variables() const;
  void set_folded_variables(std::vector<FoldedVariableInfo> folded);

  struct Impl;  // opaque

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln
