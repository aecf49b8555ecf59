// GraphModel: a stored inference graph run through kiln::Function. The Function's callable
// replays the stored graph op by op through the dispatcher, so tracing it yields the same graph,
// which then takes the ordinary path: passes, fusion for the call's shapes, a memory plan, and
// allocation-free cache hits. Nothing here executes a graph by itself.
#include "kiln/graph_model.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "graph/executor.h"
#include "graph/graph.h"
#include "kiln/error.h"

namespace kiln {

struct GraphModel::Impl {
  std::string name;
  std::shared_ptr<const graph::Graph> graph;
  std::vector<GraphPort> inputs, outputs;
  std::vector<FoldedVariableInfo> folded;
  mutable Function fn;

  Impl(std::string n, std::shared_ptr<const graph::Graph> g, std::vector<GraphPort> in,
       std::vector<GraphPort> out, FunctionOptions options)
      : name(std::move(n)),
        graph(g),
        inputs(std::move(in)),
        outputs(std::move(out)),
        fn([g](const std::vector<Tensor>& args, bool) { return graph::execute(*g, args); },
           std::move(options)) {}
};

namespace {

// A Function name: no '/', never empty.
std::string function_name(const std::string& name) {
  std::string s = name.empty() ? "graph" : name;
  std::replace(s.begin(), s.end(), '/', '.');
  return s;
}

std::string spec_str(const TensorSpec& s) {
  std::string r = "[";
  for (size_t d = 0; d < s.dims.size(); ++d) {
    r +=
        (d ? ", " : "") + (s.dims[d] == kUnknownDim ? std::string("?") : std::to_string(s.dims[d]));
  }
  return r + "] " + std::string(dtype_name(s.dtype));
}

const GraphModel::Impl& require(const std::shared_ptr<GraphModel::Impl>& impl) {
  if (!impl) throw StateError("GraphModel: the model is empty (default-constructed or moved from)");
  return *impl;
}

}  // namespace

GraphModel::GraphModel() = default;
GraphModel::~GraphModel() = default;
GraphModel::GraphModel(const GraphModel&) = default;
GraphModel& GraphModel::operator=(const GraphModel&) = default;
GraphModel::GraphModel(GraphModel&&) noexcept = default;
GraphModel& GraphModel::operator=(GraphModel&&) noexcept = default;

GraphModel::GraphModel(graph::Graph g, std::vector<GraphPort> inputs,
                       std::vector<GraphPort> outputs, std::string name) {
  const std::string where = "graph model '" + name + "'";
  for (size_t v = 0; v < g.values.size(); ++v) {
    if (g.values[v].kind == graph::ValueKind::kVariable) {
      throw ValueError(where + ": value %" + std::to_string(v) +
                       " is a variable; freeze the graph first (variables to constants)");
    }
  }
  graph::validate(g, where);
  if (inputs.size() != g.inputs.size() || outputs.size() != g.outputs.size()) {
    throw FormatError(where + ": " + std::to_string(inputs.size()) + " input and " +
                      std::to_string(outputs.size()) + " output ports for a graph of " +
                      std::to_string(g.inputs.size()) + " inputs and " +
                      std::to_string(g.outputs.size()) + " outputs");
  }
  auto check_port = [&](const GraphPort& p, const Meta& m, const char* kind) {
    bool ok = p.spec.dtype == m.dtype && p.spec.dims.size() == static_cast<size_t>(m.shape.rank());
    for (size_t d = 0; ok && d < p.spec.dims.size(); ++d) {
      ok = p.spec.dims[d] == kUnknownDim || p.spec.dims[d] == m.shape[static_cast<int>(d)];
    }
    if (!ok) {
      throw FormatError(where + ": " + kind + " '" + p.name + "' is declared " + spec_str(p.spec) +
                        " but the graph has " + to_string(m.shape) + " " +
                        std::string(dtype_name(m.dtype)));
    }
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    check_port(inputs[k], g.values[g.inputs[k]].meta, "input");
  }
  for (size_t k = 0; k < outputs.size(); ++k) {
    check_port(outputs[k], g.values[g.outputs[k]].meta, "output");
  }
  g.plan_lifetimes();  // replaying the graph frees intermediates after their last reader
  FunctionOptions options;
  options.name = function_name(name);
  std::vector<TensorSpec> signature;
  for (const GraphPort& p : inputs) signature.push_back(p.spec);
  options.input_signature = std::move(signature);
  impl_ =
      std::make_shared<Impl>(std::move(name), std::make_shared<const graph::Graph>(std::move(g)),
                             std::move(inputs), std::move(outputs), std::move(options));
}

const std::string& GraphModel::name() const { return require(impl_).name; }
const std::vector<GraphPort>& GraphModel::inputs() const { return require(impl_).inputs; }
const std::vector<GraphPort>& GraphModel::outputs() const { return require(impl_).outputs; }
const graph::Graph& GraphModel::graph() const { return *require(impl_).graph; }

namespace {

// Throws naming the port unless `t` fits it.
void check_input(const std::string& model, const GraphPort& p, const Tensor& t) {
  if (!t.defined())
    throw ValueError("graph model '" + model + "': input '" + p.name + "' is undefined");
  if (t.dtype() != p.spec.dtype) {
    throw DTypeError("graph model '" + model + "': input '" + p.name + "' takes " +
                     std::string(dtype_name(p.spec.dtype)) + ", got " +
                     std::string(dtype_name(t.dtype())));
  }
  bool ok = static_cast<size_t>(t.shape().rank()) == p.spec.dims.size();
  for (size_t d = 0; ok && d < p.spec.dims.size(); ++d) {
    ok = p.spec.dims[d] == kUnknownDim || p.spec.dims[d] == t.shape()[static_cast<int>(d)];
  }
  if (!ok) {
    throw ShapeError("graph model '" + model + "': input '" + p.name + "' takes " +
                     spec_str(p.spec) + ", got " + to_string(t.shape()));
  }
}

}  // namespace

std::vector<Tensor> GraphModel::operator()(const std::vector<Tensor>& inputs) const {
  const Impl& m = require(impl_);
  if (inputs.size() != m.inputs.size()) {
    throw ValueError("graph model '" + m.name + "': got " + std::to_string(inputs.size()) +
                     " inputs, it takes " + std::to_string(m.inputs.size()));
  }
  for (size_t k = 0; k < inputs.size(); ++k) check_input(m.name, m.inputs[k], inputs[k]);
  return m.fn(inputs, false);
}

Tensor GraphModel::operator()(const Tensor& x) const {
  const Impl& m = require(impl_);
  if (m.inputs.size() != 1 || m.outputs.size() != 1) {
    throw ValueError("graph model '" + m.name + "' has " + std::to_string(m.inputs.size()) +
                     " inputs and " + std::to_string(m.outputs.size()) +
                     " outputs; call it with a vector of inputs");
  }
  return (*this)(std::vector<Tensor>{x})[0];
}

void GraphModel::call(std::span<const Tensor> inputs, std::span<Tensor> outs) const {
  const Impl& m = require(impl_);
  if (inputs.size() != m.inputs.size()) {
    throw ValueError("graph model '" + m.name + "': got " + std::to_string(inputs.size()) +
                     " inputs, it takes " + std::to_string(m.inputs.size()));
  }
  for (size_t k = 0; k < inputs.size(); ++k) check_input(m.name, m.inputs[k], inputs[k]);
  m.fn.call(inputs, outs, false);
}

namespace {

// Inputs shaped like the ports, unknown dims at 1.
std::vector<Tensor> batch_one(const std::vector<GraphPort>& ports) {
  std::vector<Tensor> args;
  for (const GraphPort& p : ports) {
    std::vector<int64_t> dims = p.spec.dims;
    for (int64_t& d : dims) d = d == kUnknownDim ? 1 : d;
    args.push_back(zeros(Shape(dims), p.spec.dtype));
  }
  return args;
}

}  // namespace

std::string GraphModel::graph_text(bool fused) const {
  const Impl& m = require(impl_);
  if (!fused) return m.graph->to_text();
  return m.fn.graph_text(batch_one(m.inputs), false, true);
}

FunctionCacheInfo GraphModel::cache_info() const { return require(impl_).fn.cache_info(); }

const std::vector<FoldedVariableInfo>& GraphModel::folded_variables() const {
  return require(impl_).folded;
}

void GraphModel::set_folded_variables(std::vector<FoldedVariableInfo> folded) {
  require(impl_);
  std::map<std::string, uint64_t> sources;
  for (const FoldedVariableInfo& f : folded) sources[f.name] = f.version;
  impl_->fn.set_constant_sources(std::move(sources));
  impl_->folded = std::move(folded);
}

GraphSummary GraphModel::summary() const {
  const Impl& m = require(impl_);
  const std::vector<Tensor> args = batch_one(m.inputs);
  const graph::Graph g = graph::with_shapes(*m.graph, args);
  GraphSummary s;
  s.nodes = static_cast<int64_t>(g.nodes.size());
  for (const graph::Value& v : g.values) {
    if (v.kind != graph::ValueKind::kConstant) continue;
    const DType t = v.meta.dtype;
    if (is_floating(t) || t == DType::kInt8 || t == DType::kUInt8) {
      s.parameters += v.meta.shape.numel();  // float weights and int8 ones (not index tensors)
    }
    s.parameter_bytes += static_cast<int64_t>(v.captured.nbytes());
  }
  std::map<std::string, int64_t> counts;
  std::vector<Meta> in, out;
  for (const graph::Node& n : g.nodes) {
    in.clear();
    out.clear();
    for (int32_t v : n.inputs) in.push_back(g.values[v].meta);
    for (int32_t v : n.outputs) out.push_back(g.values[v].meta);
    s.flops_per_sample += op_flops(*n.op, in, n.attrs, out);
    ++counts[n.op->name];
  }
  s.op_counts.assign(counts.begin(), counts.end());
  return s;
}

std::string GraphSummary::to_text() const {
  std::ostringstream o;
  o << "nodes " << nodes << ", parameters " << parameters << " (" << parameter_bytes
    << " bytes), FLOPs per sample " << flops_per_sample << "\n";
  for (const auto& [op, n] : op_counts) o << "  " << op << " x" << n << "\n";
  return o.str();
}

}  // namespace kiln
