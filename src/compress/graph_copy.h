// Copying a frozen graph node by node while replacing some nodes: the helper the static and
// dynamic quantizers and the QAT converter share. Values of the source graph map to values of the
// copy; a replaced node's outputs are mapped by the caller (map_to) to whatever computes them.
#pragma once

#include <vector>

#include "graph/graph.h"
#include "ops/op_def.h"

namespace kiln::compress {

// Appends values and nodes to a graph being built (the rewriters' common part).
class GraphBuilder {
 protected:
  int add_value(graph::Value v) {
    out_.values.push_back(std::move(v));
    return static_cast<int>(out_.values.size()) - 1;
  }

 public:
  int constant(const Tensor& t) {
    graph::Value v;
    v.kind = graph::ValueKind::kConstant;
    v.meta = {t.shape(), t.dtype()};
    v.captured = t;
    return add_value(v);
  }

  // Appends a node of `op` on copy values (output metas inferred); returns its first output.
  int emit(const OpDef& op, const std::vector<int>& in, const Attrs& attrs) {
    std::vector<Meta> metas;
    for (int v : in) metas.push_back(out_.values[v].meta);
    std::vector<Meta> outs(op.num_outputs);
    op.infer(metas, attrs, outs);
    graph::Node n;
    n.op = &op;
    n.attrs = attrs;
    n.inputs.assign(in.begin(), in.end());
    for (const Meta& m : outs) {
      graph::Value v;
      v.kind = graph::ValueKind::kNode;
      v.meta = m;
      v.producer = static_cast<int32_t>(out_.nodes.size());
      n.outputs.push_back(add_value(v));
    }
    out_.nodes.push_back(std::move(n));
    return out_.nodes.back().outputs[0];
  }

 protected:
  graph::Graph out_;
};

class GraphCopy : public GraphBuilder {
 public:
  explicit GraphCopy(const graph::Graph& src) : src_(src), map_(src.values.size(), -1) {
    for (int v : src.inputs) {
      graph::Value nv = src.values[v];
      nv.input_index = static_cast<int32_t>(out_.inputs.size());
      map_[v] = add_value(nv);
      out_.inputs.push_back(map_[v]);
    }
  }

  // The copy's value holding source value v (constants are copied on first use).
  int value(int v) {
    if (map_[v] < 0) map_[v] = constant(src_.values[v].captured);
    return map_[v];
  }
  void map_to(int src_value, int copy_value) { map_[src_value] = copy_value; }

  // Copies source node `i` unchanged (inputs mapped) and maps its outputs.
  void copy_node(int i) {
    const graph::Node& n = src_.nodes[i];
    std::vector<int> in;
    for (int v : n.inputs) in.push_back(value(v));
    emit(*n.op, in, n.attrs);
    const graph::Node& made = out_.nodes.back();
    for (size_t k = 0; k < n.outputs.size(); ++k) map_[n.outputs[k]] = made.outputs[k];
  }

  // The copy, with the source's outputs mapped.
  graph::Graph finish() {
    for (int v : src_.outputs) out_.outputs.push_back(value(v));
    return std::move(out_);
  }

 private:
  const graph::Graph& src_;
  std::vector<int> map_;
};

}  // namespace kiln::compress
