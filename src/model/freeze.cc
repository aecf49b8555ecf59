// freeze(): trace a model's inference call, then run the freezing passes over the graph.
#include <unordered_map>

#include "core/context.h"
#include "core/tensor_impl.h"
#include "graph/freeze_passes.h"
#include "graph/graph.h"
#include "graph/passes.h"
#include "graph/scoped_recorders.h"
#include "graph/tracer.h"
#include "kiln/error.h"
#include "kiln/model_file.h"

namespace kiln {
namespace {

// Traces model(inputs, training = false) with unknown dims at `size`.
graph::Graph trace_inference(Layer& model, const std::vector<TensorSpec>& specs, int64_t size) {
  detail::TraceScope scope;
  scope.name = "freeze";
  graph::ScopedRecorders recorders(nullptr, detail::thread_context().tracer, &scope);
  graph::Tracer tracer;
  std::vector<Tensor> args;
  for (const TensorSpec& s : specs) {
    std::vector<int64_t> dims = s.dims;
    for (int64_t& d : dims) d = d == kUnknownDim ? size : d;
    args.push_back(tracer.add_input(Shape(dims), s.dtype));
  }
  Tensor out = args.size() == 1 ? model(args[0], false) : model(args, false);
  if (scope.variables_created != 0) {
    for (auto it = scope.undo.rbegin(); it != scope.undo.rend(); ++it) (*it)();
    throw StateError("freeze: model '" + model.name() +
                     "' created variables while traced; build it before freezing");
  }
  tracer.set_outputs({out});
  return tracer.take();
}

bool same_program(const graph::Graph& a, const graph::Graph& b) {
  if (a.nodes.size() != b.nodes.size() || a.values.size() != b.values.size()) return false;
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (a.nodes[i].op != b.nodes[i].op || !(a.nodes[i].attrs == b.nodes[i].attrs) ||
        a.nodes[i].inputs != b.nodes[i].inputs) {
      return false;
    }
  }
  return true;
}

struct NameIndex {
  std::unordered_map<const detail::TensorImpl*, std::string> names;
};

std::string name_of(const Tensor& value, void* ctx) {
  const auto& names = static_cast<NameIndex*>(ctx)->names;
  auto it = names.find(value.impl());
  return it == names.end() ? std::string() : it->second;
}

}  // namespace

std::vector<TensorSpec> inference_signature(const Layer& model) {
  if (!model.built()) {
    throw StateError("freeze: model '" + model.name() +
                     "' is not built; call it once or give FreezeOptions::input_signature");
  }
  std::vector<TensorSpec> specs;
  for (const Shape& s : model.built_input_shapes()) {
    TensorSpec t{s.vec(), DType::kFloat32};
    if (!t.dims.empty()) t.dims[0] = kUnknownDim;
    specs.push_back(t);
  }
  return specs;
}

GraphModel freeze(Layer& model, const FreezeOptions& options) {
  const std::vector<TensorSpec> specs =
      options.input_signature ? *options.input_signature : inference_signature(model);
  if (specs.empty()) throw ValueError("freeze: the input signature is empty");
  bool unknown = false;
  for (const TensorSpec& s : specs) {
    for (int64_t d : s.dims) unknown |= d == kUnknownDim;
  }
  graph::Graph g = trace_inference(model, specs, 2);
  if (unknown && !same_program(g, trace_inference(model, specs, 3))) {
    throw ValueError("freeze: the graph of model '" + model.name() +
                     "' depends on the sizes its input signature leaves unknown (an op bakes "
                     "a size into its attributes); freeze with fixed dims");
  }
  NameIndex index;
  for (const Variable& v : model.weights()) index.names[v.value().impl()] = v.name();
  std::vector<graph::FoldedVariable> folded = graph::variables_to_constants(g, name_of, &index);
  graph::optimize(g);  // folds what only reads constants (BatchNormalization's 1/sqrt(var+eps))
  if (options.fold_batch_norm && graph::fold_affine_into_producers(g) > 0) graph::optimize(g);

  std::vector<GraphPort> inputs, outputs;
  for (size_t k = 0; k < specs.size(); ++k) {
    inputs.push_back({specs.size() == 1 ? "input" : "input_" + std::to_string(k), specs[k]});
  }
  for (size_t k = 0; k < g.outputs.size(); ++k) {
    const Meta& m = g.values[g.outputs[k]].meta;
    TensorSpec t{m.shape.vec(), m.dtype};
    // The output's batch dim follows the input's when the input's was unknown.
    if (unknown && !t.dims.empty() && !specs[0].dims.empty() && specs[0].dims[0] == kUnknownDim) {
      t.dims[0] = kUnknownDim;
    }
    outputs.push_back({g.outputs.size() == 1 ? "output" : "output_" + std::to_string(k), t});
  }
  GraphModel frozen(std::move(g), std::move(inputs), std::move(outputs), model.name());
  std::vector<FoldedVariableInfo> from;
  for (const graph::FoldedVariable& f : folded) from.push_back({f.name, f.version});
  frozen.set_folded_variables(std::move(from));
  return frozen;
}

}  // namespace kiln
