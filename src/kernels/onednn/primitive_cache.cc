#include "kernels/onednn/primitive_cache.h"

#include <cstring>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/env_limit.h"
#include "kiln/error.h"

namespace kiln::onednn {

const dnnl::engine& engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

const dnnl::stream& stream() {
  thread_local const dnnl::stream s(engine());
  return s;
}

bool Key::operator==(const Key& o) const {
  return n_ == o.n_ && std::memcmp(v_, o.v_, sizeof(int64_t) * n_) == 0;
}

uint64_t Key::hash() const {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(n_);
  for (int k = 0; k < n_; ++k) h = (h ^ static_cast<uint64_t>(v_[k])) * 1099511628211ull;
  return h;
}

namespace {

struct KeyHash {
  size_t operator()(const Key& k) const { return k.hash(); }
};

// Most recently used at the front of `order`; `index` maps keys to list positions.
struct Cache {
  std::mutex mu;
  using Item = std::pair<Key, std::shared_ptr<Entry>>;
  std::list<Item> order;
  std::unordered_map<Key, std::list<Item>::iterator, KeyHash> index;
  size_t capacity = detail::env_limit("KILN_PRIMITIVE_CACHE_ENTRIES", 512, false);
  uint64_t max_bytes = detail::env_limit("KILN_PRIMITIVE_CACHE_BYTES", uint64_t{1} << 30, true);
  uint64_t bytes = 0;
  uint64_t hits = 0, misses = 0, evictions = 0;

  Cache() {
    if (capacity < 1) throw ValueError("KILN_PRIMITIVE_CACHE_ENTRIES='0': must be >= 1");
  }

  void drop_back() {
    bytes -= order.back().second->bytes;
    index.erase(order.back().first);
    order.pop_back();
  }
  // Never evicts the newest entry: a kernel is about to run it.
  void trim() {
    while (order.size() > 1 && (order.size() > capacity || (max_bytes && bytes > max_bytes))) {
      drop_back();
      ++evictions;
    }
  }
};

Cache& cache() {
  // Never destroyed: entries may outlive static destruction order. A malformed environment
  // variable throws here, from the first kernel call, naming the variable.
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

std::shared_ptr<Entry> cache_find(const Key& key) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.index.find(key);
  if (it == c.index.end()) {
    ++c.misses;
    return nullptr;
  }
  ++c.hits;
  if (it->second != c.order.begin()) c.order.splice(c.order.begin(), c.order, it->second);
  return it->second->second;
}

void cache_insert(const Key& key, std::shared_ptr<Entry> entry) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.index.find(key);
  if (it != c.index.end()) {  // another thread created it meanwhile: keep the newer one
    c.bytes += entry->bytes;
    c.bytes -= it->second->second->bytes;
    it->second->second = std::move(entry);
    c.order.splice(c.order.begin(), c.order, it->second);
    return;
  }
  c.bytes += entry->bytes;
  c.order.emplace_front(key, std::move(entry));
  c.index.emplace(key, c.order.begin());
  c.trim();
}

PrimitiveCacheStats primitive_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.hits, c.misses, c.evictions, c.order.size(), c.capacity, c.bytes, c.max_bytes};
}

void set_primitive_cache_capacity(size_t capacity) {
  if (capacity < 1) throw ValueError("set_primitive_cache_capacity: capacity must be >= 1");
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.capacity = capacity;
  c.trim();
}

void set_primitive_cache_max_bytes(uint64_t max_bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.max_bytes = max_bytes;
  c.trim();
}

void drop_primitive_cache_entries() {
  Cache& c = cache();
  std::list<Cache::Item> dead;  // destroyed unlocked
  std::lock_guard<std::mutex> lock(c.mu);
  c.index.clear();
  dead.swap(c.order);
  c.bytes = 0;
}

void clear_primitive_cache() {
  drop_primitive_cache_entries();
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.hits = c.misses = c.evictions = 0;
}

void execute(const dnnl::primitive& p, const ExecArgs& a) {
  dnnl_status_t st = dnnl_primitive_execute(p.get(), stream().get(), a.n, a.args);
  if (st == dnnl_success) st = dnnl_stream_wait(stream().get());
  if (st != dnnl_success) {
    throw Error("oneDNN: primitive execution failed (status " +
                std::to_string(static_cast<int>(st)) + ")");
  }
}

}  // namespace kiln::onednn
