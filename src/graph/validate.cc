// graph::validate: the checks a graph from outside kiln's tracer must pass before it runs.
#include <string>
#include <vector>

#include "graph/graph.h"
#include "kiln/error.h"

namespace kiln::graph {
namespace {

std::string meta_str(const Meta& m) {
  return to_string(m.shape) + " " + std::string(dtype_name(m.dtype));
}

}  // namespace

void validate(const Graph& g, const std::string& where) {
  const size_t nv = g.values.size();
  auto fail = [&](const std::string& what) { throw FormatError(where + ": " + what); };
  auto check_id = [&](int32_t v, const std::string& what) {
    if (v < 0 || static_cast<size_t>(v) >= nv) {
      fail(what + " refers to value %" + std::to_string(v) + ", but the graph has " +
           std::to_string(nv) + " values");
    }
  };
  // Which values are defined so far: inputs and captures up front, node outputs in order.
  std::vector<char> defined(nv, 0);
  std::vector<char> is_input(nv, 0);
  for (size_t k = 0; k < g.inputs.size(); ++k) {
    const int32_t v = g.inputs[k];
    check_id(v, "input " + std::to_string(k));
    if (g.values[v].kind != ValueKind::kInput || is_input[v]) {
      fail("input " + std::to_string(k) + " (%" + std::to_string(v) +
           ") is not a distinct value of kind input");
    }
    is_input[v] = 1;
    defined[v] = 1;
  }
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    const std::string name = "value %" + std::to_string(v);
    for (int64_t d : val.meta.shape.dims()) {
      if (d < 0) fail(name + " has a negative dim in " + to_string(val.meta.shape));
    }
    switch (val.kind) {
      case ValueKind::kInput:
        if (!is_input[v]) fail(name + " is an input that is not among the graph's inputs");
        break;
      case ValueKind::kConstant:
      case ValueKind::kVariable:
        if (!val.captured.defined()) fail(name + " is a capture without a tensor");
        if (val.captured.shape() != val.meta.shape || val.captured.dtype() != val.meta.dtype) {
          fail(name + " holds a " + to_string(val.captured.shape()) + " " +
               std::string(dtype_name(val.captured.dtype())) + " tensor but is declared " +
               meta_str(val.meta));
        }
        defined[v] = 1;
        break;
      case ValueKind::kNode:
        break;
      default:
        fail(name + " has an unknown kind");
    }
  }
  std::vector<Meta> in, out;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.op == nullptr) fail("node " + std::to_string(i) + " has no op");
    const std::string name = "node " + std::to_string(i) + " (" + n.op->name + ")";
    if (n.inputs.size() > kMaxNodeInputs || n.outputs.size() > kMaxNodeOutputs) {
      fail(name + " has " + std::to_string(n.inputs.size()) + " inputs and " +
           std::to_string(n.outputs.size()) + " outputs; a node takes at most " +
           std::to_string(kMaxNodeInputs) + " and " + std::to_string(kMaxNodeOutputs));
    }
    const bool variadic = n.op->num_inputs < 0;
    if ((variadic && n.inputs.empty()) ||
        (!variadic && n.inputs.size() != static_cast<size_t>(n.op->num_inputs))) {
      fail(name + " has " + std::to_string(n.inputs.size()) + " inputs, the op takes " +
           (variadic ? std::string("at least 1") : std::to_string(n.op->num_inputs)));
    }
    if (n.outputs.size() != static_cast<size_t>(n.op->num_outputs)) {
      fail(name + " has " + std::to_string(n.outputs.size()) + " outputs, the op gives " +
           std::to_string(n.op->num_outputs));
    }
    try {
      check_attrs(*n.op, n.attrs);
    } catch (const Error& e) {
      fail(name + ": " + e.what());
    }
    in.clear();
    for (int32_t v : n.inputs) {
      check_id(v, name);
      if (!defined[v]) fail(name + " reads %" + std::to_string(v) + " before it is defined");
      in.push_back(g.values[v].meta);
    }
    for (int32_t v : n.outputs) {
      check_id(v, name);
      if (g.values[v].kind != ValueKind::kNode || defined[v]) {
        fail(name + " writes %" + std::to_string(v) + ", which is not a fresh node value");
      }
      if (g.values[v].producer != static_cast<int32_t>(i)) {
        fail(name + " writes %" + std::to_string(v) + ", whose producer is recorded as node " +
             std::to_string(g.values[v].producer));
      }
      defined[v] = 1;
    }
    out.assign(n.outputs.size(), Meta{});
    try {
      n.op->infer(in, n.attrs, out);
    } catch (const Error& e) {
      fail(name + ": " + e.what());
    }
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const Meta& stored = g.values[n.outputs[k]].meta;
      if (stored.shape != out[k].shape || stored.dtype != out[k].dtype) {
        fail(name + " output " + std::to_string(k) + " is declared " + meta_str(stored) +
             " but the op infers " + meta_str(out[k]));
      }
    }
  }
  for (size_t v = 0; v < nv; ++v) {
    if (g.values[v].kind == ValueKind::kNode && !defined[v]) {
      fail("value %" + std::to_string(v) + " is a node value no node writes");
    }
  }
  if (g.outputs.empty()) fail("the graph has no outputs");
  for (size_t k = 0; k < g.outputs.size(); ++k)
    check_id(g.outputs[k], "output " + std::to_string(k));
}

}  // namespace kiln::graph
