#include "graph/passes.h"

#include <unordered_map>

#include "core/tensor_impl.h"
#include "graph/scoped_recorders.h"

namespace kiln::graph {
namespace {

// Replaces every use of value `from` by `to` (node inputs and graph outputs).
void replace_uses(Graph& g, int32_t from, int32_t to) {
  for (Node& n : g.nodes) {
    for (int32_t& v : n.inputs) v = v == from ? to : v;
  }
  for (int32_t& v : g.outputs) v = v == from ? to : v;
}

}  // namespace

int eliminate_dead_code(Graph& g) {
  std::vector<bool> live(g.values.size(), false);
  for (int32_t v : g.outputs) live[v] = true;
  std::vector<bool> keep(g.nodes.size(), false);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool used = is_stateful(*n.op);  // writes state: kept even when nobody reads its outputs
    for (int32_t v : n.outputs) used |= live[v];
    if (!used) continue;
    keep[i] = true;
    for (int32_t v : n.inputs) live[v] = true;
  }
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (keep[i]) nodes.push_back(std::move(g.nodes[i]));
  }
  const int removed = static_cast<int>(g.nodes.size() - nodes.size());
  g.nodes = std::move(nodes);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int32_t v : g.nodes[i].outputs) g.values[v].producer = static_cast<int32_t>(i);
  }
  return removed;
}

int eliminate_common_subexpressions(Graph& g) {
  // A node is keyed by its op, attrs, inputs and the write version of each input's storage:
  // a stateful node writing a tensor bumps the version of the tensor (and of every view of
  // it, through the root), so reads on either side of a write are never merged.
  std::vector<int32_t> root(g.values.size());
  for (size_t v = 0; v < g.values.size(); ++v) root[v] = static_cast<int32_t>(v);
  // Captured tensors sharing storage (a variable and a view of it made outside the trace)
  // are one root too.
  std::unordered_map<const void*, int32_t> by_storage;
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& val = g.values[v];
    if ((val.kind == ValueKind::kConstant || val.kind == ValueKind::kVariable) &&
        val.captured.defined()) {
      root[v] = by_storage
                    .emplace(static_cast<const void*>(val.captured.impl()->storage),
                             static_cast<int32_t>(v))
                    .first->second;
    }
  }
  for (const Node& n : g.nodes) {
    if (n.op->view && !n.inputs.empty()) {
      for (int32_t v : n.outputs) root[v] = root[n.inputs[0]];
    }
  }
  std::vector<uint32_t> version(g.values.size(), 0);
  struct Key {
    const Node* node;
    std::vector<uint32_t> versions;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      uint64_t h = reinterpret_cast<uintptr_t>(k.node->op) ^ k.node->attrs.hash();
      for (int32_t v : k.node->inputs) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
      for (uint32_t v : k.versions) h = (h ^ v) * 1099511628211ull;
      return static_cast<size_t>(h);
    }
  };
  struct KeyEq {
    bool operator()(const Key& a, const Key& b) const {
      return a.node->op == b.node->op && a.node->attrs == b.node->attrs &&
             a.node->inputs == b.node->inputs && a.versions == b.versions;
    }
  };
  std::unordered_map<Key, const Node*, KeyHash, KeyEq> seen;
  int merged = 0;
  for (Node& n : g.nodes) {
    if (is_stateful(*n.op)) {  // never merged; its write starts a new version of what it writes
      // Input 0 for most; multi-tensor updates write many: treat every input as written.
      for (int32_t v : n.inputs) ++version[root[v]];
      continue;
    }
    Key key{&n, {}};
    for (int32_t v : n.inputs) key.versions.push_back(version[root[v]]);
    auto [it, inserted] = seen.emplace(std::move(key), &n);
    if (inserted) continue;
    for (size_t k = 0; k < n.outputs.size(); ++k)
      replace_uses(g, n.outputs[k], it->second->outputs[k]);
    ++merged;  // n is now dead; dead-code elimination removes it
  }
  // Nodes are visited in order and only later nodes read n's outputs, so each node's inputs
  // are final when it is keyed: one pass finds every merge.
  return merged;
}

int fold_constants(Graph& g, size_t max_bytes) {
  int folded = 0;
  // Fold with no tape and no tracer: these runs are not part of any step.
  ScopedRecorders recorders(nullptr, nullptr, detail::thread_context().trace_scope);
  // A constant some stateful node writes changes at run time: never fold its readers.
  std::vector<bool> written(g.values.size(), false);
  for (const Node& n : g.nodes) {
    if (is_stateful(*n.op)) {
      for (int32_t v : n.inputs) written[v] = true;  // input 0, or every group's (multi updates)
    }
  }
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (is_stateful(*n.op)) continue;
    bool all_const = !n.inputs.empty();
    for (int32_t v : n.inputs) all_const &= g.values[v].kind == ValueKind::kConstant && !written[v];
    if (!all_const) continue;
    size_t bytes = 0;
    for (int32_t v : n.outputs) {
      bytes += g.values[v].meta.shape.numel() * size_of(g.values[v].meta.dtype);
    }
    if (bytes > max_bytes) continue;
    Tensor in[16], out[2];
    for (size_t k = 0; k < n.inputs.size(); ++k) in[k] = g.values[n.inputs[k]].captured;
    run_op(*n.op, std::span<const Tensor>(in, n.inputs.size()), n.attrs,
           std::span<Tensor>(out, n.outputs.size()));
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      Value& v = g.values[n.outputs[k]];
      v.kind = ValueKind::kConstant;
      v.producer = -1;
      // A view of a constant would alias it; constants are never written, so that is fine.
      v.captured = out[k];
    }
    gone[i] = true;
    ++folded;
  }
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!gone[i]) nodes.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(nodes);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int32_t v : g.nodes[i].outputs) g.values[v].producer = static_cast<int32_t>(i);
  }
  return folded;
}

void compact(Graph& g) {
  std::vector<bool> used(g.values.size(), false);
  for (int32_t v : g.inputs) used[v] = true;  // arguments stay, used or not
  for (int32_t v : g.outputs) used[v] = true;
  for (const Node& n : g.nodes) {
    for (int32_t v : n.inputs) used[v] = true;
    for (int32_t v : n.outputs) used[v] = true;
  }
  std::vector<int32_t> remap(g.values.size(), -1);
  std::vector<Value> values;
  for (size_t v = 0; v < g.values.size(); ++v) {
    if (!used[v]) continue;
    remap[v] = static_cast<int32_t>(values.size());
    values.push_back(std::move(g.values[v]));
  }
  g.values = std::move(values);
  for (int32_t& v : g.inputs) v = remap[v];
  for (int32_t& v : g.outputs) v = remap[v];
  for (Node& n : g.nodes) {
    for (int32_t& v : n.inputs) v = remap[v];
    for (int32_t& v : n.outputs) v = remap[v];
  }
}

PassStats optimize(Graph& g) {
  PassStats s;
  s.folded_nodes = fold_constants(g);
  s.merged_nodes = eliminate_common_subexpressions(g);
  s.dead_nodes = eliminate_dead_code(g) - s.merged_nodes;
  compact(g);
  return s;
}

}  // namespace kiln::graph
