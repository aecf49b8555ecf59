#include "graph/fusion.h"

#include <algorithm>

#include "graph/passes.h"
#include "ops/conv_geom.h"
#include "ops/fused.h"
#include "ops/registry.h"

namespace kiln::graph {
namespace {

// Who reads each value: the reading nodes in order (a node once per input reading it).
struct Readers {
  std::vector<std::vector<int32_t>> of;
  std::vector<bool> is_output;
  std::vector<int> stateful_before;  // stateful nodes among nodes [0, i)

  explicit Readers(const Graph& g)
      : of(g.values.size()),
        is_output(g.values.size(), false),
        stateful_before(g.nodes.size() + 1, 0) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (int32_t v : g.nodes[i].inputs) of[v].push_back(static_cast<int32_t>(i));
      stateful_before[i + 1] = stateful_before[i] + (is_stateful(*g.nodes[i].op) ? 1 : 0);
    }
    for (int32_t v : g.outputs) is_output[v] = true;
  }
  // The one node reading v, or -1 if v has other readers or is returned.
  int32_t only_reader(int32_t v) const {
    return of[v].size() == 1 && !is_output[v] ? of[v][0] : -1;
  }
  // Whether a stateful node lies strictly between nodes a < b.
  bool stateful_between(int32_t a, int32_t b) const {
    return stateful_before[b] - stateful_before[a + 1] > 0;
  }
};

// Drops the nodes marked in `gone` and renumbers producers.
int remove_nodes(Graph& g, const std::vector<bool>& gone) {
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!gone[i]) nodes.push_back(std::move(g.nodes[i]));
  }
  const int removed = static_cast<int>(g.nodes.size() - nodes.size());
  g.nodes = std::move(nodes);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int32_t v : g.nodes[i].outputs) g.values[v].producer = static_cast<int32_t>(i);
  }
  return removed;
}

bool is_float(DType t) { return t == DType::kFloat32 || t == DType::kFloat64; }

}  // namespace

int fuse_matmul_conv(Graph& g) {
  const Readers r(g);
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& base = g.nodes[i];
    const bool mm = base.op == &ops::kMatmul;
    if (!mm && base.op != &ops::kConv2D) continue;
    const Meta& a = g.values[base.inputs[0]].meta;
    const Meta& y = g.values[base.outputs[0]].meta;
    if (!is_float(y.dtype) ||
        (mm && (a.shape.rank() != 2 || g.values[base.inputs[1]].meta.shape.rank() != 2))) {
      continue;
    }
    int32_t last = static_cast<int32_t>(i), cur = base.outputs[0], bias = -1;
    int64_t act = kActNone;
    Attrs act_attrs;
    // The bias: add(y, b) or add(b, y) with b of shape [N] broadcast over y's last dim.
    int32_t n = r.only_reader(cur);
    if (n >= 0 && g.nodes[n].op == &ops::kAdd) {
      const Node& add = g.nodes[n];
      const int32_t other = add.inputs[0] == cur ? add.inputs[1] : add.inputs[0];
      const Meta& b = g.values[other].meta;
      if (other != cur && b.dtype == y.dtype && b.shape.rank() == 1 &&
          b.shape[0] == y.shape[y.shape.rank() - 1] &&
          g.values[add.outputs[0]].meta.shape == y.shape && !r.stateful_between(last, n)) {
        bias = other;
        last = n;
        cur = add.outputs[0];
      }
    }
    n = r.only_reader(cur);
    if (n >= 0 && fused_act_code(g.nodes[n].op) != kActNone && !r.stateful_between(last, n)) {
      act = fused_act_code(g.nodes[n].op);
      act_attrs = g.nodes[n].attrs;
      last = n;
      cur = g.nodes[n].outputs[0];
    }
    if (last == static_cast<int32_t>(i)) continue;  // nothing to fuse with
    Attrs fa;
    if (mm) {
      fa.add_int(base.attrs.i(0)).add_int(base.attrs.i(1));
    } else {
      for (int k = 0; k < 6; ++k) fa.add_int(base.attrs.i(k));
    }
    fa.add_int(bias >= 0).add_int(act);
    // The activation's own attrs (at most one integer and one float: gelu's approximate,
    // leaky_relu's alpha), both always present per the fused ops' schemas.
    fa.add_int(act_attrs.num_ints() ? act_attrs.i(0) : 0);
    fa.add_float(act_attrs.num_floats() ? act_attrs.f(0) : 0.0);
    Node fused;
    fused.op = mm ? &ops::kFusedMatmul : &ops::kFusedConv2D;
    fused.attrs = fa;
    fused.inputs = {base.inputs[0], base.inputs[1]};
    if (bias >= 0) fused.inputs.push_back(bias);
    fused.outputs = {cur};
    // The chain's nodes go; any other node between them stays where it is.
    gone[i] = true;
    if (bias >= 0) gone[r.of[base.outputs[0]].back()] = true;
    g.nodes[last] = std::move(fused);
    gone[last] = false;
  }
  return remove_nodes(g, gone);
}

