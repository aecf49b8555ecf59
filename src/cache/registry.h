// The process-wide registry cache_report() walks: per-instance caches, Functions, executor
// arenas and variable stores register here while they live. Internal (src/ only); every
// function is thread-safe. A report callback runs under the registry lock, so an object's
// unregistration (in its destructor) waits for a report that is reading it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/cache_report.h"
#include "kiln/function.h"

namespace kiln {
class VariableStore;
class Layer;
namespace detail {
class InstanceCacheCore;
}

namespace cache {

// Unregisters on destruction (move-only). Empty handles do nothing.
class Registration {
 public:
  Registration() = default;
  explicit Registration(uint64_t id) : id_(id) {}
  Registration(Registration&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  Registration& operator=(Registration&& o) noexcept;
  ~Registration();

 private:
  uint64_t id_ = 0;
};

// ---- per-instance caches (InstanceCacheCore registers itself) ----
void register_instance_cache(detail::InstanceCacheCore* c);
void unregister_instance_cache(detail::InstanceCacheCore* c);
// Calls fn on every live per-instance cache, under the registry lock.
void for_each_instance_cache(const std::function<void(detail::InstanceCacheCore&)>& fn);

// ---- Functions (src/graph/function.cc registers each Function's state) ----
struct FoldedConstants {
  std::string signature;                              // the concrete function's signature
  uint64_t constants = 0;                             // captured constants in its optimized graph
  uint64_t bytes = 0;                                 // Graph::constant_bytes()
  std::map<std::string, uint64_t> variable_versions;  // frozen from: variable -> version
};
struct FunctionReport {
  std::string name;
  FunctionCacheInfo info;
  uint64_t max_entries = 0;
  std::vector<FoldedConstants> folded;  // per cached concrete function
};
// KILN_FUNCTION_CACHE_ENTRIES (read once; 0 or unset: no cap): every Function's max_entries is
// at most this. ValueError naming the variable when malformed.
uint64_t function_entries_cap();
// `report` snapshots the function (takes its own lock); `clear` drops its concrete functions.
Registration register_function(std::function<FunctionReport()> report, std::function<void()> clear);

// ---- executor arenas (the graph executor registers each; kiln::ArenaInfo is in
// kiln/cache_report.h) ----
using kiln::ArenaInfo;
// `info` is called by cache_report(); `clear` (optional) releases the arena's memory.
Registration register_arena(std::function<ArenaInfo()> info, std::function<void()> clear = {});

// ---- variable stores (src/nn/variable_store.cc: constructor and destructor) ----
void store_created(const VariableStore* store);
void store_destroyed(const VariableStore* store);

// ---- layers (src/nn/layer.cc: constructor and destructor) ----
void layer_created(const Layer* layer);
void layer_destroyed(const Layer* layer);
// Calls fn on every live layer, under the registry lock.
void for_each_layer(const std::function<void(const Layer&)>& fn);

// Snapshots for the report (each callback run under the registry lock).
std::vector<FunctionReport> function_reports();
std::vector<ArenaInfo> arena_infos();
// Calls fn on every live store, under the registry lock.
void for_each_store(const std::function<void(const VariableStore&)>& fn);
// Runs every registered clear callback (functions, arenas).
void clear_registered();

}  // namespace cache
}  // namespace kiln
