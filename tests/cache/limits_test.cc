// Bounded caches: the allocator's free lists and the oneDNN primitive cache (limits, LRU,
// evictions), limits from the environment, clear_caches(), and training over 200 batch shapes
// under small limits.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/env_limit.h"
#include "core/storage.h"
#include "kernels/onednn/cache_stats.h"
#include "kiln/autograd.h"
#include "kiln/cache.h"
#include "kiln/cache_report.h"
#include "kiln/function.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/losses.h"
#include "kiln/nn/model.h"
#include "kiln/nn/optimizers.h"
#include "kiln/nn/variable_store.h"
#include "kiln/ops.h"

namespace kiln {
namespace {

TEST(EnvLimit, ParsesNumbersAndSuffixes) {
  ::setenv("KILN_TEST_LIMIT", "123", 1);
  EXPECT_EQ(detail::env_limit("KILN_TEST_LIMIT", 7, false), 123u);
  ::setenv("KILN_TEST_LIMIT", "64M", 1);
  EXPECT_EQ(detail::env_limit("KILN_TEST_LIMIT", 7, true), 64u << 20);
  ::setenv("KILN_TEST_LIMIT", "2k", 1);
  EXPECT_EQ(detail::env_limit("KILN_TEST_LIMIT", 7, true), 2048u);
  ::setenv("KILN_TEST_LIMIT", "", 1);
  EXPECT_EQ(detail::env_limit("KILN_TEST_LIMIT", 7, true), 7u);
  ::unsetenv("KILN_TEST_LIMIT");
  EXPECT_EQ(detail::env_limit("KILN_TEST_LIMIT", 7, true), 7u);
}

TEST(EnvLimit, MalformedValuesNameTheVariable) {
  for (const char* bad : {"lots", "12Q", "-1", "1.5", "3M"}) {
    ::setenv("KILN_TEST_LIMIT", bad, 1);
    const bool bytes = std::string(bad) != "3M";  // a suffix is only for byte limits
    try {
      detail::env_limit("KILN_TEST_LIMIT", 7, bytes);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("KILN_TEST_LIMIT='") + bad + "'"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("expected a whole number"), std::string::npos);
    }
  }
  ::unsetenv("KILN_TEST_LIMIT");
}

// Run as a child process with the variables set (the limits are read once, at first use).
TEST(EnvLimitChild, ReadsEveryVariableAtFirstUse) {
  if (!std::getenv("KILN_CACHE_TEST_CHILD")) GTEST_SKIP() << "runs in EnvLimits.ChildProcess";
  EXPECT_EQ(instance_cache_limits().max_entries, 11u);
  EXPECT_EQ(instance_cache_limits().max_bytes, 3u << 20);
  EXPECT_EQ(primitive_cache_limits().max_entries, 5u);
  EXPECT_EQ(primitive_cache_limits().max_bytes, 2u << 10);
  if (allocator_cache_enabled()) {
    EXPECT_EQ(allocator_cache_limits().max_bytes, 1u << 30);
    EXPECT_EQ(allocator_cache_limits().max_entries, 99u);
  }
  Function f = function([](const Tensor& x) { return x * 2.0; }, {.name = "env_capped"});
  for (int64_t n : {1, 2, 3}) f(ones({n}));
  EXPECT_EQ(f.cache_info().signatures.size(), 2u);  // max_entries 32, capped at 2
  EXPECT_EQ(f.cache_info().evictions, 1u);
}

// Runs this test program again with `env` set, on the one test `filter`; 0 when that test ran
// and passed in the child.
int run_child(const std::string& env, const std::string& filter) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string log = std::filesystem::temp_directory_path() /
                          ("kiln_cache_child_" + std::to_string(::getpid()) + ".log");
  const std::string cmd = "KILN_CACHE_TEST_CHILD=1 " + env + " '" + self +
                          "' --gtest_filter=" + filter + " >'" + log + "' 2>&1";
  const int st = std::system(cmd.c_str());
  std::ifstream in(log);
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(log);
  if (out.find("[  PASSED  ] 1 test.") == std::string::npos) {
    ADD_FAILURE() << "the child did not run and pass " << filter << ":\n" << out;
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(EnvLimits, ReadInAChildProcess) {
  EXPECT_EQ(run_child("KILN_INSTANCE_CACHE_ENTRIES=11 KILN_INSTANCE_CACHE_BYTES=3M "
                      "KILN_PRIMITIVE_CACHE_ENTRIES=5 KILN_PRIMITIVE_CACHE_BYTES=2K "
                      "KILN_ALLOCATOR_CACHE_BYTES=1G KILN_ALLOCATOR_CACHE_BUFFERS=99 "
                      "KILN_FUNCTION_CACHE_ENTRIES=2",
                      "EnvLimitChild.ReadsEveryVariableAtFirstUse"),
            0);
}

TEST(EnvLimitChild, AMalformedPrimitiveLimitFailsTheFirstKernelNamingIt) {
  if (!std::getenv("KILN_CACHE_TEST_CHILD")) GTEST_SKIP() << "runs in EnvLimits.*";
  try {
    matmul(ones({8, 8}), ones({8, 8}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("KILN_PRIMITIVE_CACHE_ENTRIES='many'"), std::string::npos)
        << e.what();
  }
}

TEST(EnvLimits, MalformedValueInAChildProcess) {
  EXPECT_EQ(run_child("KILN_PRIMITIVE_CACHE_ENTRIES=many",
                      "EnvLimitChild.AMalformedPrimitiveLimitFailsTheFirstKernelNamingIt"),
            0);
}

class AllocatorLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!allocator_cache_enabled()) GTEST_SKIP() << "this build keeps no free lists";
    saved_ = allocator_cache_limits();
    detail::allocator_trim();
  }
  void TearDown() override {
    if (allocator_cache_enabled()) set_allocator_cache_limits(saved_);
  }
  CacheLimits saved_;
};

