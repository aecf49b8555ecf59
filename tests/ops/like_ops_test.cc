// The gradient ops that read a shape from an input ("like", whose data is never read) instead
// of baking it into attrs: broadcast_like, sum_to_like, reshape_like, sum_grad, mean_grad, and
// the like inputs of conv2d_backward_input and avg_pool2d_grad. Fast vs reference on awkward
// shapes, agreement with the attrs-based ops, float64 gradients (first and second order),
// errors.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::Expect;
using testing::expect_error;
using testing::random_tensor;
using V = std::vector<Tensor>;

struct Pair {
  Shape small, big;
};
// Broadcasts along leading, middle, trailing and several dims; scalars; sizes past the
// threading threshold.
const Pair kPairs[] = {
    {{3, 1, 5}, {2, 3, 4, 5}}, {{1}, {7, 3}},          {{}, {2, 3}},
    {{4, 1}, {4, 9}},          {{1, 1, 6}, {5, 2, 6}}, {{1, 513}, {300, 513}},
};

TEST(LikeOps, BroadcastLikeAndSumToLikeMatchTheAttrOps) {
  for (const Pair& p : kPairs) {
    SCOPED_TRACE(to_string(p.small) + " " + to_string(p.big));
    for (DType dt : {float32, float64, int32}) {
      Tensor s = random_tensor(p.small, dt, 1, -5, 5), b = random_tensor(p.big, dt, 2, -5, 5);
      Tensor big_like = zeros(p.big, int8), small_like = zeros(p.small, boolean);
      check_fast_matches_reference([&] { return run_op(ops::kBroadcastLike, {s, big_like}); });
      // The fast float32 kernel sums in double, the reference in float.
      const double tol = dt == float32 ? 1e-5 : 1e-9;
      check_fast_matches_reference(
          [&] {
            return run_op(ops::kSumToLike, {b, small_like});
          },
          tol, tol);
      EXPECT_TRUE(all_close(ops::broadcast_like(s, big_like), broadcast_to(s, p.big), 0, 0));
      EXPECT_TRUE(all_close(ops::sum_to_like(b, small_like), sum_to(b, p.small), 0, 0));
    }
  }
  // Equal shapes: no op at all, x itself.
  Tensor x = ones({2, 3});
  EXPECT_EQ(ops::sum_to_like(x, zeros({2, 3})).impl(), x.impl());
  EXPECT_EQ(ops::broadcast_like(x, zeros({2, 3})).impl(), x.impl());
}

TEST(LikeOps, BroadcastLikeAndSumToLikeGradients) {
  const Tensor big = zeros({2, 3, 4}), small = zeros({3, 1});
  check_gradients(
      [&](const V& v) {
        return run_op(ops::kBroadcastLike, {v[0], big});
      },
      {random_tensor({3, 1}, float64, 3)});
  check_gradients(
      [&](const V& v) {
        return run_op(ops::kSumToLike, {v[0], small});
      },
      {random_tensor({2, 3, 4}, float64, 4)});
}

TEST(LikeOps, BroadcastLikeAndSumToLikeErrors) {
  expect_error<ShapeError>(
      [] {
        run_op(ops::kBroadcastLike, {ones({2, 3}), zeros({3, 3})});
      },
      {"broadcast_like", "[2, 3]", "[3, 3]"});
  expect_error<ShapeError>(
      [] {
        run_op(ops::kSumToLike, {ones({2, 3}), zeros({4})});
      },
      {"sum_to_like", "[2, 3]", "[4]"});
  expect_error<ShapeError>(
      [] {
        run_op(ops::kSumToLike, {ones({3}), zeros({2, 3})});
      },
      {"sum_to_like", "cannot sum [3] down to [2, 3]"});
  expect_error<DTypeError>(
      [] {
        run_op(ops::kSumToLike, {cast(ones({2, 3}), boolean), zeros({3})});
      },
      {"sum_to_like", "bool"});
}

TEST(LikeOps, ReshapeLike) {
  Tensor x = random_tensor({4, 6}, float32, 5), like = zeros({2, 3, 4}, int64);
  check_fast_matches_reference(
      [&] {
        return run_op(ops::kReshapeLike, {x, like});
      },
      0, 0, Expect::kView);
  EXPECT_TRUE(all_close(ops::reshape_like(x, like), reshape(x, {2, 3, 4}), 0, 0));
  check_gradients(
      [&](const V& v) {
        return run_op(ops::kReshapeLike, {v[0], like});
      },
      {random_tensor({4, 6}, float64, 6)});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kReshapeLike, {x, zeros({5, 5})});
      },
      {"reshape_like", "[4, 6]", "[5, 5]"});
}

