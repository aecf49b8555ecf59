// random_uniform / random_normal as ops named by a key, and their agreement with the seeded
// host creators.
#include <gtest/gtest.h>

#include "kiln/function.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;

Tensor key(int64_t seed, int64_t counter) { return from_vector<int64_t>({seed, counter}); }

TEST(RandomOps, CounterZeroDrawsWhatTheSeededCreatorsDraw) {
  for (const Shape& s :
       {Shape{}, Shape{1}, Shape{7}, Shape{0, 3}, Shape{3, 5}, Shape{257}, Shape{2, 300}}) {
    SCOPED_TRACE(to_string(s));
    for (DType dt : {float32, float64}) {
      EXPECT_TRUE(all_close(random_uniform(s, -2, 3, key(11, 0), dt),
                            random_uniform(s, -2, 3, 11, dt), 0, 0));
      EXPECT_TRUE(
          all_close(random_normal(s, 1, 2, key(11, 0), dt), random_normal(s, 1, 2, 11, dt), 0, 0));
    }
  }
}

TEST(RandomOps, EachCounterDrawsOtherNumbersWithTheSameDistribution) {
  Tensor a = random_uniform({20000}, 0, 1, key(3, 1)), b = random_uniform({20000}, 0, 1, key(3, 2));
  EXPECT_FALSE(all_close(a, b, 0, 0));
  EXPECT_NEAR(mean(a).item<double>(), 0.5, 0.01);
  EXPECT_GE(kiln::max(-a).item<double>(), -1.0);
  Tensor n = random_normal({20000}, 0, 1, key(3, 5));
  EXPECT_NEAR(mean(n).item<double>(), 0, 0.03);
  EXPECT_NEAR(mean(square(n)).item<double>(), 1, 0.05);
}

TEST(RandomOps, ATracedFunctionDrawsNewNumbersPerCallLikeEager) {
  SeedGenerator traced(21), eager(21);
  Function f =
      function([&](const Tensor& x) { return x + random_normal({4}, 0, 1, traced.next()); });
  Tensor zero = zeros({4});
  Tensor prev;
  for (int i = 0; i < 3; ++i) {
    Tensor y = f(zero);
    EXPECT_TRUE(all_close(y, random_normal({4}, 0, 1, eager.next()), 0, 0)) << i;
    if (prev.defined()) EXPECT_FALSE(all_close(y, prev, 0, 0)) << i;
    prev = y;
  }
  EXPECT_EQ(f.cache_info().traces, 1u);
  EXPECT_TRUE(ops::kRandomUniform.flags & kRandom);
}

TEST(RandomOps, Errors) {
  expect_error<ShapeError>([] { random_uniform({2}, 0, 1, from_vector<int64_t>({1})); },
                           {"random", "key", "int64 [2]", "[1] int64"});
  expect_error<DTypeError>([] { random_uniform({2}, 0, 1, key(1, 0), int32); },
                           {"random", "int32"});
  expect_error<ValueError>([] { random_uniform({2}, 1, 0, key(1, 0)); },
                           {"random_uniform", "low must be <= high"});
  expect_error<ValueError>([] { random_normal({2}, 0, -1, key(1, 0)); },
                           {"random_normal", "stddev must be >= 0"});
}

}  // namespace
}  // namespace kiln
