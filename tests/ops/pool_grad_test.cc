// The pooling gradient ops (max_pool2d_grad, max_pool2d_select, fused_max_pool2d_grad,
// avg_pool2d_grad): fast vs reference with ties and past the caches, the first-max tie rule,
// the fused epilogue against the unfused ops, float64 gradients and every error path.
#include <gtest/gtest.h>

#include "kiln/ops.h"
#include "ops/fused.h"
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

TEST(Pool2DGrad, GradOpsFastMatchReferenceWithTies) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x));
    for (DType dt : {float32, float64}) {
      Tensor x = cast(tied(c.x, 4), dt);
      Tensor dy = random_tensor(max_pool2d(x, c.o).shape(), dt, 5);
      check_fast_matches_reference([&] {
        return run_op(ops::kMaxPool2DGrad, {x, dy}, pool_attrs(c.o));
      });
      check_fast_matches_reference([&] {
        return run_op(ops::kAvgPool2DGrad, {dy, x}, pool_attrs(c.o));
      });
    }
  }
}

TEST(Pool2DGrad, GradientsLargerThanTheCachesMatchTheReference) {
  // [8, 64, 64, 32] float32 (4 MiB), 2x2/2: the fast kernel's non-temporal stores (AVX-512).
  const Shape xs{8, 64, 64, 32};
  const Attrs pa = pool_attrs(popts(2, 2, Padding::kValid));
  for (Tensor x : {sub(tied(xs, 21), full({}, 1.0)), random_tensor(xs, float32, 22)}) {
    Tensor dy = random_tensor({8, 32, 32, 32}, float32, 23);
    check_fast_matches_reference([&] { return run_op(ops::kMaxPool2DGrad, {x, dy}, pa); }, 0, 0);
    check_fast_matches_reference(
        [&] {
          return run_op(ops::kFusedMaxPool2DGrad, {x, dy},
                        Attrs(pa).add_int(fe_opcode(ops::kReluGrad)));
        },
        0, 0);
  }
}

TEST(Pool2DGrad, MaxGradientGoesToFirstMaxOnTies) {
  Tensor x = full({1, 2, 2, 1}, 3.0);
  Tensor dy = full({1, 1, 1, 1}, 5.0);
  for (bool ref : {false, true}) {
    std::unique_ptr<ForceReferenceScope> scope;
    if (ref) scope = std::make_unique<ForceReferenceScope>();
    EXPECT_EQ(run_op(ops::kMaxPool2DGrad, {x, dy}, pool_attrs(popts(2, 2, Padding::kValid)))
                  .to_vector<float>(),
              (std::vector<float>{5, 0, 0, 0}));
    // Overlapping windows accumulate onto a shared max.
    Tensor x2 = from_vector<float>({0, 9, 0, 0, 0, 0}, {1, 2, 3, 1});
    EXPECT_EQ(run_op(ops::kMaxPool2DGrad, {x2, ones({1, 1, 2, 1})},
                     pool_attrs(popts(2, 1, Padding::kValid)))
                  .to_vector<float>(),
              (std::vector<float>{0, 2, 0, 0, 0, 0}));
  }
}

TEST(Pool2DGrad, MaxGradAndSelectAreEachOthersGradient) {
  // max_pool2d_grad(x, dy) is linear in dy; its gradient is max_pool2d_select(x, .) and back.
  Attrs a = pool_attrs(popts(2, 2, Padding::kSame));
  Tensor x = random_tensor({2, 5, 3, 2}, float64, 11);  // distinct values: no ties
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kMaxPool2DGrad, {x, v[0]}, a);
      },
      {random_tensor({2, 3, 2, 2}, float64, 12)});
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kMaxPool2DSelect, {x, v[0]}, a);
      },
      {random_tensor({2, 5, 3, 2}, float64, 13)});
  // select picks v at each window's first max; it has only the reference kernel.
  Tensor v = random_tensor({2, 5, 3, 2}, float32, 14);
  Tensor xf = cast(x, float32);
  testing::check_fast_matches_reference(
      [&] {
        return run_op(ops::kMaxPool2DSelect, {xf, v}, a);
      },
      0, 0, testing::Expect::kDeclined);
  Tensor picked = run_op(ops::kMaxPool2DSelect, {xf, xf}, a);
  EXPECT_TRUE(all_close(picked, max_pool2d(xf, popts(2, 2, Padding::kSame))));
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kMaxPool2DSelect, {xf, zeros({2, 5, 3, 1})}, a);
      },
      {"max_pool2d_select", "[2, 5, 3, 2] and [2, 5, 3, 1]", "equal"});
}

