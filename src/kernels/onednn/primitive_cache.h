// oneDNN plumbing shared by every oneDNN-backed kernel: the CPU engine and stream, a bounded LRU
// cache of primitives, and a scoped OpenMP thread count. Internal: include only from
// src/kernels/onednn/ and src/ops/*.cc (public headers stay free of oneDNN).
//
// A kernel builds a Key from everything its primitive depends on (kind, shapes, strides,
// transposes, dtype, thread count), then get_or_create<MyEntry>(key, make) returns the cached
// entry, creating it on a miss. An entry holds the primitive and the dnnl::memory objects bound
// to it; each call re-points those with set_data_handle and executes, holding the entry's mutex
// so two threads never share the memory objects at once.
#pragma once

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <memory>
#include <mutex>

#include "kernels/onednn/cache_stats.h"
#include "kiln/error.h"

namespace kiln::onednn {

// The process-wide CPU engine.
const dnnl::engine& engine();
// This thread's stream on engine() (in-order; CPU execution is synchronous).
const dnnl::stream& stream();

// Primitive kinds, the first word of every key.
enum class Kind : int64_t {
  kMatmul = 1,
  kConvForward,
  kConvBackwardData,
  kConvBackwardWeights,
  kMatmulPostOps,       // ops/fused.cc: matmul with bias and an eltwise post-op
  kConvForwardPostOps,  // ops/fused.cc: conv forward with bias and an eltwise post-op
  kQuantizedMatmul,     // ops/quantized.cc: u8 x s8 -> s32 matmul
  kQuantizedConv,       // ops/quantized.cc: u8 x s8 -> s32 conv forward
};

// A cache key: a kind plus up to kMax integers. Fixed size, so building one never allocates.
class Key {
 public:
  static constexpr int kMax = 48;
  explicit Key(Kind kind) { add(static_cast<int64_t>(kind)); }
  // Throws StateError past kMax words (a kernel's key is a fixed, much shorter list).
  Key& add(int64_t v) {
    if (n_ == kMax) throw StateError("onednn::Key: more than 48 words");
    v_[n_++] = v;
    return *this;
  }
  bool operator==(const Key& o) const;
  uint64_t hash() const;

 private:
  int64_t v_[kMax] = {};
  int n_ = 0;
};

// Base of every cached entry; derived entries add the primitive and its memory objects.
struct Entry {
  virtual ~Entry() = default;
  std::mutex mu;  // held while the entry's memory objects are re-pointed and executed
  // Memory the entry owns (set by its creator before cache_insert), for the cache's byte limit.
  size_t bytes = 0;
};

// The entry for `key`, or null (counts a hit or a miss).
std::shared_ptr<Entry> cache_find(const Key& key);
// Stores `entry` under `key` as most recently used, evicting the least recently used until the
// entry and byte limits hold (KILN_PRIMITIVE_CACHE_ENTRIES / _BYTES, set_primitive_cache_limits).
void cache_insert(const Key& key, std::shared_ptr<Entry> entry);

// The entry for `key`; on a miss calls make() (returning std::shared_ptr<E>) and caches it.
template <typename E, typename Make>
std::shared_ptr<E> get_or_create(const Key& key, Make&& make) {
  if (std::shared_ptr<Entry> e = cache_find(key)) return std::static_pointer_cast<E>(e);
  std::shared_ptr<E> e = make();
  cache_insert(key, e);
  return e;
}

// Arguments of one execution, kept in an entry so a call builds no map.
struct ExecArgs {
  static constexpr int kMax = 8;
  dnnl_exec_arg_t args[kMax];
  int n = 0;
  void add(int arg, const dnnl::memory& m) { args[n++] = {arg, m.get()}; }
};

// Runs `p` with `a` on this thread's stream and waits for it. Throws kiln::Error on failure.
void execute(const dnnl::primitive& p, const ExecArgs& a);

// Sets the OpenMP thread count (oneDNN's too) for the scope and restores it afterwards.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : saved_(omp_get_max_threads()) {
    if (n != saved_) omp_set_num_threads(n);
  }
  ~ScopedThreads() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int saved_;
};

}  // namespace kiln::onednn