int fuse_pool_grad(Graph& g) {
  const Readers r(g);
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& pool = g.nodes[i];
    if (pool.op != &ops::kMaxPool2DGrad) continue;
    const int32_t x = pool.inputs[0], t = pool.outputs[0];
    const int32_t n = r.only_reader(t);
    if (n < 0 || !is_float(g.values[t].meta.dtype)) continue;
    const Node& e = g.nodes[n];
    // E(t, x): elementwise, linear in t (so it only matters where a gradient lands), same shape.
    if (!e.op->elementwise || e.op->elementwise->arity != 2 || !(e.op->flags & kLinearInInput0) ||
        fe_opcode(*e.op) < 0 || e.inputs[0] != t || e.inputs[1] != x ||
        g.values[e.outputs[0]].meta.shape != g.values[t].meta.shape ||
        g.values[e.outputs[0]].meta.dtype != g.values[t].meta.dtype || r.stateful_between(i, n)) {
      continue;
    }
    Node fused;
    fused.op = &ops::kFusedMaxPool2DGrad;
    fused.attrs = pool.attrs;
    fused.attrs.add_int(fe_opcode(*e.op));
    fused.inputs = pool.inputs;
    fused.outputs = e.outputs;
    gone[i] = true;
    g.nodes[n] = std::move(fused);
  }
  return remove_nodes(g, gone);
}

int fuse_conv_pool(Graph& g) {
  const Readers r(g);
  auto same_ints = [](const Attrs& a, int from, const Attrs& b, int b_from, int count) {
    for (int k = 0; k < count; ++k) {
      if (a.i(from + k) != b.i(b_from + k)) return false;
    }
    return true;
  };
  constexpr int kConv = conv::kConvAttrs, kPool = 5;  // fused_conv2d's conv attrs, pool attrs
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& conv = g.nodes[i];
    if (conv.op != &ops::kFusedConv2D || conv.inputs.size() != 3 ||
        conv.attrs.i(kConv + 1) != kActRelu)
      continue;
    const int32_t x = conv.inputs[0], f = conv.inputs[1], b = conv.inputs[2], y = conv.outputs[0];
    const Attrs ca = conv::prefix(conv.attrs);
    if (r.is_output[y] || !conv_pool_direct(g.values[x].meta, g.values[f].meta, ca)) continue;
    int32_t pool = -1, pool_grad = -1;
    for (int32_t n : r.of[y]) {
      const Node& u = g.nodes[n];
      if (u.op == &ops::kMaxPool2D && pool < 0) {
        pool = n;
      } else if (u.op == &ops::kFusedMaxPool2DGrad && pool_grad < 0 && u.inputs[0] == y &&
                 u.attrs.i(kPool) == fe_opcode(ops::kReluGrad)) {
        pool_grad = n;
      } else {
        pool = -2;  // another reader needs y itself
      }
    }
    if (pool < 0 || r.stateful_between(static_cast<int32_t>(i), pool)) continue;
    const Attrs& pa = g.nodes[pool].attrs;
    int32_t bias_sum = -1, filter_grad = -1, last = -1;
    // The backward: dz read by db = sum_to_like(dz, b) and df = conv2d_backward_filter(x, dz).
    if (pool_grad >= 0) {
      const Node& pg = g.nodes[pool_grad];
      const int32_t dz = pg.outputs[0];
      if (!same_ints(pg.attrs, 0, pa, 0, kPool) || r.is_output[dz]) continue;
      for (int32_t n : r.of[dz]) {
        const Node& u = g.nodes[n];
        if (u.op == &ops::kSumToLike && bias_sum < 0 && u.inputs[0] == dz && u.inputs[1] == b) {
          bias_sum = n;
        } else if (u.op == &ops::kConv2DBackwardFilter && filter_grad < 0 && u.inputs[0] == x &&
                   u.inputs[1] == dz && same_ints(u.attrs, 0, ca, 0, kConv)) {
          filter_grad = n;
        } else {
          bias_sum = filter_grad = -2;
        }
      }
      if (bias_sum < 0 || filter_grad < 0) continue;
      const int32_t first = std::min({pool_grad, bias_sum, filter_grad});
      last = std::max(bias_sum, filter_grad);
      if (r.stateful_between(first, last)) continue;
    }
    const int32_t p = g.nodes[pool].outputs[0];
    const int32_t slot = static_cast<int32_t>(g.values.size());
    Value slot_value;  // a node's output: the uint8 window slots, y's shape
    slot_value.meta = {g.values[p].meta.shape, DType::kUInt8};
    g.values.push_back(std::move(slot_value));
    Attrs fa = ca;
    for (int k = 0; k < kPool; ++k) fa.add_int(pa.i(k));
    Node fused;
    fused.op = &ops::kFusedConv2DPool;
    fused.attrs = fa;
    fused.inputs = {x, f, b};
    fused.outputs = {p, slot};
    const int32_t dp = pool_grad >= 0 ? g.nodes[pool_grad].inputs[1] : -1;
    g.nodes[i] = std::move(fused);
    gone[pool] = true;
    if (pool_grad < 0) continue;
    const Shape& fs = g.values[f].meta.shape;
    Node grad;
    grad.op = &ops::kFusedConv2DPoolGrad;
    grad.attrs = Attrs(fa).add_int(fs[0]).add_int(fs[1]);
    grad.inputs = {x, slot, p, dp};
    grad.outputs = {g.nodes[filter_grad].outputs[0], g.nodes[bias_sum].outputs[0]};
    gone[pool_grad] = gone[bias_sum] = gone[filter_grad] = true;
    g.nodes[last] = std::move(grad);
    gone[last] = false;
  }
  return remove_nodes(g, gone);
}