TEST_F(AllocatorLimits, EvictsTheLeastRecentlyFreedFirst) {
  set_allocator_cache_limits({8, 3 * 16384});  // room for three 16 KiB buffers
  detail::Storage* s[4];
  for (int i = 0; i < 4; ++i) s[i] = detail::storage_new(16384);
  void* first = s[0]->data;
  const detail::AllocatorStats before = detail::allocator_stats();
  for (int i = 0; i < 4; ++i) detail::storage_unref(s[i]);  // s[0] freed first: the oldest
  detail::AllocatorStats a = detail::allocator_stats();
  EXPECT_EQ(a.cached_buffers, 3u);
  EXPECT_EQ(a.cached_bytes, 3u * 16384);
  EXPECT_EQ(a.evictions, before.evictions + 1);
  // The three kept are reused newest first; the oldest (s[0]'s) went back to the system.
  for (int i = 0; i < 3; ++i) {
    detail::Storage* t = detail::storage_new(16384);
    EXPECT_NE(t->data, first) << i;
    s[i] = t;
  }
  EXPECT_EQ(detail::allocator_stats().hits, a.hits + 3);
  for (int i = 0; i < 3; ++i) detail::storage_unref(s[i]);
}

TEST_F(AllocatorLimits, BufferLimitAndOversizedBuffers) {
  set_allocator_cache_limits({2, 1 << 20});
  detail::Storage* s[3];
  for (auto& x : s) x = detail::storage_new(256);
  for (auto& x : s) detail::storage_unref(x);
  EXPECT_EQ(detail::allocator_stats().cached_buffers, 2u);
  detail::Storage* big = detail::storage_new(2 << 20);  // larger than the byte limit
  const uint64_t bytes = detail::allocator_stats().cached_bytes;
  detail::storage_unref(big);  // not kept, and nothing else evicted for it
  EXPECT_EQ(detail::allocator_stats().cached_bytes, bytes);
  set_allocator_cache_limits({0, 0});
  EXPECT_EQ(detail::allocator_stats().cached_buffers, 0u);
}

TEST(PrimitiveLimits, EntryAndByteLimitsEvictLeastRecentlyUsed) {
  const CacheLimits saved = primitive_cache_limits();
  EXPECT_THROW(set_primitive_cache_limits({0, 0}), ValueError);
  set_primitive_cache_limits({2, 0});
  const uint64_t ev = onednn::primitive_cache_stats().evictions;
  for (int64_t n : {8, 9, 10, 11}) matmul(ones({n, 16}), ones({16, 4}));
  onednn::PrimitiveCacheStats s = onednn::primitive_cache_stats();
  EXPECT_LE(s.size, 2u);
  EXPECT_GE(s.evictions, ev + 2);
  // Bytes: conv entries own their reordered filter buffers.
  set_primitive_cache_limits({100, 1});
  conv2d(ones({1, 6, 6, 16}), ones({3, 3, 16, 32}));
  conv2d(ones({2, 6, 6, 16}), ones({3, 3, 16, 32}));
  s = onednn::primitive_cache_stats();
  EXPECT_EQ(s.size, 1u);  // the newest stays even when alone over the limit
  set_primitive_cache_limits(saved);
}

