// Per-instance caching and the limits of every cache kiln keeps (kiln/cache_report.h reports
// them all).
//
//   class Layerish {
//    public:
//     std::string text() const {
//       static kiln::CachedPerInstance<std::string> cache("layerish.text");
//       return cache.get(token_, [&] { return render(); }, version_);   // a copy of the value
//     }
//    private:
//     kiln::InstanceToken token_;   // the object's identity for every cache
//   };
//
// Design. An object opts in by holding an InstanceToken. The token's identity is a 64-bit id
// drawn lazily from a process-wide counter that never repeats, so a new object at the address
// of a destroyed one has a new id and can never see the old entry. Entries live in the cache
// (outside the object), keyed by that id; the token's destructor tells every live cache to drop
// the id's entries, so an entry dies with its object (no leak, no weak-pointer scan). A token
// that was never used costs one load in its destructor.
//
// Every result is cached, empty ones too: an entry is absent, computing or ready, never a null
// test on the value. The first call for an object computes; concurrent first calls for the same
// object wait for that one computation (exactly once); calls for other objects neither wait for
// it nor block it (the cache lock is never held while computing). A compute that throws caches
// nothing, the waiters retry, and the exception reaches its caller. A compute that calls get()
// for the same object and cache on the same thread is a StateError (it would wait for itself).
//
// Versions: get(obj, compute, version) recomputes a ready entry whose version differs (a
// Variable's version(): each assignment makes the cached value stale). Entries are bounded by
// entries and bytes (bytes: a value's cache_bytes(), see below), least recently used first out.
//
// Limits from the environment (read once, at first use; a bad value is a ValueError naming the
// variable), and from the API:
//   per-instance caches, each: KILN_INSTANCE_CACHE_ENTRIES (4096), KILN_INSTANCE_CACHE_BYTES (256M)
//   oneDNN primitives: KILN_PRIMITIVE_CACHE_ENTRIES (512), KILN_PRIMITIVE_CACHE_BYTES (1G)
//   allocator free lists: KILN_ALLOCATOR_CACHE_BUFFERS (65536), KILN_ALLOCATOR_CACHE_BYTES (512M)
//   every Function: KILN_FUNCTION_CACHE_ENTRIES caps FunctionOptions::max_entries (no cap)
// Byte values take an optional K, M or G suffix (powers of 1024).
//
// Thread safety: every function here is thread-safe.
#pragma once

#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kiln/instance_token.h"

namespace kiln {

// Limits of one cache; 0 means no limit on that axis.
struct CacheLimits {
  uint64_t max_entries = 0;
  uint64_t max_bytes = 0;
};

// Counters of one cache (a snapshot).
struct CacheStats {
  std::string name;
  uint64_t hits = 0;
  uint64_t misses = 0;              // first computations (also after eviction or invalidation)
  uint64_t version_recomputes = 0;  // ready entries recomputed because their version changed
  uint64_t evictions = 0;           // dropped to stay within the limits
  uint64_t invalidations = 0;       // dropped by invalidate() or clear()
  uint64_t expirations = 0;         // dropped because their object was destroyed
  uint64_t entries = 0;             // ready entries now
  uint64_t bytes = 0;               // over ready entries, as their values report
  CacheLimits limits;
};

namespace detail {

// The bytes a value reports: v.cache_bytes(), that of a shared_ptr's pointee, a string's or
// vector's capacity, else 0.
template <typename V>
uint64_t value_bytes(const V& v) {
  if constexpr (requires {
                  { v.cache_bytes() } -> std::convertible_to<uint64_t>;
                }) {
    return v.cache_bytes();
  } else if constexpr (requires {
                         { v->cache_bytes() } -> std::convertible_to<uint64_t>;
                       }) {
    return v ? v->cache_bytes() : 0;
  } else if constexpr (requires {
                         v.capacity();
                         typename V::value_type;
                       }) {
    return v.capacity() * sizeof(typename V::value_type);  // strings and vectors (not deep)
  } else {
    return 0;
  }
}

// The type-erased core of CachedPerInstance (src/cache/instance_cache.cc).
class InstanceCacheCore {
 public:
  struct Box {
    virtual ~Box() = default;
  };
  using Copy = void (*)(const Box& box, void* out);
  // Makes the value: returns a new Box (owned by the caller until stored) and sets *bytes.
  using Make = Box* (*)(void* ctx, uint64_t* bytes);

  // Limits: `limits`, or when `use_default` the process default (environment or
  // set_instance_cache_limits). Registers with the process-wide registry.
  InstanceCacheCore(std::string name, CacheLimits limits, bool use_default);
  ~InstanceCacheCore();
  InstanceCacheCore(const InstanceCacheCore&) = delete;
  InstanceCacheCore& operator=(const InstanceCacheCore&) = delete;

  // Copies the ready entry of (id, version) into `out`, computing it first if needed (see the
  // file comment for the waiting rules).
  void get(uint64_t id, uint64_t version, Make make, void* ctx, Copy copy, void* out);
  // Whether a ready entry for (id, version) exists; copies it into out then (a hit).
  bool find(uint64_t id, uint64_t version, Copy copy, void* out);

