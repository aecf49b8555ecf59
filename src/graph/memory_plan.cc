#include "graph/memory_plan.h"

#include <algorithm>

namespace kiln::graph {
namespace {

size_t align_up(size_t n) {
  return (n + MemoryPlan::kAlign - 1) / MemoryPlan::kAlign * MemoryPlan::kAlign;
}

}  // namespace

MemoryPlan plan_memory(const Graph& g, std::span<const Meta> metas) {
  const size_t nv = g.values.size();
  const int32_t end = static_cast<int32_t>(g.nodes.size());
  MemoryPlan p;
  p.offset.assign(nv, -1);
  p.root.resize(nv);
  for (size_t v = 0; v < nv; ++v) p.root[v] = static_cast<int32_t>(v);
  std::vector<bool> in_arena(nv, false), is_output(nv, false);
  for (int32_t v : g.outputs) is_output[v] = true;
  std::vector<int32_t> first(nv, -1), last(nv, -1);
  for (int32_t i = 0; i < end; ++i) {
    const Node& n = g.nodes[i];
    const bool view = n.op->view != nullptr && !n.inputs.empty();
    for (int32_t v : n.outputs) {
      if (view) {
        p.root[v] = p.root[n.inputs[0]];
      } else if (!is_output[v]) {
        in_arena[v] = true;
        first[v] = last[v] = i;
      }
    }
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      // An input read for its shape only (a gradient op's "like") needs no live bytes.
      if (reads_shape_only(*n.op, static_cast<int>(k))) continue;
      const int32_t r = p.root[n.inputs[k]];
      last[r] = std::max(last[r], i);
    }
  }
  for (int32_t v : g.outputs) last[p.root[v]] = end;  // copied out after the last node
  struct Item {
    int32_t v;
    size_t bytes;
  };
  std::vector<Item> items;
  for (size_t v = 0; v < nv; ++v) {
    if (!in_arena[v]) continue;
    const size_t bytes = align_up(metas[v].shape.numel() * size_of(metas[v].dtype));
    items.push_back({static_cast<int32_t>(v), bytes});
    p.value_bytes += bytes;
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.bytes > b.bytes; });
  std::vector<Item> placed;
  std::vector<std::pair<size_t, size_t>> busy;  // [offset, offset + bytes) of overlapping values
  for (const Item& it : items) {
    busy.clear();
    for (const Item& q : placed) {
      if (first[q.v] <= last[it.v] && first[it.v] <= last[q.v]) {
        busy.push_back({static_cast<size_t>(p.offset[q.v]), p.offset[q.v] + q.bytes});
      }
    }
    std::sort(busy.begin(), busy.end());
    // Best fit: the smallest gap that holds the value; else after everything that overlaps.
    size_t at = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    for (const auto& [lo, hi] : busy) {
      if (lo >= at && lo - at >= it.bytes && lo - at < best_gap) best = at, best_gap = lo - at;
      at = std::max(at, hi);
    }
    if (best == SIZE_MAX) best = at;
    p.offset[it.v] = static_cast<int64_t>(best);
    p.arena_bytes = std::max(p.arena_bytes, best + it.bytes);
    placed.push_back(it);
  }
  return p;
}

}  // namespace kiln::graph
