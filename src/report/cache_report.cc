// cache_report(): gathers every registered source into one snapshot; to_text and to_json.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "cache/registry.h"
#include "core/storage.h"
#include "kernels/onednn/cache_stats.h"
#include "kiln/cache_report.h"
#include "kiln/nn/layer.h"
#include "kiln/nn/variable_store.h"

namespace kiln {
namespace {

std::string owner_of(const std::string& name) {
  const size_t slash = name.rfind('/');
  return slash == std::string::npos ? std::string("(top level)") : name.substr(0, slash);
}

// Which live layers use each variable directly (by variable identity).
std::unordered_map<const void*, std::vector<std::string>> users_by_variable() {
  std::unordered_map<const void*, std::vector<std::string>> users;
  cache::for_each_layer([&](const Layer& l) {
    for (const Variable& v : l.cache_info().own_weights) users[v.id()].push_back(l.name());
  });
  return users;
}

// Adds `v` to `s` unless already there (`seen`).
void add_variable(VariablesSection& s, const Variable& v,
                  std::unordered_map<const void*, bool>& seen,
                  const std::unordered_map<const void*, std::vector<std::string>>& users) {
  if (!seen.emplace(v.id(), true).second) return;
  VariableInfo vi;
  vi.name = v.name();
  vi.owner = owner_of(vi.name);
  vi.shape = to_string(v.shape());
  vi.dtype = dtype_name(v.dtype());
  vi.bytes = v.value().nbytes();
  vi.version = v.version();
  vi.trainable = v.trainable();
  auto it = users.find(v.id());
  if (it != users.end()) vi.layers = it->second;
  s.count += 1;
  s.bytes += vi.bytes;
  s.shared += vi.layers.size() > 1;
  auto& [n, b] = s.by_owner[vi.owner];
  n += 1;
  b += vi.bytes;
  s.list.push_back(std::move(vi));
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  } else if (b < (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  }
  return buf;
}

std::string limit_str(uint64_t v, bool bytes) {
  if (v == 0) return "none";
  return bytes ? human_bytes(v) : std::to_string(v);
}

nlohmann::json limits_json(const CacheLimits& l) {
  return {{"max_entries", l.max_entries}, {"max_bytes", l.max_bytes}};
}

}  // namespace

VariablesSection VariableStore::cache_info() const {
  VariablesSection s;
  std::unordered_map<const void*, bool> seen;
  const auto users = users_by_variable();
  for (const Variable& v : variables()) add_variable(s, v, seen, users);
  return s;
}

CacheReport cache_report() {
  CacheReport r;
  // Variables: every store's, then layers' weights that no live store holds.
  {
    const auto users = users_by_variable();
    std::unordered_map<const void*, bool> seen;
    std::vector<Variable> from_stores;
    cache::for_each_store([&](const VariableStore& s) {
      for (const Variable& v : s.variables()) from_stores.push_back(v);
    });
    for (const Variable& v : from_stores) add_variable(r.variables, v, seen, users);
    std::vector<Variable> from_layers;
    cache::for_each_layer([&](const Layer& l) {
      for (const Variable& v : l.cache_info().own_weights) from_layers.push_back(v);
    });
    for (const Variable& v : from_layers) add_variable(r.variables, v, seen, users);
  }
  for (cache::FunctionReport& f : cache::function_reports()) {
    for (const cache::FoldedConstants& c : f.folded) {
      r.folded_constants.push_back(
          {f.name, c.signature, c.constants, c.bytes, c.variable_versions});
    }
    r.functions.push_back({f.name, std::move(f.info), f.max_entries});
  }
  cache::for_each_instance_cache(
      [&](detail::InstanceCacheCore& c) { r.instances.push_back(c.stats()); });
  const onednn::PrimitiveCacheStats p = onednn::primitive_cache_stats();
  r.kernels = {p.size, p.bytes, p.hits, p.misses, p.evictions, {p.capacity, p.max_bytes}};
  r.arenas = cache::arena_infos();
  const detail::AllocatorStats a = detail::allocator_stats();
  r.allocator = {a.hits,
                 a.misses,
                 a.evictions,
                 a.cached_bytes,
                 a.cached_buffers,
                 {a.limit_buffers, a.limit_bytes},
                 detail::allocator_cache_compiled_in()};
  return r;
}

uint64_t CacheReport::cache_bytes() const {
  uint64_t b = kernels.bytes + allocator.cached_bytes;
  for (const CacheStats& s : instances) b += s.bytes;
  for (const FoldedConstantsSection& f : folded_constants) b += f.bytes;
  for (const ArenaInfo& a : arenas) b += a.bytes;
  return b;
}

std::string CacheReport::to_json(int indent) const {
  using nlohmann::json;
  json j;
  json vars = {{"count", variables.count},
               {"bytes", variables.bytes},
               {"shared", variables.shared},
               {"by_owner", json::object()},
               {"list", json::array()}};
  for (const auto& [owner, nb] : variables.by_owner) {
    vars["by_owner"][owner] = {{"count", nb.first}, {"bytes", nb.second}};
  }
  for (const VariableInfo& v : variables.list) {
    vars["list"].push_back({{"name", v.name},
                            {"owner", v.owner},
                            {"shape", v.shape},
                            {"dtype", v.dtype},
                            {"bytes", v.bytes},
                            {"version", v.version},
                            {"trainable", v.trainable},
                            {"layers", v.layers},
                            {"shared", v.layers.size() > 1}});
  }
  j["variables"] = vars;
  j["functions"] = json::array();
  for (const FunctionSection& f : functions) {
    json sigs = json::array();
    for (const Signature& s : f.info.signatures) sigs.push_back(s.to_string());
    j["functions"].push_back({{"name", f.name},
                              {"signatures", sigs},
                              {"entries", f.info.signatures.size()},
                              {"max_entries", f.max_entries},
                              {"hits", f.info.hits},
                              {"misses", f.info.misses},
                              {"traces", f.info.traces},
                              {"evictions", f.info.evictions},
                              {"variables", f.info.variables},
                              {"last_retrace_reason", f.info.last_retrace_reason}});
  }
  j["folded_constants"] = json::array();
  for (const FoldedConstantsSection& f : folded_constants) {
    j["folded_constants"].push_back({{"function", f.function},
                                     {"signature", f.signature},
                                     {"constants", f.constants},
                                     {"bytes", f.bytes},
                                     {"variable_versions", f.variable_versions}});
  }
  j["instances"] = json::array();
  for (const CacheStats& s : instances) {
    j["instances"].push_back({{"name", s.name},
                              {"entries", s.entries},
                              {"bytes", s.bytes},
                              {"hits", s.hits},
                              {"misses", s.misses},
                              {"version_recomputes", s.version_recomputes},
                              {"evictions", s.evictions},
                              {"invalidations", s.invalidations},
                              {"expirations", s.expirations},
                              {"limits", limits_json(s.limits)}});
  }
  j["kernels"] = {{"primitives", kernels.entries},  {"bytes", kernels.bytes},
                  {"hits", kernels.hits},           {"misses", kernels.misses},
                  {"evictions", kernels.evictions}, {"limits", limits_json(kernels.limits)}};
  j["arenas"] = json::array();
  for (const ArenaInfo& a : arenas) {
    j["arenas"].push_back({{"owner", a.owner},
                           {"bytes", a.bytes},
                           {"peak_bytes", a.peak_bytes},
                           {"buffers", a.buffers}});
  }
  j["allocator"] = {
      {"enabled", allocator.enabled},
      {"cached_bytes", allocator.cached_bytes},
      {"cached_buffers", allocator.cached_buffers},
      {"hits", allocator.hits},
      {"misses", allocator.misses},
      {"evictions", allocator.evictions},
      {"limits",
       {{"max_buffers", allocator.limits.max_entries}, {"max_bytes", allocator.limits.max_bytes}}}};
  return j.dump(indent);
}

std::string CacheReport::to_text() const {
  std::string out;
  char line[512];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  add("Variables: %llu (%s), %llu shared\n", static_cast<unsigned long long>(variables.count),
      human_bytes(variables.bytes).c_str(), static_cast<unsigned long long>(variables.shared));
  for (const auto& [owner, nb] : variables.by_owner) {
    add("  %-40s %6llu vars %12s\n", owner.c_str(), static_cast<unsigned long long>(nb.first),
        human_bytes(nb.second).c_str());
  }
  out += "Functions: " + std::to_string(functions.size()) + "\n";
  for (const FunctionSection& f : functions) {
    add("  %-24s entries %zu/%llu  hits %llu  misses %llu  traces %llu  evictions %llu\n",
        f.name.c_str(), f.info.signatures.size(), static_cast<unsigned long long>(f.max_entries),
        static_cast<unsigned long long>(f.info.hits),
        static_cast<unsigned long long>(f.info.misses),
        static_cast<unsigned long long>(f.info.traces),
        static_cast<unsigned long long>(f.info.evictions));
    for (const Signature& s : f.info.signatures) out += "    " + s.to_string() + "\n";
    if (!f.info.last_retrace_reason.empty()) {
      out += "    last retrace: " + f.info.last_retrace_reason + "\n";
    }
  }
  out += "Folded constants: " + std::to_string(folded_constants.size()) + " graphs\n";
  for (const FoldedConstantsSection& f : folded_constants) {
    add("  %-24s %-40s %4llu constants %12s\n", f.function.c_str(), f.signature.c_str(),
        static_cast<unsigned long long>(f.constants), human_bytes(f.bytes).c_str());
    for (const auto& [name, version] : f.variable_versions) {
      out += "    from " + name + " @ version " + std::to_string(version) + "\n";
    }
  }
  out += "Per-instance caches: " + std::to_string(instances.size()) + "\n";
  for (const CacheStats& s : instances) {
    add("  %-48s entries %llu/%s  %s/%s  hits %llu  misses %llu  version recomputes %llu  "
        "evictions %llu\n",
        s.name.c_str(), static_cast<unsigned long long>(s.entries),
        limit_str(s.limits.max_entries, false).c_str(), human_bytes(s.bytes).c_str(),
        limit_str(s.limits.max_bytes, true).c_str(), static_cast<unsigned long long>(s.hits),
        static_cast<unsigned long long>(s.misses),
        static_cast<unsigned long long>(s.version_recomputes),
        static_cast<unsigned long long>(s.evictions));
  }
  add("Kernels (oneDNN primitives): %llu/%s  %s/%s  hits %llu  misses %llu  evictions %llu\n",
      static_cast<unsigned long long>(kernels.entries),
      limit_str(kernels.limits.max_entries, false).c_str(), human_bytes(kernels.bytes).c_str(),
      limit_str(kernels.limits.max_bytes, true).c_str(),
      static_cast<unsigned long long>(kernels.hits),
      static_cast<unsigned long long>(kernels.misses),
      static_cast<unsigned long long>(kernels.evictions));
  out += "Arenas: " + std::to_string(arenas.size()) + "\n";
  for (const ArenaInfo& a : arenas) {
    add("  %-48s %12s (peak %s) in %llu buffers\n", a.owner.c_str(), human_bytes(a.bytes).c_str(),
        human_bytes(a.peak_bytes).c_str(), static_cast<unsigned long long>(a.buffers));
  }
  if (!allocator.enabled) {
    out += "Allocator: no free-list cache in this build (sanitizers)\n";
  } else {
    add("Allocator: %s in %llu buffers cached (limits %s, %s buffers)  hits %llu  misses %llu  "
        "evictions %llu\n",
        human_bytes(allocator.cached_bytes).c_str(),
        static_cast<unsigned long long>(allocator.cached_buffers),
        limit_str(allocator.limits.max_bytes, true).c_str(),
        limit_str(allocator.limits.max_entries, false).c_str(),
        static_cast<unsigned long long>(allocator.hits),
        static_cast<unsigned long long>(allocator.misses),
        static_cast<unsigned long long>(allocator.evictions));
  }
  add("Cache bytes in all: %s\n", human_bytes(cache_bytes()).c_str());
  return out;
}

}  // namespace kiln
