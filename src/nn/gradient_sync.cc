#include "nn/gradient_sync.h"

#include <atomic>

namespace kiln::detail {
namespace {
std::atomic<GradientSyncFactory> factory{nullptr};
}  // namespace

void set_gradient_sync_factory(GradientSyncFactory f) { factory.store(f); }
GradientSyncFactory gradient_sync_factory() { return factory.load(); }

}  // namespace kiln::detail
