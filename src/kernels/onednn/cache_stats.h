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
  size_t capacity = 0;     // the entry limit
  uint64_t bytes = 0;      // memory the entries own (Entry::bytes)
  uint64_t max_bytes = 0;  // the byte limit (0: none)
};

// A snapshot of the counters (thread-safe).
PrimitiveCacheStats primitive_cache_stats();

// Bounds the cache to `capacity` entries (>= 1), evicting the oldest if needed.
void set_primitive_cache_capacity(size_t capacity);

// Bounds the bytes the entries own (0: no bound), evicting the oldest if needed.
void set_primitive_cache_max_bytes(uint64_t max_bytes);

// Drops every entry and zeroes the counters.
void clear_primitive_cache();
// Drops every entry; the counters stay (kiln::clear_caches()).
void drop_primitive_cache_entries();

}  // namespace kiln::onednn
