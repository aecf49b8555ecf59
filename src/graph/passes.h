// Graph passes, run on every traced graph before it is cached. Each keeps the program's
// results (tests compare against the unoptimized graph) and never touches variables: a
// variable is a graph input read at run time, never folded into a constant.
#pragma once

#include "graph/graph.h"

namespace kiln::graph {

struct PassStats {
  int dead_nodes = 0;    // removed: no result depends on them
  int merged_nodes = 0;  // common subexpressions: same op, attrs and inputs as an earlier node
  int folded_nodes = 0;  // computed at trace time: every input a constant
  int fused_nodes = 0;   // removed by fusion (graph/fusion.h), run by Function after optimize
};

// Removes nodes none of the graph's outputs depend on; stateful nodes always stay.
int eliminate_dead_code(Graph& g);
// Merges nodes computing the same op on the same inputs with the same attrs; never stateful
// or random nodes, nor two reads of a tensor with a stateful write to it between them.
int eliminate_common_subexpressions(Graph& g);
// Runs nodes whose inputs are all constants (never variables, never stateful or random nodes,
// never readers of a constant a stateful node writes) and captures their results as
// constants. Results larger than `max_bytes` stay computed at run time.
int fold_constants(Graph& g, size_t max_bytes = size_t{16} << 20);
// Drops values nothing refers to and renumbers the rest in order.
void compact(Graph& g);

// All of the above, in order: fold, merge, dead code, compact.
PassStats optimize(Graph& g);

}  // namespace kiln::graph
