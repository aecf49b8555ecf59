// max_pool2d / avg_pool2d: fast vs reference (with ties), known values for TF "same" padding,
// float64 gradients through their gradient ops, and every error path.
#include <gtest/gtest.h>

#include "kiln/ops.h"
#include "ops/pool_cases.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using pool_testing::Case;
using pool_testing::cases;
using pool_testing::pool_attrs;
using pool_testing::popts;
using pool_testing::tied;
using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

TEST(Pool2D, ForwardFastMatchesReference) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x));
    for (Tensor x :
         {random_tensor(c.x, float32, 1), tied(c.x, 2), random_tensor(c.x, float64, 3)}) {
      check_fast_matches_reference([&] { return max_pool2d(x, c.o); });
      check_fast_matches_reference([&] { return avg_pool2d(x, c.o); }, 1e-5, 1e-6);
    }
  }
}

TEST(Pool2D, KnownValuesSamePadding) {
  Tensor x = arange(0, 9, 1).reshape({1, 3, 3, 1});
  for (bool ref : {false, true}) {
    std::unique_ptr<ForceReferenceScope> scope;
    if (ref) scope = std::make_unique<ForceReferenceScope>();
    // 2x2 stride 2 same on 3x3: one padded row/col after; averages count in-bounds pixels only.
    EXPECT_EQ(avg_pool2d(x, popts(2, 2, Padding::kSame)).to_vector<float>(),
              (std::vector<float>{2, 3.5, 6.5, 8}));
    EXPECT_EQ(max_pool2d(x, popts(2, 2, Padding::kSame)).to_vector<float>(),
              (std::vector<float>{4, 5, 7, 8}));
    EXPECT_EQ(max_pool2d(x, popts(2, 2, Padding::kValid)).to_vector<float>(),
              (std::vector<float>{4}));
    // Default strides are the pool size (Keras).
    Pool2DOptions d;
    EXPECT_EQ(max_pool2d(arange(0, 16, 1).reshape({1, 4, 4, 1}), d).to_vector<float>(),
              (std::vector<float>{5, 7, 13, 15}));
    // Negative inputs: padding never contributes a 0 to the max.
    EXPECT_EQ(max_pool2d(neg(x), popts(2, 2, Padding::kSame)).to_vector<float>(),
              (std::vector<float>{0, -2, -6, -8}));
  }
}

TEST(Pool2D, Gradients) {
  const Case small[] = {{{2, 4, 5, 2}, popts(2, 2, Padding::kValid)},
                        {{1, 5, 5, 2}, popts(2, 2, Padding::kSame)},
                        {{1, 5, 4, 1}, popts(3, 1, Padding::kSame)},
                        {{1, 6, 6, 1}, popts(3, 2, Padding::kValid)}};
  for (const Case& c : small) {
    SCOPED_TRACE(to_string(c.x));
    // Distinct random values: no ties, so max pooling is differentiable at the probe point.
    check_gradients([&](const std::vector<Tensor>& v) { return max_pool2d(v[0], c.o); },
                    {random_tensor(c.x, float64, 7)});
    check_gradients([&](const std::vector<Tensor>& v) { return avg_pool2d(v[0], c.o); },
                    {random_tensor(c.x, float64, 8)});
  }
  // avg_pool2d_grad is linear; its own gradient is avg_pool2d.
  Attrs a = pool_attrs(popts(3, 2, Padding::kSame));
  const Tensor x_like = zeros({1, 5, 4, 2}, float64);  // gives dx its shape only
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kAvgPool2DGrad, {v[0], x_like}, a);
      },
      {random_tensor({1, 3, 2, 2}, float64, 9)});
}

TEST(Pool2D, Errors) {
  Tensor x = random_tensor({1, 4, 4, 2});
  expect_error<ShapeError>(
      [] {
        max_pool2d(random_tensor({4, 4, 2}));
      },
      {"max_pool2d", "[4, 4, 2]"});
  expect_error<ShapeError>(
      [] {
        avg_pool2d(random_tensor({1, 4, 4, 2, 1}));
      },
      {"avg_pool2d", "[1, 4, 4, 2, 1]"});
  expect_error<ShapeError>([&] { max_pool2d(x, popts(5, 1, Padding::kValid)); },
                           {"max_pool2d", "[1, 4, 4, 2]", "smaller than pool_size [5, 5]"});
  expect_error<ValueError>([&] { avg_pool2d(x, popts(0, 1, Padding::kValid)); },
                           {"avg_pool2d", "pool_size [0, 0]"});
  expect_error<ValueError>([&] { max_pool2d(x, popts(2, -1, Padding::kValid)); },
                           {"max_pool2d", "strides [-1, -1]"});
  expect_error<DTypeError>([&] { max_pool2d(cast(x, int32)); }, {"max_pool2d", "int32"});
}

}  // namespace
}  // namespace kiln