// fused_max_pool2d_grad(x, dy) = relu_grad(max_pool2d_grad(x, dy), x), the epilogue named by
// relu_grad's fused_elementwise opcode.
Attrs fused_attrs(const Pool2DOptions& o) {
  return pool_attrs(o).add_int(fe_opcode(ops::kReluGrad));
}

TEST(Pool2DGrad, FusedMaxGradEqualsReluGradOfMaxGrad) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x));
    for (DType dt : {float32, float64}) {
      // Ties, zeros and negatives: tied values shifted to {-1, 0, 1}, and random in [-1, 1).
      for (Tensor x : {cast(sub(tied(c.x, 4), full({}, 1.0)), dt), random_tensor(c.x, dt, 6)}) {
        Tensor dy = random_tensor(max_pool2d(x, c.o).shape(), dt, 5);
        check_fast_matches_reference([&] {
          return run_op(ops::kFusedMaxPool2DGrad, {x, dy}, fused_attrs(c.o));
        });
        Tensor unfused =
            run_op(ops::kReluGrad, {run_op(ops::kMaxPool2DGrad, {x, dy}, pool_attrs(c.o)), x});
        Tensor fused = run_op(ops::kFusedMaxPool2DGrad, {x, dy}, fused_attrs(c.o));
        EXPECT_TRUE(all_close(fused, unfused, 0, 0));  // the same selects: bit-identical
      }
    }
  }
}

TEST(Pool2DGrad, FusedMaxGradGradients) {
  // Linear in dy (through relu_grad's and max_pool2d_grad's own rules); x gets relu_grad's
  // (none: piecewise constant).
  for (const Case& c : {Case{{2, 4, 5, 3}, popts(2, 2, Padding::kValid)},
                        Case{{1, 5, 4, 2}, popts(3, 2, Padding::kSame)}}) {
    Attrs a = fused_attrs(c.o);
    Tensor x = random_tensor(c.x, float64, 11);  // distinct values, both signs
    check_gradients(
        [&](const std::vector<Tensor>& v) {
          return run_op(ops::kFusedMaxPool2DGrad, {x, v[0]}, a);
        },
        {random_tensor(max_pool2d(x, c.o).shape(), float64, 12)});
  }
}

TEST(Pool2DGrad, FusedMaxGradRefusesAnEpilogueNotLinearInItsFirstInput) {
  Tensor x = random_tensor({1, 4, 4, 2});
  Tensor dy = random_tensor({1, 2, 2, 2});
  const Attrs base = pool_attrs(popts(2, 2, Padding::kValid));
  for (const Attrs& a : {Attrs(base).add_int(fe_opcode(ops::kAdd)), Attrs(base).add_int(-3),
                         Attrs(base).add_int(fe_opcode(ops::kRelu))}) {
    expect_error<ValueError>(
        [&] {
          run_op(ops::kFusedMaxPool2DGrad, {x, dy}, a);
        },
        {"fused_max_pool2d_grad", "epilogue", "linear in the first"});
  }
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kFusedMaxPool2DGrad, {x, random_tensor({1, 3, 2, 2})},
               fused_attrs(popts(2, 2, Padding::kValid)));
      },
      {"max_pool2d_grad", "the output gradient must be [1, 2, 2, 2]"});
}

TEST(Pool2DGrad, Errors) {
  Tensor x = random_tensor({1, 4, 4, 2});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kMaxPool2DGrad, {x, random_tensor({1, 3, 3, 2})},
               pool_attrs(popts(2, 2, Padding::kValid)));
      },
      {"max_pool2d_grad", "[1, 4, 4, 2]", "[1, 3, 3, 2]", "[1, 2, 2, 2]"});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kMaxPool2DGrad, {x, random_tensor({1, 2, 2, 2}, float64)},
               pool_attrs(popts(2, 2, Padding::kValid)));
      },
      {"max_pool2d_grad", "float32", "float64"});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kAvgPool2DGrad, {random_tensor({1, 3, 2, 2}), x},
               pool_attrs(popts(2, 2, Padding::kValid)));
      },
      {"avg_pool2d_grad", "[1, 3, 2, 2]", "[1, 4, 4, 2]"});
}
}  // namespace
}  // namespace kiln
