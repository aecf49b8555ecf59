#include "graph/tracer.h"

#include "core/tensor_impl.h"
#include "kiln/error.h"

namespace kiln::graph {

Tracer::Tracer() : saved_(detail::thread_context().tracer) {
  detail::thread_context().tracer = this;
}
Tracer::~Tracer() { detail::thread_context().tracer = saved_; }

int32_t Tracer::add_value(const Tensor& t, ValueKind kind) {
  const int32_t id = static_cast<int32_t>(graph_.values.size());
  Value v;
  v.kind = kind;
  v.meta = {t.shape(), t.dtype()};
  if (kind == ValueKind::kConstant || kind == ValueKind::kVariable) v.captured = t;
  graph_.values.push_back(std::move(v));
  ids_.emplace(t.impl(), id);
  keep_.push_back(t);
  return id;
}

Tensor Tracer::add_input(const Shape& shape, DType dtype) {
  Tensor t = Tensor::adopt(detail::impl_view(nullptr, 0, shape, dtype));
  const int32_t id = add_value(t, ValueKind::kInput);
  graph_.values[id].input_index = static_cast<int32_t>(graph_.inputs.size());
  graph_.inputs.push_back(id);
  return t;
}

int32_t Tracer::value_of(const Tensor& t) {
  auto it = ids_.find(t.impl());
  if (it != ids_.end()) return it->second;
  const detail::TensorImpl* p = t.impl();
  if (!p->storage) {
    throw StateError(
        "kiln::function: a symbolic tensor from another trace reached this one (a tensor "
        "computed inside a traced function was kept and used outside it?)");
  }
  return add_value(t, p->is_variable ? ValueKind::kVariable : ValueKind::kConstant);
}

void Tracer::trace(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                   std::span<const Tensor> outputs) {
  Node n;
  n.op = &op;
  n.attrs = attrs;
  for (const Tensor& t : inputs) n.inputs.push_back(value_of(t));
  const int32_t node = static_cast<int32_t>(graph_.nodes.size());
  for (const Tensor& t : outputs) {
    const int32_t id = add_value(t, ValueKind::kNode);
    graph_.values[id].producer = node;
    n.outputs.push_back(id);
  }
  graph_.nodes.push_back(std::move(n));
}

void Tracer::set_outputs(const std::vector<Tensor>& outputs) {
  graph_.outputs.clear();
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (!outputs[k].defined()) {
      throw ValueError("kiln::function: result " + std::to_string(k) + " is an undefined tensor");
    }
    graph_.outputs.push_back(value_of(outputs[k]));
  }
}

}  // namespace kiln::graph
