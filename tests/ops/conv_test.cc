// conv2d and its gradient ops: fast (oneDNN) vs reference over strides, same/valid padding,
// dilation, groups, 1x1 and 5x5 kernels, odd sizes and batches; known values; float64 gradient
// checks (first and second order); every error path.
#include <gtest/gtest.h>

#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

struct Case {
  Shape x, f;
  Conv2DOptions o;
};

Conv2DOptions opts(int64_t s, Padding p, int64_t d = 1, int64_t g = 1) {
  Conv2DOptions o;
  o.strides = {s, s};
  o.padding = p;
  o.dilation = {d, d};
  o.groups = g;
  return o;
}

std::vector<Case> cases() {
  Conv2DOptions asym = opts(1, Padding::kSame);
  asym.strides = {2, 1};
  asym.dilation = {1, 2};
  return {
      {{1, 7, 9, 3}, {3, 3, 3, 4}, opts(1, Padding::kValid)},
      {{3, 7, 9, 3}, {3, 3, 3, 4}, opts(1, Padding::kSame)},
      {{1, 9, 7, 2}, {3, 3, 2, 5}, opts(2, Padding::kSame)},
      {{3, 8, 8, 3}, {3, 3, 3, 2}, opts(2, Padding::kValid)},
      {{1, 11, 9, 2}, {3, 3, 2, 3}, opts(1, Padding::kSame, 2)},
      {{3, 11, 10, 2}, {3, 3, 2, 3}, opts(1, Padding::kValid, 2)},
      {{1, 7, 7, 4}, {3, 3, 2, 6}, opts(1, Padding::kSame, 1, 2)},
      {{3, 9, 9, 6}, {3, 3, 3, 4}, opts(2, Padding::kValid, 1, 2)},
      {{3, 5, 7, 5}, {1, 1, 5, 3}, opts(1, Padding::kValid)},
      {{1, 5, 7, 5}, {1, 1, 5, 3}, opts(2, Padding::kSame)},
      {{3, 9, 11, 3}, {5, 5, 3, 4}, opts(1, Padding::kSame)},
      {{1, 9, 11, 3}, {5, 5, 3, 2}, opts(2, Padding::kValid)},
      {{1, 3, 2, 2}, {5, 5, 2, 2}, opts(1, Padding::kSame)},  // window larger than the image
      {{1, 8, 7, 3}, {2, 3, 3, 2}, asym},
  };
}

Attrs conv_attrs(const Conv2DOptions& o) {
  return Attrs{o.strides[0],  o.strides[1],  o.padding == Padding::kSame ? 1 : 0,
               o.dilation[0], o.dilation[1], o.groups};
}
Attrs with_shape(const Conv2DOptions& o, const Shape& s) {
  Attrs a = conv_attrs(o);
  for (int64_t d : s) a.add_int(d);
  return a;
}

TEST(Conv2D, ForwardFastMatchesReference) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    Tensor x = random_tensor(c.x, float32, 1), f = random_tensor(c.f, float32, 2);
    check_fast_matches_reference([&] { return conv2d(x, f, c.o); }, 1e-4, 1e-5);
  }
}

// conv2d_backward_input's fast kernel against its reference for case c (x, f, dy drawn from
// `seed` on).
void check_input_gradient(const Case& c, uint64_t seed) {
  Tensor x = random_tensor(c.x, float32, seed), f = random_tensor(c.f, float32, seed + 1);
  Tensor dy = random_tensor(conv2d(x, f, c.o).shape(), float32, seed + 2);
  check_fast_matches_reference(
      [&] {
        return run_op(ops::kConv2DBackwardInput, {dy, f, x}, conv_attrs(c.o));
      },
      1e-4, 1e-5);
}

TEST(Conv2D, BackwardOpsFastMatchReference) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    check_input_gradient(c, 1);
    Tensor x = random_tensor(c.x, float32, 1), f = random_tensor(c.f, float32, 2);
    Tensor dy = random_tensor(conv2d(x, f, c.o).shape(), float32, 3);
    check_fast_matches_reference(
        [&] {
          return run_op(ops::kConv2DBackwardFilter, {x, dy}, with_shape(c.o, c.f));
        },
        1e-4, 1e-4);
  }
}

// Stride-1 input gradients into 16 or more channels run as a forward conv of dy with the
// flipped filter (conv.cc): odd sizes, even and asymmetric windows (the odd "same" padding pixel
// after), valid padding, a window larger than the image.
TEST(Conv2D, FlippedFilterInputGradientMatchesReference) {
  const std::vector<Case> wide = {
      {{2, 7, 9, 16}, {3, 3, 16, 5}, opts(1, Padding::kSame)},
      {{1, 8, 6, 20}, {2, 3, 20, 4}, opts(1, Padding::kSame)},
      {{2, 9, 7, 17}, {3, 3, 17, 6}, opts(1, Padding::kValid)},
      {{1, 3, 2, 16}, {5, 5, 16, 3}, opts(1, Padding::kSame)},
  };
  for (const Case& c : wide) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    check_input_gradient(c, 4);
  }
}

