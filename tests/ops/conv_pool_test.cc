// fused_conv2d_pool and fused_conv2d_pool_grad: fast vs reference on awkward shapes (channels
// not a multiple of 16, odd images, overlapping and clipped windows, strides, dilation,
// several input channels), the reference against the unfused ops, the gradient op against the
// forward op's tape gradient, float64 gradients by finite differences, results that do not
// depend on the thread count, and every error path.
#include <gtest/gtest.h>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/threading.h"
#include "ops/fused.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

struct Case {
  Shape x, f;  // input [N, H, W, C], filter [KH, KW, C, O]
  Attrs conv;  // strides (2), padding, dilation (2), groups
  Attrs pool;  // pool_size (2), strides (2), padding
};

std::vector<Case> cases() {
  return {
      // the cnn's first conv and pool (2x2 windows tile the 28x28 output)
      {{3, 28, 28, 1}, {3, 3, 1, 32}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 0}},
      // 5 channels (one partial block), odd image: the last row and column left out (valid)
      {{2, 9, 7, 1}, {3, 3, 1, 5}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 0}},
      // 3 input channels, 20 outputs, valid conv, overlapping 3x3/2 windows clipped by "same"
      {{2, 11, 10, 3}, {3, 3, 3, 20}, {1, 1, 0, 1, 1, 1}, {3, 3, 2, 2, 1}},
      // strided, dilated 2x2 filter over 2 channels; 2x2 windows with stride 1 (overlap)
      {{1, 12, 9, 2}, {2, 2, 2, 48}, {2, 1, 1, 2, 2, 1}, {2, 2, 1, 1, 0}},
      // 2x2 windows tiling a 6x10 output (its second 8-pixel group holds 2), 20 channels
      {{2, 6, 10, 1}, {3, 3, 1, 20}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 0}},
      // tiling, 16 channels over 2 input channels (18 taps: two tap blocks), 12 wide
      {{2, 4, 12, 2}, {3, 3, 2, 16}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 0}},
      // a 5x5 filter (25 taps: three tap blocks), 17 outputs
      {{2, 8, 8, 1}, {5, 5, 1, 17}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 1}},
  };
}

Attrs cp_attrs(const Case& c) {
  Attrs a = c.conv;
  for (int64_t v : c.pool.ints()) a.add_int(v);
  return a;
}
Attrs grad_attrs(const Case& c) { return Attrs(cp_attrs(c)).add_int(c.f[0]).add_int(c.f[1]); }

void forward(const Case& c, const Tensor& x, const Tensor& f, const Tensor& b, Tensor out[2]) {
  const Tensor in[3] = {x, f, b};
  run_op(ops::kFusedConv2DPool, in, cp_attrs(c), {out, 2});
}
void backward(const Case& c, const Tensor& x, const Tensor& slot, const Tensor& y, const Tensor& dy,
              Tensor out[2]) {
  const Tensor in[4] = {x, slot, y, dy};
  run_op(ops::kFusedConv2DPoolGrad, in, grad_attrs(c), {out, 2});
}

// The unfused ops: max_pool2d(relu(conv2d(x, f) + b)).
Tensor unfused(const Case& c, const Tensor& x, const Tensor& f, const Tensor& b) {
  return run_op(ops::kMaxPool2D, {relu(add(run_op(ops::kConv2D, {x, f}, c.conv), b))}, c.pool);
}

