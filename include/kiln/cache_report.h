// kiln::cache_report(): every cache and every piece of retained state in the process, in one
// snapshot, as a table for people (to_text) and JSON for tools (to_json, top-level keys
// "variables", "functions", "folded_constants", "instances", "kernels", "arenas", "allocator").
//
// Sources: variables from every live VariableStore and every live layer's weights (a variable
// is "shared" when more than one layer uses it directly); every live Function's concrete-function
// cache and its folded constants; every per-instance cache (kiln/cache.h); the oneDNN primitive
// cache; executor arenas (registered by the graph executor); the allocator's free lists.
//
// Thread-safe; a snapshot taken while another thread builds a layer may miss that layer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kiln/cache.h"
#include "kiln/function.h"

namespace kiln {

// One executor arena (a graph's planned intermediate buffers).
struct ArenaInfo {
  std::string owner;   // e.g. "function 'classifier' (float32 [64, 784], training=false)"
  uint64_t bytes = 0;  // held now
  uint64_t peak_bytes = 0;
  uint64_t buffers = 0;
};

struct VariableInfo {
  std::string name;
  std::string owner;  // the scope that created it: the name up to its last '/'
  std::string shape;  // "[3, 3, 1, 32]"
  std::string dtype;
  uint64_t bytes = 0;
  uint64_t version = 0;
  bool trainable = true;
  std::vector<std::string> layers;  // layers that use it directly (shared: more than one)
};

struct VariablesSection {
  uint64_t count = 0, bytes = 0, shared = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_owner;  // owner -> (count, bytes)
  std::vector<VariableInfo> list;
};

struct FunctionSection {
  std::string name;
  FunctionCacheInfo info;
  uint64_t max_entries = 0;
};

// The captured constants of one cached concrete function (constant folding's results). Graph
// functions never fold variables; a frozen model's (kiln::freeze) constants are copies of
// variables, listed with the version each was copied at.
struct FoldedConstantsSection {
  std::string function;
  std::string signature;
  uint64_t constants = 0;
  uint64_t bytes = 0;
  std::map<std::string, uint64_t> variable_versions;
};

struct KernelsSection {
  uint64_t entries = 0, bytes = 0, hits = 0, misses = 0, evictions = 0;
  CacheLimits limits;
};

struct AllocatorSection {
  uint64_t hits = 0, misses = 0, evictions = 0;
  uint64_t cached_bytes = 0, cached_buffers = 0;
  CacheLimits limits;  // max_entries: buffers
  bool enabled = true;
};

struct CacheReport {
  VariablesSection variables;
  std::vector<FunctionSection> functions;
  std::vector<FoldedConstantsSection> folded_constants;
  std::vector<CacheStats> instances;
  KernelsSection kernels;
  std::vector<ArenaInfo> arenas;
  AllocatorSection allocator;

  // Bytes held by caches (per-instance values, primitives, folded constants, arenas, cached
  // allocator buffers): what a cache limit bounds. Variables are state, not counted.
  uint64_t cache_bytes() const;
  std::string to_text() const;
  std::string to_json(int indent = 2) const;
};

CacheReport cache_report();

}  // namespace kiln
