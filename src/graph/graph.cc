#include "graph/graph.h"

#include <algorithm>
#include <sstream>

#include "kiln/error.h"

namespace kiln::graph {
namespace {

std::string meta_str(const Meta& m) {
  return to_string(m.shape) + " " + std::string(dtype_name(m.dtype));
}

// " {strides=[1, 1], padding=same}" by the op's attribute schema; "" without attrs.
std::string attrs_str(const OpDef& op, const Attrs& a) {
  std::string s = format_attrs(op, a);
  return s.empty() ? s : " {" + s + "}";
}

const char* kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::kInput:
      return "input";
    case ValueKind::kConstant:
      return "constant";
    case ValueKind::kVariable:
      return "variable";
    default:
      return "node";
  }
}

}  // namespace

std::string Graph::to_text() const {
  std::ostringstream s;
  for (size_t v = 0; v < values.size(); ++v) {
    const Value& val = values[v];
    if (val.kind == ValueKind::kNode) continue;
    s << "%" << v << " = " << kind_name(val.kind);
    if (val.kind == ValueKind::kInput) s << " " << val.input_index;
    s << " : " << meta_str(val.meta) << "\n";
  }
  for (const Node& n : nodes) {
    // A stateful node without outputs (assign, an optimizer update) prints as a statement.
    for (size_t k = 0; k < n.outputs.size(); ++k) s << (k ? ", %" : "%") << n.outputs[k];
    s << (n.outputs.empty() ? "" : " = ") << n.op->name << "(";
    for (size_t k = 0; k < n.inputs.size(); ++k) s << (k ? ", %" : "%") << n.inputs[k];
    s << ")" << attrs_str(*n.op, n.attrs);
    if (!n.outputs.empty()) s << " : " << meta_str(values[n.outputs[0]].meta);
    s << "\n";
  }
  s << "return";
  for (size_t k = 0; k < outputs.size(); ++k) s << (k ? ", %" : " %") << outputs[k];
  s << "\n";
  return s.str();
}

std::string Graph::to_dot(const std::string& name) const {
  std::ostringstream s;
  s << "digraph \"" << name << "\" {\n  rankdir=TB;\n";
  for (size_t v = 0; v < values.size(); ++v) {
    if (values[v].kind == ValueKind::kNode) continue;
    s << "  v" << v << " [shape=ellipse, label=\"" << kind_name(values[v].kind) << " %" << v
      << "\\n"
      << meta_str(values[v].meta) << "\"];\n";
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    s << "  n" << i << " [shape=box, label=\"" << nodes[i].op->name << "\"];\n";
  }
  auto source = [&](int32_t v) {
    const Value& val = values[v];
    return val.kind == ValueKind::kNode ? "n" + std::to_string(val.producer)
                                        : "v" + std::to_string(v);
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int32_t v : nodes[i].inputs) {
      s << "  " << source(v) << " -> n" << i << " [label=\"" << to_string(values[v].meta.shape)
        << "\"];\n";
    }
  }
  for (int32_t v : outputs) s << "  " << source(v) << " -> out;\n";
  s << "}\n";
  return s.str();
}

size_t Graph::constant_bytes() const {
  size_t b = 0;
  for (const Value& v : values) {
    if (v.kind == ValueKind::kConstant) b += v.captured.nbytes();
  }
  return b;
}

void Graph::plan_lifetimes() {
  std::vector<int32_t> last(values.size(), -1);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int32_t v : nodes[i].inputs) last[v] = static_cast<int32_t>(i);
    for (int32_t v : nodes[i].outputs) last[v] = std::max(last[v], static_cast<int32_t>(i));
  }
  for (int32_t v : outputs) last[v] = static_cast<int32_t>(nodes.size());  // never released
  for (Node& n : nodes) n.release.clear();
  for (size_t v = 0; v < values.size(); ++v) {
    if (values[v].kind == ValueKind::kNode && last[v] >= 0 &&
        last[v] < static_cast<int32_t>(nodes.size())) {
      nodes[last[v]].release.push_back(static_cast<int32_t>(v));
    }
  }
}

std::vector<Tensor> execute(const Graph& g, const std::vector<Tensor>& args) {
  if (args.size() != g.inputs.size()) {
    throw ValueError("graph: got " + std::to_string(args.size()) + " arguments, expected " +
                     std::to_string(g.inputs.size()));
  }
  std::vector<Tensor> vals(g.values.size());
  for (size_t k = 0; k < g.inputs.size(); ++k) vals[g.inputs[k]] = args[k];
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& val = g.values[v];
    if (val.kind == ValueKind::kConstant || val.kind == ValueKind::kVariable)
      vals[v] = val.captured;
  }
  Tensor in[16], out[2];
  for (const Node& n : g.nodes) {
    for (size_t k = 0; k < n.inputs.size(); ++k) in[k] = vals[n.inputs[k]];
    run_op(*n.op, std::span<const Tensor>(in, n.inputs.size()), n.attrs,
           std::span<Tensor>(out, n.outputs.size()));
    for (size_t k = 0; k < n.outputs.size(); ++k) vals[n.outputs[k]] = std::move(out[k]);
    for (int32_t v : n.release) vals[v] = Tensor();
  }
  for (Tensor& t : in) t = Tensor();
  std::vector<Tensor> result;
  result.reserve(g.outputs.size());
  for (int32_t v : g.outputs) result.push_back(vals[v]);
  return result;
}

}  // namespace kiln::graph
