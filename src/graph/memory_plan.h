// Memory planning: one arena for every intermediate of a graph, offsets assigned by liveness
// so values whose lifetimes do not overlap share bytes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "graph/graph.h"

namespace kiln::graph {

struct MemoryPlan {
  static constexpr size_t kAlign = 64;
  std::vector<int64_t> offset;  // per value: byte offset in the arena; -1 when not in it
  std::vector<int32_t> root;    // per value: the value whose bytes it shares (views), or itself
  size_t arena_bytes = 0;       // a multiple of kAlign
  size_t value_bytes = 0;       // what the arena values would take without sharing
};

// Places every value a kernel node writes in the arena, except graph outputs (the executor
// writes those into the caller's tensors). `metas` has one entry per value (the shapes of the
// call being planned, which may differ from the traced ones when dims are unknown).
//
// A value is live from the node writing it to its last reader; outputs of view ops
// (OpDef::view: reshape, rows) share their input's bytes and extend its lifetime to their own
// last reader, and a value an output is a view of lives to the end. Inputs an op reads for
// their shape only (OpDef::shape_only_inputs) do not count as readers. Two values share bytes only
// if their lifetimes (inclusive node ranges) are disjoint, so a kernel never writes over its own
// inputs. Placement is greedy by size, best fit among the gaps, offsets aligned to kAlign.
MemoryPlan plan_memory(const Graph& g, std::span<const Meta> metas);

}  // namespace kiln::graph
