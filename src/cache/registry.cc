// The registry: one lock per kind of thing registered, so that a report reading Functions never
// waits on the lock an expiring tensor takes (a trace holds its Function's lock and may free
// cached tensors).
#include "cache/registry.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

#include "kiln/cache.h"

namespace kiln {
namespace cache {
namespace {

struct Callbacks {
  std::function<FunctionReport()> report;
  std::function<ArenaInfo()> arena;
  std::function<void()> clear;
};

struct Registry {
  // Values are deleted after this lock is released (a value may own tokens, whose expiry takes
  // it); recursive all the same, so a value's destructor run by a caller holding it is safe.
  std::recursive_mutex caches_mu;
  std::vector<detail::InstanceCacheCore*> caches;
  std::mutex mu;  // functions and arenas
  std::map<uint64_t, Callbacks> functions, arenas;
  std::mutex stores_mu;
  std::vector<const VariableStore*> stores;
  std::mutex layers_mu;
  std::vector<const Layer*> layers;
  std::atomic<uint64_t> next{1};
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: objects unregister during exit
  return *r;
}

}  // namespace

Registration& Registration::operator=(Registration&& o) noexcept {
  if (this != &o) {
    Registration dead(id_);
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}

Registration::~Registration() {
  if (!id_) return;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!r.functions.erase(id_)) r.arenas.erase(id_);
}

void register_instance_cache(detail::InstanceCacheCore* c) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.caches_mu);
  r.caches.push_back(c);
}

void unregister_instance_cache(detail::InstanceCacheCore* c) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.caches_mu);
  r.caches.erase(std::remove(r.caches.begin(), r.caches.end(), c), r.caches.end());
}

void for_each_instance_cache(const std::function<void(detail::InstanceCacheCore&)>& fn) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.caches_mu);
  for (size_t i = 0; i < r.caches.size(); ++i) fn(*r.caches[i]);  // by index: fn may register
}

Registration register_function(std::function<FunctionReport()> report,
                               std::function<void()> clear) {
  Registry& r = registry();
  const uint64_t id = r.next.fetch_add(1);
  std::lock_guard<std::mutex> lock(r.mu);
  r.functions[id] = {std::move(report), {}, std::move(clear)};
  return Registration(id);
}

Registration register_arena(std::function<ArenaInfo()> info, std::function<void()> clear) {
  Registry& r = registry();
  const uint64_t id = r.next.fetch_add(1);
  std::lock_guard<std::mutex> lock(r.mu);
  r.arenas[id] = {{}, std::move(info), std::move(clear)};
  return Registration(id);
}

void store_created(const VariableStore* store) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.stores_mu);
  r.stores.push_back(store);
}

void store_destroyed(const VariableStore* store) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.stores_mu);
  r.stores.erase(std::remove(r.stores.begin(), r.stores.end(), store), r.stores.end());
}

void layer_created(const Layer* layer) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.layers_mu);
  r.layers.push_back(layer);
}

void layer_destroyed(const Layer* layer) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.layers_mu);
  // Layers usually die newest first: search from the back.
  for (size_t i = r.layers.size(); i-- > 0;) {
    if (r.layers[i] == layer) {
      r.layers[i] = r.layers.back();
      r.layers.pop_back();
      return;
    }
  }
}

void for_each_layer(const std::function<void(const Layer&)>& fn) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.layers_mu);
  for (const Layer* l : r.layers) fn(*l);
}

std::vector<FunctionReport> function_reports() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<FunctionReport> out;
  for (auto& [id, cb] : r.functions) out.push_back(cb.report());
  return out;
}

std::vector<ArenaInfo> arena_infos() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<ArenaInfo> out;
  for (auto& [id, cb] : r.arenas) out.push_back(cb.arena());
  return out;
}

void for_each_store(const std::function<void(const VariableStore&)>& fn) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.stores_mu);
  for (const VariableStore* s : r.stores) fn(*s);
}

void clear_registered() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [id, cb] : r.functions) {
    if (cb.clear) cb.clear();
  }
  for (auto& [id, cb] : r.arenas) {
    if (cb.clear) cb.clear();
  }
}

}  // namespace cache

namespace detail {

void instance_expired(uint64_t id) {
  std::vector<InstanceCacheCore::Box*> dead;
  cache::for_each_instance_cache([&](InstanceCacheCore& c) { c.expire(id, dead); });
  for (InstanceCacheCore::Box* b : dead) delete b;  // unlocked: a value may own tokens too
}

}  // namespace detail
}  // namespace kiln
