// matmul: fast (oneDNN) vs reference on awkward shapes and every transpose combination, known
// values, integer dtypes, float64 gradients, the primitive cache, and every error path.
#include <gtest/gtest.h>

#include "kernels/onednn/cache_stats.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

// a: batch_a + [M, K] (or [K, M] when ta), b: batch_b + [K, N] (or [N, K] when tb).
Shape a_shape(std::vector<int64_t> batch, int64_t m, int64_t k, bool ta) {
  batch.push_back(ta ? k : m);
  batch.push_back(ta ? m : k);
  return Shape(batch);
}
Shape b_shape(std::vector<int64_t> batch, int64_t k, int64_t n, bool tb) {
  batch.push_back(tb ? n : k);
  batch.push_back(tb ? k : n);
  return Shape(batch);
}

struct Case {
  std::vector<int64_t> ba, bb;
  int64_t m, k, n;
};

TEST(Matmul, FastMatchesReferenceAllTransposes) {
  const Case cases[] = {{{}, {}, 1, 1, 1},       {{}, {}, 7, 13, 5},  {{}, {}, 1, 9, 1},
                        {{}, {}, 64, 64, 64},    {{}, {}, 33, 1, 17}, {{2, 1}, {5}, 3, 4, 6},
                        {{3}, {3}, 5, 2, 7},     {{1}, {4}, 2, 3, 2}, {{2, 3}, {}, 4, 5, 3},
                        {{}, {2, 2, 1}, 3, 4, 5}};
  for (const Case& c : cases) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      SCOPED_TRACE(::testing::Message()
                   << "m,k,n=" << c.m << "," << c.k << "," << c.n << " ta=" << ta << " tb=" << tb);
      Tensor a = random_tensor(a_shape(c.ba, c.m, c.k, ta), float32, 1);
      Tensor b = random_tensor(b_shape(c.bb, c.k, c.n, tb), float32, 2);
      check_fast_matches_reference([&] { return matmul(a, b, ta, tb); }, 1e-4, 1e-5);
    }
  }
}

// A B^T with a large B runs as (B A^T)^T (matmul.cc, transposed_b_swapped): odd sizes past
// the 1 << 17 threshold, the cnn's dense input gradient, and the same just below it.
TEST(Matmul, LargeTransposedBRunsSwappedAndMatchesReference) {
  for (const Case& c : {Case{{}, {}, 33, 129, 1031}, Case{{}, {}, 64, 128, 3136},
                        Case{{}, {}, 2, 1001, 131}, Case{{}, {}, 64, 127, 1031}}) {
    SCOPED_TRACE(::testing::Message() << "m,k,n=" << c.m << "," << c.k << "," << c.n);
    Tensor a = random_tensor({c.m, c.k}, float32, 3);
    Tensor b = random_tensor({c.n, c.k}, float32, 4);
    check_fast_matches_reference([&] { return matmul(a, b, false, true); }, 1e-4, 1e-5);
    // The same product with B stored the other way (not swapped) agrees too.
    EXPECT_TRUE(all_close(matmul(a, b, false, true), matmul(a, transpose(b, {1, 0})), 1e-4, 1e-5));
  }
}

TEST(Matmul, BroadcastBatchShape) {
  Tensor a = random_tensor({2, 1, 3, 4}), b = random_tensor({5, 4, 6});
  EXPECT_EQ(matmul(a, b).shape(), Shape({2, 5, 3, 6}));
  // Each output batch equals the plain product of the broadcast operands.
  Tensor c = matmul(a, b);
  Tensor a1 = a.reshape({2, 3, 4}).rows(1, 2).reshape({3, 4});
  Tensor b3 = b.rows(3, 4).reshape({4, 6});
  EXPECT_TRUE(all_close(c.rows(1, 2).reshape({5, 3, 6}).rows(3, 4).reshape({3, 6}), matmul(a1, b3),
                        1e-5, 1e-6));
}

