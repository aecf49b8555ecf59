#include "core/storage.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/adopted_storage.h"
#include "core/env_limit.h"

namespace kiln::detail {
namespace {

constexpr size_t kAlign = 64;
#ifdef KILN_NO_ALLOC_CACHE
constexpr bool kCacheCompiledIn = false;  // sanitizer builds: every buffer goes back to malloc
#else
constexpr bool kCacheCompiledIn = true;
#endif
constexpr uint64_t kDefaultBytes = uint64_t{512} << 20;
constexpr uint64_t kDefaultBuffers = 65536;

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

// A cached buffer's links live in the buffer itself (every class is >= 64 bytes), so caching
// and reusing allocate nothing. Two lists: all cached buffers by recency of freeing (evict from
// the old end), and per size class (reuse the newest: warm in cache).
struct FreeNode {
  FreeNode *lru_prev, *lru_next;
  FreeNode *cls_prev, *cls_next;
  size_t cap;
};
static_assert(sizeof(FreeNode) <= kAlign);

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, FreeNode*> class_head;  // newest buffer of each class, or null
  FreeNode* lru_head = nullptr;                      // newest
  FreeNode* lru_tail = nullptr;                      // oldest
  std::vector<Storage*> free_headers;
  AllocatorStats stats;

  Cache() {
    if (kCacheCompiledIn) {
      stats.limit_bytes = env_limit("KILN_ALLOCATOR_CACHE_BYTES", kDefaultBytes, true);
      stats.limit_buffers = env_limit("KILN_ALLOCATOR_CACHE_BUFFERS", kDefaultBuffers, false);
    }
  }

  // `head` is class_head's slot for n->cap when the caller has it (saves a look-up).
  void unlink(FreeNode* n, FreeNode** head = nullptr) {
    (n->lru_prev ? n->lru_prev->lru_next : lru_head) = n->lru_next;
    (n->lru_next ? n->lru_next->lru_prev : lru_tail) = n->lru_prev;
    if (n->cls_prev) {
      n->cls_prev->cls_next = n->cls_next;
    } else {
      (head ? *head : class_head[n->cap]) = n->cls_next;  // an emptied class keeps its slot
    }
    if (n->cls_next) n->cls_next->cls_prev = n->cls_prev;
    stats.cached_bytes -= n->cap;
    stats.cached_buffers -= 1;
  }

  void push(void* data, size_t cap) {
    auto* n = static_cast<FreeNode*>(data);
    n->cap = cap;
    n->lru_prev = nullptr;
    n->lru_next = lru_head;
    (lru_head ? lru_head->lru_prev : lru_tail) = n;
    lru_head = n;
    FreeNode*& head = class_head[cap];
    n->cls_prev = nullptr;
    n->cls_next = head;
    if (head) head->cls_prev = n;
    head = n;
    stats.cached_bytes += cap;
    stats.cached_buffers += 1;
  }

  void trim() {
    while (lru_tail &&
           (stats.cached_bytes > stats.limit_bytes || stats.cached_buffers > stats.limit_buffers)) {
      FreeNode* n = lru_tail;
      unlink(n);
      std::free(n);
      stats.evictions += 1;
    }
  }
};

// What storage_adopt makes: the callback lives beside the header, so owned storages (the hot
// path) carry nothing extra.
struct AdoptedStorage : Storage {
  StorageRelease release = nullptr;
  void* context = nullptr;
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
    auto it = c.class_head.find(cap);
    if (it != c.class_head.end() && it->second) {
      FreeNode* n = it->second;
      c.unlink(n, &it->second);
      data = n;
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

Storage* storage_adopt(void* data, size_t nbytes, StorageRelease release, void* context) {
  auto* s = new AdoptedStorage;
  s->data = data;
  s->nbytes = nbytes;
  s->capacity = 0;
  s->release = release;
  s->context = context;
  return s;
}

void storage_unref(Storage* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (storage_is_adopted(s)) {
    // Never cached, and outside the cache's lock: the callback may block (a Python owner
    // takes the GIL) or free kiln storage itself.
    auto* adopted = static_cast<AdoptedStorage*>(s);
    adopted->release(adopted->context);
    delete adopted;
    return;
  }
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (s->capacity <= c.stats.limit_bytes && c.stats.limit_buffers > 0) {
    c.push(s->data, s->capacity);
    c.trim();  // the oldest go first, never the buffer just freed (it fits alone)
  } else {
    std::free(s->data);
  }
  s->data = nullptr;
  if (kCacheCompiledIn && c.free_headers.size() < 4096) {
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
  while (c.lru_tail) {
    FreeNode* n = c.lru_tail;
    c.unlink(n);
    std::free(n);
  }
}

void set_allocator_limits(uint64_t bytes, uint64_t buffers) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!kCacheCompiledIn) return;
  c.stats.limit_bytes = bytes;
  c.stats.limit_buffers = buffers;
  c.trim();
}

bool allocator_cache_compiled_in() { return kCacheCompiledIn; }

}  // namespace kiln::detail