TEST(ConvPool, FastMatchesReferenceAndTheUnfusedOps) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    const Tensor x = random_tensor(c.x, float32, 1), f = random_tensor(c.f, float32, 2),
                 b = random_tensor({c.f[3]}, float32, 3, -0.2, 0.2);
    Tensor fast[2], ref[2];
    reset_kernel_stats();
    forward(c, x, f, b, fast);
    EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast);
    {
      ForceReferenceScope scope;
      forward(c, x, f, b, ref);
    }
    EXPECT_TRUE(all_close(fast[0], ref[0], 1e-5, 1e-6));
    EXPECT_TRUE(all_close(cast(fast[1], float32), cast(ref[1], float32), 0, 0)) << "slots";
    EXPECT_TRUE(all_close(ref[0], unfused(c, x, f, b), 1e-5, 1e-6));
    EXPECT_EQ(ref[1].dtype(), DType::kUInt8);

    const Tensor dy = random_tensor(ref[0].shape(), float32, 4);
    Tensor gfast[2], gref[2];
    reset_kernel_stats();
    backward(c, x, ref[1], ref[0], dy, gfast);
    EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast);
    {
      ForceReferenceScope scope;
      backward(c, x, ref[1], ref[0], dy, gref);
    }
    EXPECT_TRUE(all_close(gfast[0], gref[0], 1e-4, 1e-5)) << "filter";
    EXPECT_TRUE(all_close(gfast[1], gref[1], 1e-4, 1e-5)) << "bias";
  }
}

// The gradient op gives what a tape gives through the forward op's own rule (the unfused
// ops' rules), in float64 through the references.
TEST(ConvPool, GradOpMatchesTheTapeGradient) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    const Tensor x = random_tensor(c.x, float64, 5), f = random_tensor(c.f, float64, 6),
                 b = random_tensor({c.f[3]}, float64, 7, -0.2, 0.2);
    GradientTape tape;
    tape.watch(f);
    tape.watch(b);
    Tensor y[2];
    forward(c, x, f, b, y);
    const Tensor dy = random_tensor(y[0].shape(), float64, 8);
    std::vector<Tensor> g = tape.gradient(sum(y[0] * dy), {f, b});
    Tensor d[2];
    backward(c, x, y[1], y[0], dy, d);
    EXPECT_TRUE(all_close(d[0], g[0], 1e-10, 1e-12)) << "filter";
    EXPECT_TRUE(all_close(d[1], g[1], 1e-10, 1e-12)) << "bias";
  }
}

TEST(ConvPool, GradientsMatchFiniteDifferences) {
  const Case c{{1, 6, 5, 2}, {3, 3, 2, 3}, {1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 1}};
  // Bias 0.5 keeps the relu away from its kink at these inputs (values in [-1, 1) / 4).
  check_gradients(
      [&](const std::vector<Tensor>& v) {
        Tensor y[2];
        forward(c, v[0], v[1], v[2], y);
        return y[0];
      },
      {random_tensor(c.x, float64, 9, -0.25, 0.25), random_tensor(c.f, float64, 10, -0.25, 0.25),
       random_tensor({3}, float64, 11, 0.5, 0.6)},
      1e-6, 1e-6, /*second_order=*/false);
}

TEST(ConvPool, ResultsDoNotDependOnTheThreadCount) {
  const Case c = cases()[0];
  const Tensor x = random_tensor({16, 28, 28, 1}, float32, 12), f = random_tensor(c.f, float32, 13),
               b = random_tensor({32}, float32, 14);
  Tensor y1[2], y2[2], d1[2], d2[2];
  const int saved = num_threads();
  set_num_threads(1);
  forward(c, x, f, b, y1);
  const Tensor dy = random_tensor(y1[0].shape(), float32, 15);
  backward(c, x, y1[1], y1[0], dy, d1);
  set_num_threads(2);
  forward(c, x, f, b, y2);
  backward(c, x, y1[1], y1[0], dy, d2);
  set_num_threads(saved);
  EXPECT_TRUE(all_close(y2[0], y1[0], 0, 0));
  EXPECT_TRUE(all_close(d2[0], d1[0], 0, 0));
  EXPECT_TRUE(all_close(d2[1], d1[1], 0, 0));
}