TEST(ClearCaches, EmptiesEveryCache) {
  CachedPerInstance<int> mine("clear.test");
  InstanceToken t;
  mine.get(t, [] { return 1; });
  Function f = function([](const Tensor& x) { return relu(x) * 2.0; }, {.name = "clear_test"});
  f(ones({2, 3}));
  matmul(ones({4, 4}), ones({4, 4}));
  Tensor tmp = ones({1000});
  tmp = Tensor();  // a freed buffer in the free lists
  clear_caches();
  EXPECT_EQ(mine.stats().entries, 0u);
  EXPECT_TRUE(f.cache_info().signatures.empty());
  EXPECT_EQ(onednn::primitive_cache_stats().size, 0u);
  EXPECT_EQ(detail::allocator_stats().cached_bytes, 0u);
  EXPECT_EQ(mine.get(t, [] { return 2; }), 2);  // recomputed after the clear
}

// A small cnn trained one step at each of 200 batch sizes, with a graph forward per size, under
// small limits: every cache stays within its limit all along.
TEST(BoundedCaches, TrainingOver200BatchShapesStaysUnderTheLimits) {
  const CacheLimits saved_inst = instance_cache_limits(), saved_prim = primitive_cache_limits(),
                    saved_alloc = allocator_cache_limits();
  const CacheLimits inst{8, 1 << 20}, prim{16, 1 << 20}, alloc{64, 4 << 20};
  set_instance_cache_limits(inst);
  set_primitive_cache_limits(prim);
  set_allocator_cache_limits(alloc);
  {
    VariableStore store(1);
    Sequential model("bounded_cnn");
    model.set_store(store);
    Conv2DLayerOptions co;
    co.activation = "relu";
    model.emplace<Conv2D>(16, std::array<int64_t, 2>{3, 3}, co);
    model.emplace<Conv2D>(16, std::array<int64_t, 2>{3, 3}, co);
    model.emplace<Flatten>();
    model.emplace<Dense>(10);
    SGD opt(0.01);
    SparseCategoricalCrossentropy loss;
    Function forward = function([&](const Tensor& x) { return model(x, false); },
                                {.name = "bounded_forward", .max_entries = 4});
    uint64_t max_seen = 0, max_alloc = 0;
    for (int64_t b = 1; b <= 200; ++b) {
      Tensor x = random_uniform({b, 8, 8, 4}, 0, 1, b);
      std::vector<int32_t> labels(b);
      for (int64_t i = 0; i < b; ++i) labels[i] = static_cast<int32_t>(i % 10);
      GradientTape tape;
      Tensor l = loss(from_vector(labels), model(x, true));
      std::vector<Variable> vars = model.trainable_weights();
      std::vector<Tensor> values;
      for (const Variable& v : vars) values.push_back(v.value());
      opt.apply_gradients(vars, tape.gradient(l, values));
      forward(x);
      const CacheReport r = cache_report();
      for (const CacheStats& s : r.instances) {
        ASSERT_LE(s.entries, inst.max_entries) << s.name << " at batch " << b;
        ASSERT_LE(s.bytes, inst.max_bytes) << s.name << " at batch " << b;
      }
      ASSERT_LE(r.kernels.entries, prim.max_entries) << "batch " << b;
      ASSERT_LE(r.kernels.bytes, prim.max_bytes) << "batch " << b;
      ASSERT_LE(r.allocator.cached_bytes, alloc.max_bytes) << "batch " << b;
      ASSERT_LE(r.allocator.cached_buffers, alloc.max_entries) << "batch " << b;
      ASSERT_LE(forward.cache_info().signatures.size(), 4u);
      max_seen = std::max(max_seen, r.cache_bytes());
      max_alloc = std::max(max_alloc, r.allocator.cached_bytes);
    }
    // Everything the caches held at their peak fits the sum of the limits (no folded constants
    // or arenas here).
    EXPECT_LE(max_seen, inst.max_bytes * 8 + prim.max_bytes + alloc.max_bytes);
    EXPECT_GT(onednn::primitive_cache_stats().evictions, 100u);  // 200 shapes, room for 16
    EXPECT_EQ(forward.cache_info().evictions, 196u);
    RecordProperty("peak_cache_bytes", std::to_string(max_seen));
    RecordProperty("peak_allocator_cached_bytes", std::to_string(max_alloc));
  }
  set_instance_cache_limits(saved_inst);
  set_primitive_cache_limits(saved_prim);
  set_allocator_cache_limits(saved_alloc);
}

}  // namespace
}  // namespace kiln
