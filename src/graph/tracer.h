// Tracer: builds a Graph from the ops the dispatcher hands it while a function is traced.
// Installed on construction (for the current thread), removed on destruction.
#pragma once

#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "graph/graph.h"

namespace kiln::graph {

class Tracer : public detail::TraceRecorder {
 public:
  Tracer();
  ~Tracer() override;
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // A symbolic tensor standing for the next function argument.
  Tensor add_input(const Shape& shape, DType dtype);
  // Marks the function's results; a real (untraced) tensor becomes a captured constant.
  void set_outputs(const std::vector<Tensor>& outputs);
  Graph take() { return std::move(graph_); }

  void trace(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
             std::span<const Tensor> outputs) override;

 private:
  // The value id of t, capturing a real tensor as a constant or variable on first sight.
  int32_t value_of(const Tensor& t);
  int32_t add_value(const Tensor& t, ValueKind kind);

  Graph graph_;
  std::unordered_map<const detail::TensorImpl*, int32_t> ids_;
  std::vector<Tensor> keep_;  // every tensor in ids_, alive so its address stays unique
  detail::TraceRecorder* saved_;
};

}  // namespace kiln::graph