TEST(Conv2D, KnownValuesAndShapes) {
  // All-ones 5x5 image, 3x3 all-ones filter, same: corners see 4 pixels, edges 6, inside 9.
  Tensor x = ones({1, 5, 5, 1}), f = ones({3, 3, 1, 1});
  for (bool ref : {false, true}) {
    std::unique_ptr<ForceReferenceScope> scope;
    if (ref) scope = std::make_unique<ForceReferenceScope>();
    Tensor y = conv2d(x, f, opts(1, Padding::kSame));
    ASSERT_EQ(y.shape(), Shape({1, 5, 5, 1}));
    std::vector<float> v = y.to_vector<float>();
    EXPECT_EQ(v[0], 4);
    EXPECT_EQ(v[2], 6);
    EXPECT_EQ(v[12], 9);
  }
  // TF's same with stride 2 on an even size: a 2x2 window needs no padding, a 3x3 one pads
  // one pixel, after.
  Tensor r = arange(0, 16, 1).reshape({1, 4, 4, 1});
  Tensor y = conv2d(r, ones({2, 2, 1, 1}), opts(2, Padding::kSame));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{10, 18, 42, 50}));
  Tensor y3 = conv2d(r, ones({3, 3, 1, 1}), opts(2, Padding::kSame));
  EXPECT_EQ(y3.to_vector<float>(), (std::vector<float>{45, 39, 66, 50}));
  EXPECT_EQ(
      conv2d(random_tensor({2, 10, 9, 3}), random_tensor({3, 3, 3, 8}), opts(3, Padding::kSame))
          .shape(),
      Shape({2, 4, 3, 8}));
  EXPECT_EQ(
      conv2d(random_tensor({2, 10, 9, 3}), random_tensor({3, 3, 3, 8}), opts(2, Padding::kValid, 2))
          .shape(),
      Shape({2, 3, 3, 8}));
  // Groups: channel group g sees only input channels [g*C/G, (g+1)*C/G).
  Tensor xg = from_vector<float>({1, 10}, {1, 1, 1, 2});
  Tensor fg = from_vector<float>({2, 3}, {1, 1, 1, 2});
  EXPECT_EQ(conv2d(xg, fg, opts(1, Padding::kValid, 1, 2)).to_vector<float>(),
            (std::vector<float>{2, 30}));
}

TEST(Conv2D, Gradients) {
  const Case small[] = {
      {{2, 5, 4, 2}, {3, 3, 2, 2}, opts(1, Padding::kSame)},
      {{1, 6, 5, 2}, {3, 2, 2, 3}, opts(2, Padding::kSame)},
      {{1, 7, 6, 1}, {2, 2, 1, 2}, opts(1, Padding::kValid, 2)},
      {{1, 4, 4, 4}, {3, 3, 2, 2}, opts(2, Padding::kValid, 1, 2)},
      {{2, 3, 3, 3}, {1, 1, 3, 2}, opts(1, Padding::kValid)},
  };
  for (const Case& c : small) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    check_gradients([&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], c.o); },
                    {random_tensor(c.x, float64, 1), random_tensor(c.f, float64, 2)});
  }
}

TEST(Conv2D, SecondOrderGradients) {
  const Conv2DOptions o = opts(2, Padding::kSame);
  const Shape xs{1, 5, 4, 2}, fs{3, 3, 2, 2}, ys{1, 3, 2, 2};
  const Tensor x_like = zeros(xs, float64);  // gives dx its shape only
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kConv2DBackwardInput, {v[0], v[1], x_like}, conv_attrs(o));
      },
      {random_tensor(ys, float64, 1), random_tensor(fs, float64, 2)});
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kConv2DBackwardFilter, {v[0], v[1]}, with_shape(o, fs));
      },
      {random_tensor(xs, float64, 3), random_tensor(ys, float64, 4)});
}

TEST(Conv2D, Errors) {
  Tensor x = random_tensor({1, 5, 5, 4}), f = random_tensor({3, 3, 4, 2});
  expect_error<ShapeError>(
      [&] {
        conv2d(random_tensor({5, 5, 4}), f);
      },
      {"conv2d", "[5, 5, 4]", "[3, 3, 4, 2]"});
  expect_error<ShapeError>(
      [&] {
        conv2d(x, random_tensor({3, 3, 3, 2}));
      },
      {"conv2d", "[1, 5, 5, 4]", "[3, 3, 3, 2]", "channels"});
  expect_error<ShapeError>([&] { conv2d(x, f, opts(1, Padding::kValid, 1, 2)); },
                           {"conv2d", "groups=2"});
  expect_error<ShapeError>(
      [&] {
        conv2d(x, random_tensor({3, 3, 4, 3}), opts(1, Padding::kValid, 1, 3));
      },
      {"conv2d", "groups=3"});
  expect_error<ShapeError>(
      [&] {
        conv2d(x, random_tensor({6, 6, 4, 2}));
      },
      {"conv2d", "[6, 6, 4, 2]", "larger than the input"});
  expect_error<ShapeError>([&] { conv2d(x, f, opts(1, Padding::kValid, 3)); },
                           {"conv2d", "larger than the input"});
  expect_error<ValueError>([&] { conv2d(x, f, opts(0, Padding::kValid)); }, {"conv2d", "strides"});
  expect_error<ValueError>([&] { conv2d(x, f, opts(1, Padding::kValid, 0)); },
                           {"conv2d", "dilation"});
  expect_error<DTypeError>([&] { conv2d(cast(x, int32), cast(f, int32)); }, {"conv2d", "int32"});
  expect_error<DTypeError>([&] { conv2d(x, cast(f, float64)); }, {"conv2d", "float32", "float64"});
  Tensor dy = random_tensor({1, 2, 2, 2});  // should be [1, 3, 3, 2]
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kConv2DBackwardInput, {dy, f, x}, conv_attrs(opts(1, Padding::kValid)));
      },
      {"conv2d_backward_input", "[1, 3, 3, 2]", "[1, 2, 2, 2]"});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kConv2DBackwardFilter, {x, dy},
               with_shape(opts(1, Padding::kValid), f.shape()));
      },
      {"conv2d_backward_filter", "[1, 3, 3, 2]", "[1, 2, 2, 2]"});
}

}  // namespace
}  // namespace kiln
