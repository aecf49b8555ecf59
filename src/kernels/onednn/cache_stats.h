// Counters of the oneDNN primitive cache (src/kernels/onednn/primitive_cache.cc), readable
// without pulling in oneDNN's headers (the cache report includes only this file).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::onednn {

struct PrimitiveCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;     // each miss created a primitive (and its memory objects)
  uint64_t evictions = 0;  // least recently used entries dropped to stay within capacity
  size_t size = 0;         // entries held now
  size_t capacity = 0;
};

// A snapshot of the counters (thread-safe).
PrimitiveCacheStats primitive_cache_stats();

// Bounds the cache to `capacity` entries (>= 1), evicting the oldest if needed.
void set_primitive_cache_capacity(size_t capacity);

// Drops every entry and zeroes the counters.
void clear_primitive_cache();

}  // namespace kiln::onednn
