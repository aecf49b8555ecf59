// Layer::cache_info(): the per-instance cache entries held for a layer, its sublayers and their
// weights. Beside layer.cc (which registers layers for the report); src/cache knows no layers.
#include <unordered_set>

#include "cache/registry.h"
#include "core/tensor_impl.h"
#include "kiln/cache.h"
#include "kiln/nn/layer.h"

namespace kiln {

LayerCacheInfo Layer::cache_info() const {
  LayerCacheInfo info;
  info.layer = name_;
  for (const auto& [n, v] : own_weights_) info.own_weights.push_back(v);
  // Every object whose entries count for this layer: the layer and its sublayers, and the
  // tensors of all their weights.
  std::vector<std::pair<uint64_t, std::string>> ids;
  std::vector<const Layer*> stack{this};
  std::unordered_set<const void*> seen;
  while (!stack.empty()) {
    const Layer* l = stack.back();
    stack.pop_back();
    if (l->cache_token_.used()) ids.emplace_back(l->cache_token_.id(), l->name_);
    for (const auto& [n, v] : l->own_weights_) {
      if (!seen.insert(v.id()).second) continue;
      info.variables += 1;
      info.variable_bytes += v.value().nbytes();
      const InstanceToken& t = v.value().impl()->token;
      if (t.used()) ids.emplace_back(t.id(), v.name());
    }
    for (const auto& sub : l->sublayers_) stack.push_back(sub.get());
  }
  cache::for_each_instance_cache([&](detail::InstanceCacheCore& c) {
    const std::string name = c.stats().name;
    for (const auto& [id, object] : ids) {
      const int64_t bytes = c.entry_bytes(id);
      if (bytes < 0) continue;
      info.entries.push_back({name, object, static_cast<uint64_t>(bytes)});
      info.entry_bytes += static_cast<uint64_t>(bytes);
    }
  });
  return info;
}

}  // namespace kiln