  void invalidate(uint64_t id);
  void clear();
  void set_limits(CacheLimits limits);
  // As above, appending the dropped values to `dead` for the caller to delete once it holds no
  // lock (a value may own objects whose destructors reach the registry).
  void clear(std::vector<Box*>& dead);
  void set_limits(CacheLimits limits, std::vector<Box*>& dead);
  CacheStats stats() const;
  // Bytes of the ready entry of `id`, or -1 when there is none (for cache_info()).
  int64_t entry_bytes(uint64_t id) const;
  // Drops `id`'s entry; its Box is appended to `dead` (deleted by the caller, unlocked).
  void expire(uint64_t id, std::vector<Box*>& dead);

 private:
  struct Slot;
  void unlink(Slot* s);
  void push_front(Slot* s);
  void trim(std::vector<Box*>& dead);
  // Removes a ready slot (true), or marks a computing one to be discarded when done (false).
  bool drop(std::unordered_map<uint64_t, Slot*>::iterator it, std::vector<Box*>& dead);

  const std::string name_;
  mutable std::mutex mu_;
  std::condition_variable done_;  // an entry finished computing (or failed)
  std::unordered_map<uint64_t, Slot*> slots_;
  Slot* head_ = nullptr;  // most recently used ready entry
  Slot* tail_ = nullptr;
  CacheStats stats_;
};

}  // namespace detail

// Memoizes one value of type V (default-constructible and copyable: get() returns a copy, so
// a large value is best held as a shared_ptr<const T>) per live object; see the file comment.
template <typename V>
class CachedPerInstance {
 public:
  // `name` labels the cache in cache_report(). Default limits: the process default.
  explicit CachedPerInstance(std::string name) : core_(std::move(name), {}, true) {}
  CachedPerInstance(std::string name, CacheLimits limits) : core_(std::move(name), limits, false) {}

  // The value for `obj` at `version`: cached, or compute() (returning V) run once.
  template <typename F>
  V get(const InstanceToken& obj, F&& compute, uint64_t version = 0) {
    V out;
    const uint64_t id = obj.id();
    if (core_.find(id, version, &copy, &out)) return out;
    core_.get(id, version, &make<F>, &compute, &copy, &out);
    return out;
  }
  // The cached value if ready at `version` (a hit), else false and nothing computed.
  bool peek(const InstanceToken& obj, uint64_t version, V& out) {
    return obj.used() && core_.find(obj.id(), version, &copy, &out);
  }

  void invalidate(const InstanceToken& obj) {
    if (obj.used()) core_.invalidate(obj.id());
  }
  void clear() { core_.clear(); }
  // Evicts least recently used entries at once if the new limits need it.
  void set_limits(CacheLimits limits) { core_.set_limits(limits); }
  CacheStats stats() const { return core_.stats(); }

 private:
  struct Box : detail::InstanceCacheCore::Box {
    explicit Box(V v) : value(std::move(v)) {}
    V value;
  };
  static void copy(const detail::InstanceCacheCore::Box& b, void* out) {
    *static_cast<V*>(out) = static_cast<const Box&>(b).value;
  }
  template <typename F>
  static detail::InstanceCacheCore::Box* make(void* ctx, uint64_t* bytes) {
    auto* box = new Box((*static_cast<std::remove_reference_t<F>*>(ctx))());
    *bytes = detail::value_bytes(box->value);
    return box;
  }

  detail::InstanceCacheCore core_;
};

// kiln::cached_per_instance: the public, documented name of CachedPerInstance, and the answer to
// TensorFlow's private `layer_utils.cached_per_instance` (which vanished and broke its callers):
// one value per live object, empty results cached too, computed once under races, recomputed
// when the version changes, dropped when the object dies. The class above is the same type.
//
//   static kiln::cached_per_instance<std::string> cache("layerish.text");
//   std::string s = cache.get(token_, [&] { return render(); }, version_);
template <typename V>
using cached_per_instance = CachedPerInstance<V>;

// Sets the limits of every per-instance cache, and the default of those created later.
// ValueError when max_entries is 0 (a cache of nothing would recompute every call).
void set_instance_cache_limits(CacheLimits limits);
CacheLimits instance_cache_limits();
// The oneDNN primitive cache: entries (>= 1) and bytes its primitives own (0: unlimited).
void set_primitive_cache_limits(CacheLimits limits);
CacheLimits primitive_cache_limits();
// The allocator's free lists: buffers and bytes kept for reuse (0 and 0: keep nothing).
void set_allocator_cache_limits(CacheLimits limits);
CacheLimits allocator_cache_limits();
// Whether this build keeps freed buffers at all (sanitizer builds hand them back to malloc).
bool allocator_cache_enabled();

// Whether conv2d caches a variable's filter in oneDNN's layout per version (default on); off,
// every forward and backward-input call reorders the filter again (for measurements).
void set_conv_filter_cache_enabled(bool on);

// Empties every cache: per-instance caches, every Function's concrete functions, the oneDNN
// primitives and the allocator's free lists. Counters stay (they count the process's life).
// Variables are state, not cache: they stay.
void clear_caches();

}  // namespace kiln