struct Reduction {
  Shape x;
  std::vector<int> axes;
  bool keepdims;
};
const Reduction kReductions[] = {
    {{2, 3, 4}, {1}, false}, {{2, 3, 4}, {0, 2}, true}, {{5, 7}, {}, false},
    {{5, 1, 7}, {-1}, true}, {{300, 513}, {0}, false},  {{300, 513}, {1}, true},
    {{3, 0, 2}, {1}, false}, {{4}, {0}, true},
};

Attrs reduce_attrs(const Reduction& r) {
  Attrs a{r.keepdims ? 1 : 0};
  for (int ax : r.axes) a.add_int(ax);
  return a;
}

TEST(LikeOps, SumGradAndMeanGradFastMatchReference) {
  for (const Reduction& r : kReductions) {
    SCOPED_TRACE(to_string(r.x));
    for (DType dt : {float32, float64}) {
      Tensor x = random_tensor(r.x, dt, 7);
      Tensor g = random_tensor(sum(x, r.axes, r.keepdims).shape(), dt, 8);
      check_fast_matches_reference(
          [&] {
            return run_op(ops::kSumGrad, {g, x}, reduce_attrs(r));
          },
          0, 0);
      check_fast_matches_reference(
          [&] {
            return run_op(ops::kMeanGrad, {g, x}, reduce_attrs(r));
          },
          0, 0);
    }
  }
}

TEST(LikeOps, SumGradAndMeanGradValues) {
  // mean over [2, 3]'s dim 1: each of the 3 elements gets g / 3, counted by the kernel.
  Tensor g = from_vector<float>({3, 6});
  Tensor x = zeros({2, 3});
  EXPECT_EQ(run_op(ops::kMeanGrad, {g, x}, Attrs{0, 1}).to_vector<float>(),
            (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(run_op(ops::kSumGrad, {g, x}, Attrs{0, 1}).to_vector<float>(),
            (std::vector<float>{3, 3, 3, 6, 6, 6}));
  // The same as the rule before: the reduction's gradient through a tape.
  Tensor xs = random_tensor({4, 5}, float32, 9);
  GradientTape tape;
  tape.watch(xs);
  Tensor l = sum(mean(xs, {0}) * from_vector<float>({1, 2, 3, 4, 5}));
  EXPECT_TRUE(all_close(tape.gradient(l, {xs})[0],
                        broadcast_to(from_vector<float>({1, 2, 3, 4, 5}, {1, 5}) / 4.0, {4, 5}), 0,
                        0));
}

TEST(LikeOps, SumGradAndMeanGradGradients) {
  for (const Reduction& r : kReductions) {
    if (r.x.numel() > 64 || r.x.numel() == 0) continue;  // finite differences per element
    SCOPED_TRACE(to_string(r.x));
    const Tensor x = zeros(r.x, float64);
    const Shape gs = sum(x, r.axes, r.keepdims).shape();
    for (const OpDef* op : {&ops::kSumGrad, &ops::kMeanGrad}) {
      check_gradients(
          [&](const V& v) {
            return run_op(*op, {v[0], x}, reduce_attrs(r));
          },
          {random_tensor(gs, float64, 10)});
    }
  }
}

TEST(LikeOps, SumGradAndMeanGradErrors) {
  expect_error<ShapeError>(
      [] {
        run_op(ops::kSumGrad, {ones({3}), zeros({2, 3})}, Attrs{0, 1});
      },
      {"sum_grad", "gradient [3]", "reduction [2]", "[2, 3]"});
  expect_error<ShapeError>(
      [] {
        run_op(ops::kMeanGrad, {ones({2}), zeros({2, 3})}, Attrs{1, 1});
      },
      {"mean_grad", "gradient [2]", "reduction [2, 1]"});
  expect_error<DTypeError>(
      [] {
        run_op(ops::kSumGrad, {ones({2}, int32), zeros({2, 3})}, Attrs{0, 1});
      },
      {"sum_grad", "int32"});
  expect_error<ValueError>(
      [] {
        run_op(ops::kMeanGrad, {ones({2}), zeros({2, 3})}, Attrs{0, 5});
      },
      {"mean_grad", "axis 5"});
}

TEST(LikeOps, ConvAndPoolGradientsTakeTheInputShapeFromTheLikeInput) {
  // Only the like input's shape matters: its dtype and values do not.
  Conv2DOptions o;
  o.strides = {2, 2};
  o.padding = Padding::kSame;
  const Attrs conv{2, 2, 1, 1, 1, 1};
  Tensor x = random_tensor({3, 7, 5, 2}), f = random_tensor({3, 3, 2, 4});
  Tensor dy = random_tensor(conv2d(x, f, o).shape(), float32, 11);
  Tensor a = run_op(ops::kConv2DBackwardInput, {dy, f, x}, conv);
  Tensor b = run_op(ops::kConv2DBackwardInput, {dy, f, zeros(x.shape(), int8)}, conv);
  EXPECT_TRUE(all_close(a, b, 0, 0));
  EXPECT_EQ(a.shape(), x.shape());
  // An odd width the output gradient cannot tell from 6 (stride 2, same): the like decides.
  Tensor a6 = run_op(ops::kConv2DBackwardInput, {dy, f, zeros({3, 7, 6, 2})}, conv);
  EXPECT_EQ(a6.shape(), Shape({3, 7, 6, 2}));
  const Attrs pool{3, 3, 2, 2, 1};
  Tensor py = avg_pool2d(x, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame});
  Tensor pdy = random_tensor(py.shape(), float32, 12);
  check_fast_matches_reference([&] { return run_op(ops::kAvgPool2DGrad, {pdy, x}, pool); });
  EXPECT_TRUE(all_close(run_op(ops::kAvgPool2DGrad, {pdy, x}, pool),
                        run_op(ops::kAvgPool2DGrad, {pdy, zeros(x.shape(), boolean)}, pool), 0, 0));
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kConv2DBackwardInput, {dy, f, zeros({3, 9, 5, 2})}, conv);
      },
      {"conv2d_backward_input", "[3, 9, 5, 2]", "output gradient"});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kAvgPool2DGrad, {pdy, zeros({3, 9, 5, 2})}, pool);
      },
      {"avg_pool2d_grad", "[3, 9, 5, 2]"});
}