int fuse_elementwise(Graph& g) {
  const Readers r(g);
  const size_t nn = g.nodes.size();
  // group[i]: the chain node i belongs to (the index of its root so far), -1: not fusable.
  std::vector<int32_t> group(nn, -1);
  std::vector<std::vector<int32_t>> members(nn);
  auto eligible = [&](const Node& n) {
    if (n.outputs.size() != 1 || fe_opcode(*n.op) < 0) return false;
    const Meta& y = g.values[n.outputs[0]].meta;
    if (!is_float(y.dtype) || y.shape.numel() == 0) return false;
    bool full = false;  // one operand has the result's shape: it names the fused op's shape
    for (int32_t v : n.inputs) {
      const Meta& m = g.values[v].meta;
      full |= m.shape == y.shape;
      if (m.dtype != y.dtype ||
          (m.shape != y.shape && m.shape.numel() != 1 && !fe_is_row(m.shape, y.shape))) {
        return false;
      }
    }
    return full;
  };
  // External inputs of a set of member nodes.
  auto externals = [&](const std::vector<int32_t>& nodes) {
    std::vector<int32_t> ext;
    for (int32_t i : nodes) {
      for (int32_t v : g.nodes[i].inputs) {
        const int32_t p = g.values[v].producer;
        const bool inside = g.values[v].kind == ValueKind::kNode &&
                            std::find(nodes.begin(), nodes.end(), p) != nodes.end();
        if (!inside && std::find(ext.begin(), ext.end(), v) == ext.end()) ext.push_back(v);
      }
    }
    return ext;
  };
  for (size_t i = 0; i < nn; ++i) {
    const Node& n = g.nodes[i];
    if (!eligible(n)) continue;
    std::vector<int32_t> set = {static_cast<int32_t>(i)};
    std::vector<int32_t> joined;
    for (int32_t v : n.inputs) {
      if (g.values[v].kind != ValueKind::kNode || r.only_reader(v) != static_cast<int32_t>(i))
        continue;
      const int32_t root = group[g.values[v].producer];
      if (root < 0 || std::find(joined.begin(), joined.end(), root) != joined.end()) continue;
      if (g.values[v].meta.shape != g.values[n.outputs[0]].meta.shape) continue;
      std::vector<int32_t> trial = set;
      trial.insert(trial.end(), members[root].begin(), members[root].end());
      std::sort(trial.begin(), trial.end());
      if (trial.size() > static_cast<size_t>(kFusedMaxInstructions) ||
          externals(trial).size() > 16 || r.stateful_between(trial.front(), trial.back())) {
        continue;
      }
      set = std::move(trial);
      joined.push_back(root);
    }
    for (int32_t root : joined) members[root].clear();
    for (int32_t m : set) group[m] = static_cast<int32_t>(i);
    members[i] = std::move(set);
  }
  std::vector<bool> gone(nn, false);
  for (size_t root = 0; root < nn; ++root) {
    const std::vector<int32_t>& set = members[root];
    if (set.size() < 2 || group[root] != static_cast<int32_t>(root)) continue;
    const std::vector<int32_t> ext = externals(set);
    // Registers: the external inputs, then one per member node in order.
    std::vector<int32_t> reg_of_value(g.values.size(), -1);
    for (size_t k = 0; k < ext.size(); ++k) reg_of_value[ext[k]] = static_cast<int32_t>(k);
    Attrs prog;
    prog.add_int(static_cast<int64_t>(set.size()));
    for (size_t j = 0; j < set.size(); ++j) {
      const Node& m = g.nodes[set[j]];
      const int64_t op = fe_opcode(*m.op);
      const int64_t a = reg_of_value[m.inputs[0]];
      const int64_t b = m.inputs.size() > 1 ? reg_of_value[m.inputs[1]] : 0;
      prog.add_int(fe_instr(op, a, b));
      reg_of_value[m.outputs[0]] = static_cast<int32_t>(ext.size() + j);
    }
    Node fused;
    fused.op = &ops::kFusedElementwise;
    fused.attrs = prog;
    fused.inputs = ext;
    fused.outputs = g.nodes[root].outputs;
    for (int32_t m : set) gone[m] = true;
    g.nodes[root] = std::move(fused);
    gone[root] = false;
  }
  return remove_nodes(g, gone);
}

int fuse(Graph& g) {
  // Pool gradients first: their epilogue ops would otherwise join elementwise chains; then
  // conv -> pool, whose backward is the fused pool gradient.
  const int removed =
      fuse_matmul_conv(g) + fuse_pool_grad(g) + fuse_conv_pool(g) + fuse_elementwise(g);
  compact(g);
  return removed;
}

}  // namespace kiln::graph
