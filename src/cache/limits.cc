// Limits of every bounded cache (API and environment) and clear_caches().
#include <mutex>
#include <vector>

#include "cache/registry.h"
#include "core/env_limit.h"
#include "core/storage.h"
#include "kernels/onednn/cache_stats.h"
#include "kiln/cache.h"
#include "kiln/error.h"

namespace kiln {
namespace {

struct InstanceDefaults {
  std::mutex mu;
  CacheLimits limits{detail::env_limit("KILN_INSTANCE_CACHE_ENTRIES", 4096, false),
                     detail::env_limit("KILN_INSTANCE_CACHE_BYTES", uint64_t{256} << 20, true)};
  InstanceDefaults() {
    if (limits.max_entries == 0) throw ValueError("KILN_INSTANCE_CACHE_ENTRIES='0': must be >= 1");
  }
};

InstanceDefaults& defaults() {
  static InstanceDefaults d;
  return d;
}

}  // namespace

uint64_t cache::function_entries_cap() {
  static const uint64_t cap = detail::env_limit("KILN_FUNCTION_CACHE_ENTRIES", 0, false);
  return cap;
}

void set_instance_cache_limits(CacheLimits limits) {
  if (limits.max_entries == 0) {
    throw ValueError("set_instance_cache_limits: max_entries must be >= 1");
  }
  {
    InstanceDefaults& d = defaults();
    std::lock_guard<std::mutex> lock(d.mu);
    d.limits = limits;
  }
  std::vector<detail::InstanceCacheCore::Box*> dead;
  cache::for_each_instance_cache([&](detail::InstanceCacheCore& c) { c.set_limits(limits, dead); });
  for (detail::InstanceCacheCore::Box* b : dead) delete b;  // unlocked
}

CacheLimits instance_cache_limits() {
  InstanceDefaults& d = defaults();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.limits;
}

void set_primitive_cache_limits(CacheLimits limits) {
  if (limits.max_entries == 0) {
    throw ValueError("set_primitive_cache_limits: max_entries must be >= 1");
  }
  onednn::set_primitive_cache_capacity(limits.max_entries);
  onednn::set_primitive_cache_max_bytes(limits.max_bytes);
}

CacheLimits primitive_cache_limits() {
  onednn::PrimitiveCacheStats s = onednn::primitive_cache_stats();
  return {s.capacity, s.max_bytes};
}

void set_allocator_cache_limits(CacheLimits limits) {
  detail::set_allocator_limits(limits.max_bytes, limits.max_entries);
}

CacheLimits allocator_cache_limits() {
  detail::AllocatorStats s = detail::allocator_stats();
  return {s.limit_buffers, s.limit_bytes};
}

bool allocator_cache_enabled() { return detail::allocator_cache_compiled_in(); }

void clear_caches() {
  std::vector<detail::InstanceCacheCore::Box*> dead;
  cache::for_each_instance_cache([&](detail::InstanceCacheCore& c) { c.clear(dead); });
  for (detail::InstanceCacheCore::Box* b : dead) delete b;  // unlocked
  cache::clear_registered();
  onednn::drop_primitive_cache_entries();
  detail::allocator_trim();  // last: the caches above just freed buffers into it
}

}  // namespace kiln