TEST(LikeOps, PadGradientSlicesFromTheEnd) {
  // after == 0 ("to the end") and after > 0 (a negative end), with unpadded trailing dims.
  check_gradients(
      [](const V& v) {
        return pad(v[0], {{2, 0}, {1, 3}}, -1);
      },
      {random_tensor({3, 2, 2}, float64, 13)});
}

// A tensor with a shape and no data: reading it would fail, so ops given it as a like input
// prove they read its shape only.
Tensor shape_only(const Shape& s) {
  return Tensor::adopt(detail::impl_view(nullptr, 0, s, float32));
}
Tensor run1(const OpDef& op, const std::vector<Tensor>& in, const Attrs& attrs) {
  Tensor out;
  run_op(op, in, attrs, {&out, 1});
  return out;
}

TEST(LikeOps, LikeInputsAreDeclaredAndOnlyTheirShapeIsRead) {
  struct Run {
    const OpDef* op;
    int like;  // which input
    std::vector<Tensor> in;
    Attrs attrs;
  };
  Tensor x = random_tensor({3, 7, 5, 2}), f = random_tensor({3, 3, 2, 4});
  const Attrs conv{2, 2, 1, 1, 1, 1}, pool{3, 3, 2, 2, 1};
  const std::vector<Run> runs = {
      {&ops::kBroadcastLike, 1, {random_tensor({3, 1}), zeros({2, 3, 4})}, {}},
      {&ops::kSumToLike, 1, {random_tensor({2, 3, 4}), zeros({3, 1})}, {}},
      {&ops::kReshapeLike, 1, {random_tensor({4, 6}), zeros({2, 12})}, {}},
      {&ops::kSumGrad, 1, {random_tensor({2, 4}), zeros({2, 3, 4})}, Attrs{0, 1}},
      {&ops::kMeanGrad, 1, {random_tensor({2, 1, 4}), zeros({2, 3, 4})}, Attrs{1, 1}},
      {&ops::kSliceGrad, 1, {random_tensor({2}), zeros({5})}, Attrs{1, 5, 2}},
      {&ops::kGatherGrad,
       2,
       {random_tensor({3, 2}), from_vector<int32_t>({0, 2, 0}), zeros({4, 2})},
       Attrs{0}},
      {&ops::kConv2DBackwardInput, 2, {random_tensor({3, 4, 3, 4}), f, x}, conv},
      {&ops::kAvgPool2DGrad, 1, {random_tensor({3, 4, 3, 2}), x}, pool},
  };
  std::set<std::string> covered;
  for (const Run& r : runs) {
    SCOPED_TRACE(r.op->name);
    EXPECT_TRUE(reads_shape_only(*r.op, r.like));
    for (int k = 0; k < static_cast<int>(r.in.size()); ++k) {
      if (k != r.like) EXPECT_FALSE(reads_shape_only(*r.op, k)) << "input " << k;
    }
    std::vector<Tensor> no_data = r.in;
    no_data[r.like] = shape_only(r.in[r.like].shape());
    for (bool ref : {false, true}) {  // each kernel gives the same with and without the data
      std::unique_ptr<ForceReferenceScope> scope;
      if (ref) scope = std::make_unique<ForceReferenceScope>();
      EXPECT_TRUE(all_close(run1(*r.op, no_data, r.attrs), run1(*r.op, r.in, r.attrs), 0, 0));
    }
    covered.insert(r.op->name);
  }
  // Every op that declares a shape-only input is covered above.
  for (const OpDef* op : ops::all_ops()) {
    if (op->shape_only_inputs) EXPECT_TRUE(covered.count(op->name)) << op->name;
  }
}

}  // namespace
}  // namespace kiln
