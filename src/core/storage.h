// Storage: a refcounted, 64-byte aligned byte buffer. Freed buffers are kept by size class and
// handed out again (training loops allocate the same sizes every step), up to a byte bound.
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

// A new storage of at least `nbytes` (uninitialized), refcount 1.
Storage* storage_new(size_t nbytes);
inline void storage_ref(Storage* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }
void storage_unref(Storage* s);

struct AllocatorStats {
  uint64_t hits = 0, misses = 0;  // storage_new calls served from the cache / from the system
  uint64_t cached_bytes = 0, cached_buffers = 0;
  uint64_t limit_bytes = 0;
};
AllocatorStats allocator_stats();
// Returns all cached buffers to the system.
void allocator_trim();

}  // namespace kiln::detail
