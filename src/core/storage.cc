#include "core/storage.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace kiln::detail {
namespace {

constexpr size_t kAlign = 64;
#ifdef KILN_NO_ALLOC_CACHE
constexpr uint64_t kCacheLimit = 0;  // sanitizer builds: every buffer goes back to malloc
#else
constexpr uint64_t kCacheLimit = uint64_t{512} << 20;  // bytes kept for reuse at most
#endif

// Small sizes round to powers of two, larger ones to 4 KiB pages: few classes, little waste.
size_t size_class(size_t n) {
  if (n <= kAlign) return kAlign;
  if (n <= 4096) {
    size_t c = kAlign;
    while (c < n) c <<= 1;
    return c;
  }
  return (n + 4095) & ~size_t{4095};
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_by_class;
  std::vector<Storage*> free_headers;
  AllocatorStats stats{0, 0, 0, 0, kCacheLimit};
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: storages may be freed during exit
  return *c;
}

}  // namespace

Storage* storage_new(size_t nbytes) {
  size_t cap = size_class(nbytes);
  Cache& c = cache();
  void* data = nullptr;
  Storage* s = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_by_class.find(cap);
    if (it != c.free_by_class.end() && !it->second.empty()) {
      data = it->second.back();
      it->second.pop_back();
      c.stats.cached_bytes -= cap;
      c.stats.cached_buffers -= 1;
      c.stats.hits++;
    } else {
      c.stats.misses++;
    }
    if (!c.free_headers.empty()) {
      s = c.free_headers.back();
      c.free_headers.pop_back();
    }
  }
  if (!data) {
    data = std::aligned_alloc(kAlign, cap);
    if (!data) throw std::bad_alloc();
  }
  if (!s) s = new Storage;
  s->refs.store(1, std::memory_order_relaxed);
  s->data = data;
  s->nbytes = nbytes;
  s->capacity = cap;
  return s;
}

void storage_unref(Storage* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.stats.cached_bytes + s->capacity <= kCacheLimit) {
    c.free_by_class[s->capacity].push_back(s->data);
    c.stats.cached_bytes += s->capacity;
    c.stats.cached_buffers += 1;
  } else {
    std::free(s->data);
  }
  s->data = nullptr;
  if (kCacheLimit > 0 && c.free_headers.size() < 4096) {
    c.free_headers.push_back(s);
  } else {
    delete s;
  }
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void allocator_trim() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [cls, v] : c.free_by_class) {
    for (void* p : v) std::free(p);
    v.clear();
  }
  c.stats.cached_bytes = 0;
  c.stats.cached_buffers = 0;
}

}  // namespace kiln::detail