TEST(Matmul, KnownValuesFastAndReference) {
  Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector<float>({5, 6, 7, 8}, {2, 2});
  Tensor want = from_vector<float>({19, 22, 43, 50}, {2, 2});
  EXPECT_TRUE(all_close(matmul(a, b), want));
  Tensor want_tt = from_vector<float>({23, 31, 34, 46}, {2, 2});  // a^T b^T
  EXPECT_TRUE(all_close(matmul(a, b, true, true), want_tt));
  ForceReferenceScope ref;
  EXPECT_TRUE(all_close(matmul(a, b), want));
  EXPECT_TRUE(all_close(matmul(a, b, true, true), want_tt));
}

TEST(Matmul, IntegerAndFloat64Dtypes) {
  for (DType dt : {int32, int64, int8, uint8, float64}) {
    Tensor a = cast(from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}), dt);
    Tensor b = cast(from_vector<float>({1, 0, 2, 1, 0, 3}, {3, 2}), dt);
    Tensor c = matmul(a, b);
    EXPECT_EQ(c.dtype(), dt);
    EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{5, 11, 14, 23}));
  }
}

TEST(Matmul, EmptyAndZeroInnerDim) {
  Tensor a = random_tensor({3, 0}), b = random_tensor({0, 4});
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.shape(), Shape({3, 4}));
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>(12, 0.0f));
  EXPECT_EQ(matmul(random_tensor({0, 5}), random_tensor({5, 2})).shape(), Shape({0, 2}));
}

TEST(Matmul, GradientsAllTransposesWithBroadcast) {
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb);
    Tensor a = random_tensor(a_shape({2, 1}, 2, 3, ta), float64, 3);
    Tensor b = random_tensor(b_shape({3}, 3, 2, tb), float64, 4);
    check_gradients([&](const std::vector<Tensor>& x) { return matmul(x[0], x[1], ta, tb); },
                    {a, b});
  }
  check_gradients([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                  {random_tensor({1, 4}, float64, 5), random_tensor({4, 1}, float64, 6)});
}

TEST(Matmul, PrimitivesAreCachedAndBounded) {
  onednn::clear_primitive_cache();
  Tensor a = random_tensor({5, 7}), b = random_tensor({7, 3});
  matmul(a, b);
  matmul(a, b);
  matmul(a, b);
  onednn::PrimitiveCacheStats s = onednn::primitive_cache_stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.size, 1u);
  matmul(a, b, false, false);
  matmul(b, a, true, true);  // a different key (transposes)
  EXPECT_EQ(onednn::primitive_cache_stats().size, 2u);

  onednn::set_primitive_cache_capacity(2);
  matmul(random_tensor({2, 2}), random_tensor({2, 2}));
  s = onednn::primitive_cache_stats();
  EXPECT_EQ(s.size, 2u);
  EXPECT_EQ(s.evictions, 1u);
  onednn::set_primitive_cache_capacity(512);
  expect_error<ValueError>([] { onednn::set_primitive_cache_capacity(0); }, {"capacity"});
}

TEST(Matmul, Errors) {
  expect_error<ShapeError>(
      [] {
        matmul(random_tensor({3}), random_tensor({3, 2}));
      },
      {"matmul", "[3]", "[3, 2]", "rank"});
  expect_error<ShapeError>(
      [] {
        matmul(random_tensor({2, 3}), random_tensor({4, 5}));
      },
      {"matmul", "[2, 3]", "[4, 5]", "3", "4"});
  expect_error<ShapeError>(
      [] {
        matmul(random_tensor({2, 3}), random_tensor({3, 2}), false, true);
      },
      {"matmul", "[2, 3]", "[3, 2]", "transpose_b=true"});
  expect_error<ShapeError>(
      [] {
        matmul(random_tensor({3, 2}), random_tensor({2, 2}), true);
      },
      {"matmul", "[3, 2]", "transpose_a=true"});
  expect_error<ShapeError>(
      [] {
        matmul(random_tensor({2, 2, 3}), random_tensor({3, 3, 4}));
      },
      {"matmul", "[2, 2, 3]", "[3, 3, 4]", "batch"});
  expect_error<DTypeError>(
      [] {
        matmul(random_tensor({2, 2}), random_tensor({2, 2}, float64));
      },
      {"matmul", "float32", "float64"});
  expect_error<DTypeError>(
      [] {
        matmul(cast(random_tensor({2, 2}), boolean), cast(random_tensor({2, 2}), boolean));
      },
      {"matmul", "bool"});
}

}  // namespace
}  // namespace kiln
