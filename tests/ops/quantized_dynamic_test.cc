// dynamic_quantized_matmul: fast (oneDNN through quantized_matmul) vs reference bit for bit on
// awkward shapes and input ranges, equality with the static ops given the batch's parameters,
// closeness to float math, and every error message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::expect_error;
using testing::random_tensor;

struct Weights {
  Tensor w, scales, bias;
};
Weights weights(int64_t k, int64_t n, uint64_t seed) {
  return {random_tensor({k, n}, DType::kInt8, seed, -127, 127.999),
          random_tensor({n}, float32, seed + 1, 0.001, 0.01),
          random_tensor({n}, float32, seed + 2, -1, 1)};
}

TEST(DynamicQuantizedMatmul, FastMatchesReferenceBitForBit) {
  struct Case {
    int64_t m, k, n;
    double lo, hi;  // input range
  };
  const std::vector<Case> cases = {{1, 1, 1, -1, 1},     {3, 17, 5, -0.2, 3},  {64, 300, 33, 0, 1},
                                   {7, 64, 10, -4, -1},  {33, 129, 65, -2, 2}, {2, 8, 3, 0.5, 0.5},
                                   {200, 784, 256, 0, 1}};
  uint64_t seed = 10;
  for (const Case& c : cases) {
    for (bool relu : {false, true}) {
      SCOPED_TRACE(std::to_string(c.m) + "x" + std::to_string(c.k) + "x" + std::to_string(c.n) +
                   (relu ? " relu" : ""));
      const Tensor x = c.lo == c.hi ? full({c.m, c.k}, c.lo)
                                    : random_tensor({c.m, c.k}, float32, seed, c.lo, c.hi);
      const Weights p = weights(c.k, c.n, seed + 1);
      seed += 5;
      check_fast_matches_reference(
          [&] { return dynamic_quantized_matmul(x, p.w, p.scales, p.bias, relu); }, 0, 0);
    }
  }
  // No rows: the fast kernel declines, the reference gives an empty result.
  const Weights p = weights(4, 3, 99);
  check_fast_matches_reference(
      [&] {
        return dynamic_quantized_matmul(zeros({0, 4}), p.w, p.scales, p.bias);
      },
      0, 0, testing::Expect::kDeclined);
}

TEST(DynamicQuantizedMatmul, IsTheStaticOpWithTheBatchsParameters) {
  const Tensor x = random_tensor({9, 40}, float32, 3, -0.7, 2.2);
  const Weights p = weights(40, 12, 4);
  const float xmin = std::min(-max(neg(x)).item<float>(), 0.f);
  const float xmax = std::max(max(x).item<float>(), 0.f);
  const float scale = (xmax - xmin) / 255.f;
  const Tensor zp = scalar(std::clamp(std::nearbyint(-xmin / scale), 0.f, 255.f), DType::kUInt8);
  QuantizedLinear q{scalar(scale), zp, p.w, p.scales, p.bias};
  q.relu = true;
  const Tensor want = quantized_matmul(quantize(x, scalar(scale), zp), q);
  const Tensor got = dynamic_quantized_matmul(x, p.w, p.scales, p.bias, true);
  EXPECT_TRUE(all_close(got, want, 0, 0));
  // And close to float math on the dequantized weights: within a few input steps.
  const Tensor wf = mul(cast(p.w, float32), p.scales);
  const Tensor ref = relu(add(matmul(x, wf), p.bias));
  const double step = scale * 0.01 * 127 * 40;  // one input step times the largest |row| of w
  EXPECT_TRUE(all_close(got, ref, 0, step));
}

TEST(DynamicQuantizedMatmul, Errors) {
  const Weights p = weights(4, 3, 7);
  const Tensor x = ones({2, 4});
  expect_error<DTypeError>(
      [&] {
        dynamic_quantized_matmul(ones({2, 4}, float64), p.w, p.scales, p.bias);
      },
      {"dynamic_quantized_matmul", "the input must be float32", "float64"});
  expect_error<DTypeError>(
      [&] { dynamic_quantized_matmul(x, cast(p.w, float32), p.scales, p.bias); },
      {"dynamic_quantized_matmul", "the weights must be int8"});
  expect_error<DTypeError>(
      [&] { dynamic_quantized_matmul(x, p.w, cast(p.scales, float64), p.bias); },
      {"dynamic_quantized_matmul", "the weight scales must be float32"});
  expect_error<DTypeError>(
      [&] { dynamic_quantized_matmul(x, p.w, p.scales, cast(p.bias, float64)); },
      {"dynamic_quantized_matmul", "the bias must be float32"});
  expect_error<ShapeError>(
      [&] {
        dynamic_quantized_matmul(ones({2, 5}), p.w, p.scales, p.bias);
      },
      {"dynamic_quantized_matmul", "[2, 5]", "[4, 3]", "[M, K]"});
  expect_error<ShapeError>([&] { dynamic_quantized_matmul(x, p.w, ones({4}), p.bias); },
                           {"dynamic_quantized_matmul", "weight scales must be [3]"});
  expect_error<ShapeError>([&] { dynamic_quantized_matmul(x, p.w, p.scales, ones({2})); },
                           {"dynamic_quantized_matmul", "bias must be [3]"});
  for (bool reference : {false, true}) {
    std::optional<ForceReferenceScope> scope;
    if (reference) scope.emplace();
    expect_error<ValueError>(
        [&] {
          dynamic_quantized_matmul(from_vector<float>({1, NAN, 0, 0}).reshape({1, 4}), p.w,
                                   p.scales, p.bias);
        },
        {"dynamic_quantized_matmul", "non-finite"});
    expect_error<ValueError>(
        [&] {
          dynamic_quantized_matmul(x, p.w, from_vector<float>({1, 0, 1}), p.bias);
        },
        {"weight scale 1", "positive and finite"});
  }
}

}  // namespace
}  // namespace kiln
