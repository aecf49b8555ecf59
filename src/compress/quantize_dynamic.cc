// Dynamic-range quantization of a frozen graph (kiln/compress.h): matmul [+ bias] [+ relu] with
// a constant weight becomes one dynamic_quantized_matmul; everything else is copied.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "compress/graph_copy.h"
#include "compress/quantize_graph.h"
#include "core/tensor_impl.h"
#include "kiln/compress.h"
#include "kiln/ops.h"
#include "ops/registry.h"

namespace kiln {

namespace {

using graph::Graph;

bool is_const_f32(const Graph& g, int v) {
  return g.values[v].kind == graph::ValueKind::kConstant && g.values[v].meta.dtype == float32;
}

// The single reader of v (not a graph output), else -1.
int sole_user(const Graph& g, const std::vector<std::vector<int>>& users, int v) {
  if (users[v].size() != 1) return -1;
  if (std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end()) return -1;
  return users[v][0];
}

}  // namespace

GraphModel quantize_dynamic(const GraphModel& model, const DynamicQuantizeOptions& options,
                            int* quantized_layers) {
  const int qmax = compress::weight_qmax("quantize_dynamic", options.weight_bits);
  const Graph& g = model.graph();
  std::vector<std::vector<int>> users(g.values.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].inputs) users[v].push_back(static_cast<int>(i));

  compress::GraphCopy copy(g);
  std::vector<bool> absorbed(g.nodes.size(), false);
  int rewritten = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (absorbed[i]) continue;
    const graph::Node& n = g.nodes[i];
    const bool fits = n.op == &ops::kMatmul && n.attrs.i(0) == 0 && n.attrs.i(1) == 0 &&
                      is_const_f32(g, n.inputs[1]) && g.values[n.inputs[0]].meta.dtype == float32 &&
                      g.values[n.inputs[0]].meta.shape.rank() == 2 &&
                      g.values[n.inputs[1]].meta.shape.rank() == 2;
    if (!fits) {
      copy.copy_node(static_cast<int>(i));
      continue;
    }
    const Tensor& w = g.values[n.inputs[1]].captured;
    const int64_t channels = w.shape()[1];
    int y = n.outputs[0];
    Tensor bias;
    bool relu = false;
    int u = sole_user(g, users, y);
    if (u >= 0 && g.nodes[u].op == &ops::kAdd) {
      const graph::Node& a = g.nodes[u];
      const int other = a.inputs[0] == y ? a.inputs[1] : a.inputs[0];
      if (is_const_f32(g, other) && g.values[other].meta.shape == Shape{channels} &&
          g.values[a.outputs[0]].meta.shape == g.values[y].meta.shape) {
        bias = g.values[other].captured;
        absorbed[u] = true;
        y = a.outputs[0];
        u = sole_user(g, users, y);
      }
    }
    if (u >= 0 && g.nodes[u].op == &ops::kRelu) {
      relu = true;
      absorbed[u] = true;
      y = g.nodes[u].outputs[0];
    }
    if (!bias.defined()) bias = zeros({channels});
    Tensor wq, scales;
    compress::quantize_weights_per_channel(w, qmax, wq, scales);
    const int out = copy.emit(
        ops::kDynamicQuantizedMatmul,
        {copy.value(n.inputs[0]), copy.constant(wq), copy.constant(scales), copy.constant(bias)},
        Attrs{relu ? 1 : 0});
    copy.map_to(y, out);
    ++rewritten;
  }
  if (quantized_layers) *quantized_layers = rewritten;
  GraphModel result(copy.finish(), model.inputs(), model.outputs(), model.name() + "_dynamic");
  result.set_folded_variables(model.folded_variables());
  return result;
}

}  // namespace kiln