TEST(ConvPool, FastKernelDeclinesWhatItDoesNotTake) {
  // float64, groups 2, and 4x4x4 = 64 taps: the reference runs, and conv_pool_direct says so.
  const Attrs pool{2, 2, 2, 2, 0};
  struct Decline {
    Shape x, f;
    Attrs conv;
    DType dt;
  };
  for (const Decline& d : {Decline{{1, 6, 6, 1}, {3, 3, 1, 4}, {1, 1, 1, 1, 1, 1}, float64},
                           Decline{{1, 6, 6, 2}, {3, 3, 1, 4}, {1, 1, 1, 1, 1, 2}, float32},
                           Decline{{1, 8, 8, 4}, {4, 4, 4, 4}, {1, 1, 1, 1, 1, 1}, float32}}) {
    EXPECT_FALSE(conv_pool_direct({d.x, d.dt}, {d.f, d.dt}, d.conv));
    const Case c{d.x, d.f, d.conv, pool};
    Tensor y[2];
    reset_kernel_stats();
    forward(c, random_tensor(d.x, d.dt, 1), random_tensor(d.f, d.dt, 2),
            random_tensor({4}, d.dt, 3), y);
    EXPECT_EQ(kernel_stats().first_path, KernelPath::kReference);
    EXPECT_TRUE(all_close(y[0], unfused(c, random_tensor(d.x, d.dt, 1), random_tensor(d.f, d.dt, 2),
                                        random_tensor({4}, d.dt, 3))));
  }
  EXPECT_TRUE(
      conv_pool_direct({{1, 6, 6, 3}, float32}, {{3, 3, 3, 4}, float32}, Attrs{1, 1, 1, 1, 1, 1}));
}

// Slots only a malformed graph could hold (past their 2x2 window) select no pixel, in both
// kernels: nothing is written outside the image.
TEST(ConvPool, SlotsPastTheirWindowSelectNothing) {
  const Case c = cases()[1];
  const Tensor x = random_tensor(c.x, float32, 1), f = random_tensor(c.f, float32, 2),
               b = full({5}, 1.0);
  Tensor y[2];
  forward(c, x, f, b, y);
  const Tensor bad = full(y[1].shape(), 200.0, DType::kUInt8);
  for (bool reference : {false, true}) {
    ForceReferenceScope* scope = reference ? new ForceReferenceScope : nullptr;
    Tensor d[2];
    backward(c, x, bad, y[0], full(y[0].shape(), 1.0), d);
    delete scope;
    EXPECT_TRUE(all_close(d[0], zeros(c.f), 0, 0)) << reference;
    EXPECT_TRUE(all_close(d[1], zeros({5}), 0, 0)) << reference;
  }
}

TEST(ConvPool, ErrorsNameWhatIsWrong) {
  const Case c = cases()[1];
  const Tensor x = random_tensor(c.x), f = random_tensor(c.f), b = random_tensor({5});
  Tensor y[2];
  expect_error<ShapeError>([&] { forward(c, x, f, random_tensor({4}), y); },
                           {"fused_conv2d_pool", "the bias must be [5]"});
  expect_error<DTypeError>([&] { forward(c, x, cast(f, float64), b, y); },
                           {"fused_conv2d_pool", "float64"});
  expect_error<ShapeError>(
      [&] {
        forward(c, random_tensor({2, 9, 7, 2}), f, b, y);
      },
      {"fused_conv2d_pool", "filter's third dim"});
  Case big = c;
  big.pool = Attrs{17, 17, 1, 1, 1};
  expect_error<ValueError>(
      [&] {
        forward(big, random_tensor({1, 20, 20, 1}), f, b, y);
      },
      {"fused_conv2d_pool", "17x17", "uint8 slot"});
  forward(c, x, f, b, y);
  Tensor d[2];
  expect_error<DTypeError>([&] { backward(c, x, cast(y[1], int32), y[0], y[0], d); },
                           {"fused_conv2d_pool_grad", "slots must be uint8", "int32"});
  expect_error<ShapeError>(
      [&] {
        backward(c, x, y[1], y[0], random_tensor({2, 4, 3, 4}), d);
      },
      {"fused_conv2d_pool_grad", "must be [2, 4, 3, 5]"});
  expect_error<ValueError>(
      [&] {
        CheckAttrsScope off(nullptr, /*enabled=*/false);
        const Tensor in[3] = {x, f, b};
        run_op(ops::kFusedConv2DPool, in, c.conv, {y, 2});
      },
      {"fused_conv2d_pool", "6 integers given, 11 expected"});
}

}  // namespace
}  // namespace kiln
