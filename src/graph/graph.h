// Graph: the IR a traced function becomes. Values are numbered; each is a function input, a
// captured tensor (a constant, or a variable captured by reference so assignments are seen by
// the next call), or an output of a node. Nodes are in execution order (trace order).
//
// Every node names an OpDef: the graph runs through the same dispatcher as eager code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/tensor.h"
#include "ops/op_def.h"

namespace kiln::graph {

enum class ValueKind : uint8_t { kInput, kConstant, kVariable, kNode };

// Executors bind a node's tensors in fixed arrays: a node has at most this many inputs and
// outputs (validate() refuses more; importers split wider nodes).
inline constexpr size_t kMaxNodeInputs = 16;
inline constexpr size_t kMaxNodeOutputs = 2;

struct Value {
  ValueKind kind = ValueKind::kNode;
  Meta meta;                 // shape and dtype seen while tracing
  int32_t producer = -1;     // node index (kNode)
  int32_t input_index = -1;  // position among the function's inputs (kInput)
  Tensor captured;           // kConstant, kVariable: the tensor (a variable's live value handle)
};

struct Node {
  const OpDef* op = nullptr;
  Attrs attrs;
  std::vector<int32_t> inputs;   // value ids
  std::vector<int32_t> outputs;  // value ids
  std::vector<int32_t> release;  // values last used here: freed right after (plan_lifetimes)
};

struct Graph {
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<int32_t> inputs;   // value ids of the function's arguments, in order
  std::vector<int32_t> outputs;  // value ids the function returns, in order

  // One line per node: "%4 = matmul(%0, %2) : [64, 10] float32", inputs and captures first.
  std::string to_text() const;
  // Graphviz: values as edges, nodes as boxes, captures as ellipses.
  std::string to_dot(const std::string& name) const;
  // Bytes of captured constants (variables are owned elsewhere).
  size_t constant_bytes() const;
  // Fills every node's `release` list by liveness, so execute() frees each intermediate
  // after its last reader instead of holding all of them to the end.
  void plan_lifetimes();
};

// Checks everything a graph from outside (a model file, an importer) could get wrong, before
// anything runs it: value ids in range, each value defined once and before use, a node's op
// known with its input/output counts and attrs (check_attrs), captured tensors present and
// matching their metas, every node's inferred output metas equal to the stored ones (unknown
// dims are stored at their traced size), inputs/outputs in range. Throws FormatError
// "<where>: node 3 (conv2d): ..." naming the node and what was wrong.
void validate(const Graph& g, const std::string& where);

// Runs `g` on `args` (matching g.inputs) through the dispatcher: fast kernels, views, and the
// active tape if any (so a graph call is differentiable like eager code). Returns g.outputs.
std::vector<Tensor> execute(const Graph& g, const std::vector<Tensor>& args);

}  // namespace kiln::graph
