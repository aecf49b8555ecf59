// Storage: a refcounted, 64-byte aligned byte buffer. Freed buffers are kept by size class and
// handed out again (training loops allocate the same sizes every step), within limits of bytes
// and buffers; past them the least recently freed buffers go back to the system first.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kiln::detail {

struct Storage {
  std::atomic<int32_t> refs{1};
  void* data = nullptr;
  size_t nbytes = 0;    // what was asked for
  size_t capacity = 0;  // the size class actually allocated
};

// A new storage of at least `nbytes` (uninitialized), refcount 1. The first call reads
// KILN_ALLOCATOR_CACHE_BYTES / KILN_ALLOCATOR_CACHE_BUFFERS (ValueError when malformed).
Storage* storage_new(size_t nbytes);
inline void storage_ref(Storage* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }
void storage_unref(Storage* s);

struct AllocatorStats {
  uint64_t hits = 0, misses = 0;  // storage_new calls served from the cache / from the system
  uint64_t cached_bytes = 0, cached_buffers = 0;
  uint64_t limit_bytes = 0;
  uint64_t limit_buffers = 0;
  uint64_t evictions = 0;  // cached buffers returned to the system to stay within the limits
};
AllocatorStats allocator_stats();
// Returns all cached buffers to the system (counters stay).
void allocator_trim();
// Sets the limits (0 bytes or 0 buffers: keep nothing), evicting at once if needed. Ignored
// (the limits stay 0) in builds without the cache (KILN_NO_ALLOC_CACHE: sanitizers).
void set_allocator_limits(uint64_t bytes, uint64_t buffers);
bool allocator_cache_compiled_in();

}  // namespace kiln::detail
