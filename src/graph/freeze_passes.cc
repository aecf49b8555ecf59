#include "graph/freeze_passes.h"

#include <vector>

#include "core/tensor_impl.h"
#include "graph/scoped_recorders.h"
#include "kiln/error.h"
#include "ops/registry.h"

namespace kiln::graph {

std::vector<FoldedVariable> variables_to_constants(
    Graph& g, std::string (*name_of)(const Tensor& value, void* ctx), void* ctx) {
  for (const Node& n : g.nodes) {
    if (is_stateful(*n.op)) {
      throw ValueError(std::string("freeze: the graph writes state (op '") + n.op->name +
                       "'): only inference graphs freeze; trace the model with training=false");
    }
  }
  ScopedRecorders eager(nullptr, nullptr, nullptr);  // the copies are not part of any trace
  std::vector<FoldedVariable> folded;
  for (size_t v = 0; v < g.values.size(); ++v) {
    Value& val = g.values[v];
    if (val.kind != ValueKind::kVariable) continue;
    FoldedVariable f;
    f.value = static_cast<int32_t>(v);
    f.name = name_of ? name_of(val.captured, ctx) : std::string();
    f.version = val.captured.impl()->version.load(std::memory_order_relaxed);
    Tensor copy = empty(val.captured.shape(), val.captured.dtype());
    copy.copy_from(val.captured);
    val.captured = copy;
    val.kind = ValueKind::kConstant;
    folded.push_back(std::move(f));
  }
  return folded;
}

namespace {

// The per-channel values of constant `t` for C channels (a scalar repeats), or false when `t`
// does not broadcast along the last axis only.
bool per_channel(const Tensor& t, int64_t channels, int out_rank, std::vector<double>& out) {
  const Shape& s = t.shape();
  if (!is_floating(t.dtype()) || s.rank() > out_rank) return false;
  const int64_t n = s.numel();
  if (n != 1 && n != channels) return false;
  if (n == channels && channels != 1) {
    for (int d = 0; d + 1 < s.rank(); ++d) {
      if (s[d] != 1) return false;
    }
    if (s.rank() == 0 || s[s.rank() - 1] != channels) return false;
  }
  out.assign(static_cast<size_t>(channels), 0.0);
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t k = n == 1 ? 0 : c;
    out[c] = t.dtype() == DType::kFloat32 ? static_cast<double>(t.data<float>()[k])
                                          : t.data<double>()[k];
  }
  return true;
}

Tensor channel_tensor(const std::vector<double>& v, DType dtype) {
  Tensor t = empty(Shape{static_cast<int64_t>(v.size())}, dtype);
  for (size_t c = 0; c < v.size(); ++c) {
    if (dtype == DType::kFloat32) {
      t.data<float>()[c] = static_cast<float>(v[c]);
    } else {
      t.data<double>()[c] = v[c];
    }
  }
  return t;
}

// filter * scale[c] over the last axis.
Tensor scale_last_axis(const Tensor& w, const std::vector<double>& scale) {
  Tensor out = empty(w.shape(), w.dtype());
  const int64_t n = w.numel(), c = static_cast<int64_t>(scale.size());
  for (int64_t i = 0; i < n; ++i) {
    if (w.dtype() == DType::kFloat32) {
      out.data<float>()[i] = static_cast<float>(w.data<float>()[i] * scale[i % c]);
    } else {
      out.data<double>()[i] = w.data<double>()[i] * scale[i % c];
    }
  }
  return out;
}

}  // namespace

int fold_affine_into_producers(Graph& g) {
  // Readers per value; graph outputs count as readers that cannot be rewritten.
  std::vector<int> readers(g.values.size(), 0), reader_node(g.values.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int32_t v : g.nodes[i].inputs) {
      ++readers[v];
      reader_node[v] = static_cast<int>(i);
    }
  }
  for (int32_t v : g.outputs) readers[v] += 2;

  ScopedRecorders eager(nullptr, nullptr, nullptr);
  int folded = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& producer = g.nodes[i];
    const bool is_matmul = producer.op == &ops::kMatmul && producer.attrs.i(1) == 0;
    if (!is_matmul && producer.op != &ops::kConv2D) continue;
    const int32_t w = producer.inputs[1];
    if (g.values[w].kind != ValueKind::kConstant || readers[w] != 1) continue;
    const Tensor& filter = g.values[w].captured;
    if (!is_floating(filter.dtype()) || filter.rank() < 2) continue;
    const int64_t channels = filter.shape()[filter.rank() - 1];
    const Meta y = g.values[producer.outputs[0]].meta;
    if (y.shape.rank() == 0 || y.shape[y.shape.rank() - 1] != channels) continue;

    std::vector<double> scale(channels, 1.0), shift(channels, 0.0), c;
    int32_t cur = producer.outputs[0];
    int last = -1, steps = 0;
    bool only_adds = true;
    while (readers[cur] == 1) {
      Node& r = g.nodes[reader_node[cur]];
      const bool add = r.op == &ops::kAdd, sub = r.op == &ops::kSub, mul = r.op == &ops::kMul,
                 div = r.op == &ops::kDiv;
      if (!(add || sub || mul || div) || r.inputs.size() != 2) break;
      const bool first = r.inputs[0] == cur;
      const int32_t other = first ? r.inputs[1] : r.inputs[0];
      if (other == cur || g.values[other].kind != ValueKind::kConstant) break;
      const Meta& out = g.values[r.outputs[0]].meta;
      if (out.shape != y.shape || out.dtype != y.dtype) break;
      if (!per_channel(g.values[other].captured, channels, y.shape.rank(), c)) break;
      if (div && !first) break;  // c / y is not affine
      for (int64_t k = 0; k < channels; ++k) {
        if (add) {
          shift[k] += c[k];
        } else if (sub && first) {
          shift[k] -= c[k];
        } else if (sub) {  // c - y
          scale[k] = -scale[k];
          shift[k] = c[k] - shift[k];
        } else if (mul) {
          scale[k] *= c[k];
          shift[k] *= c[k];
        } else {
          scale[k] /= c[k];
          shift[k] /= c[k];
        }
      }
      only_adds &= add;
      last = reader_node[cur];
      cur = r.outputs[0];
      ++steps;
    }
    if (steps == 0 || (steps == 1 && only_adds)) continue;  // a lone bias add: nothing to gain
    g.values[w].captured = scale_last_axis(filter, scale);
    Value bias;
    bias.kind = ValueKind::kConstant;
    bias.captured = channel_tensor(shift, y.dtype);
    bias.meta = {bias.captured.shape(), bias.captured.dtype()};
    g.values.push_back(std::move(bias));
    readers.push_back(1);
    reader_node.push_back(last);
    Node& tail = g.nodes[last];
    tail.op = &ops::kAdd;
    tail.attrs = Attrs{};
    tail.inputs = {producer.outputs[0], static_cast<int32_t>(g.values.size() - 1)};
    ++folded;
  }
  return folded;
}

}  // namespace kiln::graph
