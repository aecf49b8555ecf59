// conv2d's per-variable cache of the filter in oneDNN's layout: hits between assignments,
// recomputes after each (assign, optimizer step), and gives the uncached results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kiln/autograd.h"
#include "kiln/cache.h"
#include "kiln/cache_report.h"
#include "kiln/function.h"
#include "kiln/nn/optimizers.h"
#include "kiln/nn/variable.h"
#include "kiln/ops.h"

namespace kiln {
namespace {

double max_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector<float>(), y = b.to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(double(x[i]) - double(y[i])));
  return m;
}

CacheStats stats_of(const std::string& name) {
  for (const CacheStats& s : cache_report().instances) {
    if (s.name == name) return s;
  }
  return {};
}
CacheStats forward_stats() { return stats_of("conv2d filter in oneDNN layout (forward)"); }

// 16 -> 32 channels: oneDNN wants a blocked filter layout here, so the reorder runs.
struct ConvCase {
  Tensor x = random_uniform({4, 10, 10, 16}, -1, 1, 1);
  Variable w{"conv_cache_test/w", random_uniform({3, 3, 16, 32}, -1, 1, 2)};
  // The same conv on a plain tensor copy of the filter: never cached.
  Tensor plain() const { return conv2d(x, w.value().clone()); }
};

TEST(ConvFilterCache, HitsUntilTheVariableChangesThenRecomputes) {
  ConvCase c;
  const CacheStats before = forward_stats();
  Tensor y1 = conv2d(c.x, c.w.value());
  Tensor y2 = conv2d(c.x, c.w.value());
  CacheStats s = forward_stats();
  ASSERT_EQ(s.misses, before.misses + 1) << "the filter was not cached (no reorder needed?)";
  EXPECT_EQ(s.hits, before.hits + 1);
  EXPECT_LT(max_diff(y1, c.plain()), 1e-5);
  EXPECT_EQ(max_diff(y1, y2), 0);

  c.w.assign(random_uniform({3, 3, 16, 32}, -1, 1, 3));  // version bump
  Tensor y3 = conv2d(c.x, c.w.value());
  s = forward_stats();
  EXPECT_EQ(s.version_recomputes, before.version_recomputes + 1);
  EXPECT_LT(max_diff(y3, c.plain()), 1e-5);  // a stale filter would differ by ~1
  EXPECT_GT(max_diff(y3, y1), 0.1);
}

TEST(ConvFilterCache, OptimizerStepsInPlaceAreSeen) {
  ConvCase c;
  SGD opt(0.5);
  for (int step = 0; step < 3; ++step) {
    GradientTape tape;
    Tensor y = conv2d(c.x, c.w.value());
    Tensor loss = sum(square(y));
    auto g = tape.gradient(loss, {c.w.value()});
    opt.apply_gradients({c.w}, g);  // writes through raw pointers, then mark_modified()
    EXPECT_LT(max_diff(conv2d(c.x, c.w.value()), c.plain()), 1e-3) << "step " << step;
  }
}

TEST(ConvFilterCache, BackwardInputMatchesTheUncachedFilter) {
  ConvCase c;
  Tensor x = c.x;
  GradientTape tape;
  tape.watch(x);
  Tensor loss = sum(conv2d(x, c.w.value()) * 0.5);
  Tensor dx = tape.gradient(loss, {x})[0];
  GradientTape tape2;
  tape2.watch(x);
  Tensor filter = c.w.value().clone();
  Tensor dx_plain = tape2.gradient(sum(conv2d(x, filter) * 0.5), {x})[0];
  EXPECT_LT(max_diff(dx, dx_plain), 1e-4);
}

TEST(ConvFilterCache, TheEntryDiesWithTheVariable) {
  const uint64_t before = forward_stats().entries;
  {
    ConvCase c;
    conv2d(c.x, c.w.value());
    EXPECT_EQ(forward_stats().entries, before + 1);
  }
  EXPECT_EQ(forward_stats().entries, before);
}

TEST(ConvFilterCache, OffReordersEveryCallWithTheSameResult) {
  ConvCase c;
  Tensor cached = conv2d(c.x, c.w.value());
  set_conv_filter_cache_enabled(false);
  const CacheStats before = forward_stats();
  Tensor uncached = conv2d(c.x, c.w.value());
  set_conv_filter_cache_enabled(true);
  EXPECT_EQ(forward_stats().hits, before.hits);
  EXPECT_EQ(max_diff(cached, uncached), 0);
}

// A graph fuses conv2d + bias + relu into fused_conv2d: its filter is cached per version too.
TEST(ConvFilterCache, FusedConvInAGraphReordersOncePerVersion) {
  ConvCase c;
  Tensor bias = random_uniform({32}, -1, 1, 3);
  Function f = function([&](const Tensor& x) { return relu(conv2d(x, c.w.value()) + bias); });
  const Tensor expected = relu(c.plain() + bias);
  ASSERT_NE(f.graph_text({c.x}).find("fused_conv2d"), std::string::npos);
  const std::string name = "fused_conv2d filter in oneDNN layout (inference)";
  const CacheStats before = stats_of(name);
  for (int i = 0; i < 3; ++i) EXPECT_LT(max_diff(f(c.x), expected), 1e-5) << i;
  CacheStats s = stats_of(name);
  EXPECT_EQ(s.misses, before.misses + 1);
  EXPECT_EQ(s.hits, before.hits + 2);
  c.w.assign(c.w.value() * 0.5);
  EXPECT_LT(max_diff(f(c.x), relu(c.plain() + bias)), 1e-5);  // the new version, reordered
  EXPECT_EQ(stats_of(name).version_recomputes, before.version_recomputes + 1);
}

}  // namespace
}  // namespace kiln
