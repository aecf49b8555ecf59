// Passes that turn a traced inference graph into a frozen one (kiln::freeze runs them). Unlike
// the passes in passes.h, these change what a graph computes when variables change later: a
// frozen graph holds copies of the variables' values at freezing time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace kiln::graph {

// A captured variable turned into a constant: which one, and at which version.
struct FoldedVariable {
  int32_t value = -1;    // value id in the graph (before compaction)
  std::string name;      // the variable's name when known (see variables_to_constants)
  uint64_t version = 0;  // its version when copied
};

// Replaces every kVariable value by a kConstant holding a copy of its current value (later
// assignments do not reach the frozen graph). Throws ValueError naming the op when a stateful
// node (an assignment, an optimizer update) would write one: only inference graphs freeze.
// `name_of` maps a variable's tensor to its name (may return "").
std::vector<FoldedVariable> variables_to_constants(
    Graph& g, std::string (*name_of)(const Tensor& value, void* ctx), void* ctx);

// Folds per-channel affine chains into the matmul / conv2d that feeds them: when a matmul
// (transpose_b false) or conv2d output is read only by a chain of add/sub/mul/div with
// constants that broadcast along the last axis ([C], [1, ..., C] or scalars), as inference
// BatchNormalization and bias adds are, the chain's scale multiplies the filter's output
// channels and the chain becomes one add of a constant bias. The filter must be a constant
// read by no other node. Returns the number of chains folded; run eliminate_dead_code and
// compact after it.
int fold_affine_into_producers(Graph& g);

}  // namespace kiln::graph
