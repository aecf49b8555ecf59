// fake_quant: known grids (nudging, symmetric weights, zero-width ranges), fast vs reference bit
// for bit on awkward shapes and both dtypes (the op and its two gradient ops), the straight-through
// gradient against finite differences of the clipping it stands for (away from the edges), the
// clipping itself, the range gradients, the gradient of the gradient, and every error message.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::expect_error;
using testing::random_tensor;

TEST(FakeQuant, RoundsToTheUint8GridOfAnExactRange) {
  // scale 2^-7, zero point 64: the range is already on the grid, nothing is nudged.
  const Tensor lo = scalar(-0.5), hi = scalar(191.0 / 128);
  Tensor x = from_vector<float>({0.3f, -1.f, 2.f, 0.f, 0.00390625f, 0.01171875f, -0.5f});
  EXPECT_EQ(fake_quant(x, lo, hi).to_vector<float>(),
            (std::vector<float>{38.f / 128, -0.5f, 191.f / 128, 0.f, 0.f, 2.f / 128, -0.5f}));
}

TEST(FakeQuant, NudgesTheRangeSoThatZeroIsExact) {
  const Tensor lo = scalar(-0.1), hi = scalar(1.0);
  const float scale = 1.1f / 255;
  const float nlo = -23 * scale;  // zero point round(0.1 / scale) = 23
  Tensor x = from_vector<float>({0.f, -5.f, 5.f, -0.1f});
  const std::vector<float> y = fake_quant(x, lo, hi).to_vector<float>();
  EXPECT_EQ(y[0], 0.f);
  EXPECT_FLOAT_EQ(y[1], nlo);
  EXPECT_FLOAT_EQ(y[2], nlo + 255 * scale);
  EXPECT_FLOAT_EQ(y[3], nlo);
  // A range not containing 0 is widened to it.
  const std::vector<float> w =
      fake_quant(from_vector<float>({0.f, 3.f}), scalar(1.0), scalar(2.0)).to_vector<float>();
  EXPECT_EQ(w[0], 0.f);
  EXPECT_FLOAT_EQ(w[1], 2.f);
}

TEST(FakeQuant, PerChannelSymmetricWeightsKeepTheirExtremes) {
  Tensor w = from_vector<float>({0.5f, -2.f, 0.25f, 1.f, -0.5f, 0.3f}).reshape({3, 2});
  const Tensor amax = from_vector<float>({0.5f, 2.f});
  Tensor q = fake_quant(w, neg(amax), amax, -127, 127);
  const std::vector<float> v = q.to_vector<float>();
  EXPECT_FLOAT_EQ(v[0], 0.5f);
  EXPECT_FLOAT_EQ(v[1], -2.f);
  EXPECT_FLOAT_EQ(v[4], -0.5f);
  const float s0 = 1.f / 254, s1 = 4.f / 254;  // (hi - lo) / (qmax - qmin)
  EXPECT_FLOAT_EQ(v[2], std::nearbyint(0.25f * (1 / s0)) * s0);
  EXPECT_FLOAT_EQ(v[5], std::nearbyint(0.3f * (1 / s1)) * s1);
  EXPECT_FLOAT_EQ(v[3], std::nearbyint(1.f * (1 / s1)) * s1);
  // A zero-width channel gives zeros.
  EXPECT_EQ(fake_quant(w, zeros({2}), from_vector<float>({0.f, 2.f})).to_vector<float>()[0], 0.f);
  EXPECT_EQ(fake_quant(ones({4}), scalar(0.0), scalar(0.0)).to_vector<float>(),
            (std::vector<float>(4, 0.f)));
}

TEST(FakeQuant, FastMatchesReferenceOnAwkwardShapes) {
  struct Case {
    Shape x;
    bool per_channel;
    int64_t qmin, qmax;
  };
  const std::vector<Case> cases = {{{7, 13}, false, 0, 255},      {{7, 13}, true, -127, 127},
                                   {{3, 5, 2, 9}, true, -63, 63}, {{100003}, false, 0, 255},
                                   {{300, 301}, true, 0, 255},    {{1}, false, -128, 127},
                                   {{0, 5}, true, 0, 255}};
  uint64_t seed = 1;
  for (DType t : {float32, float64}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(to_string(c.x) + (c.per_channel ? " per channel" : " per tensor"));
      const Tensor x = random_tensor(c.x, t, seed++, -3, 3);
      const Shape bounds = c.per_channel ? Shape{c.x[c.x.rank() - 1]} : Shape{};
      const Tensor lo = random_tensor(bounds, t, seed++, -2, -0.1);
      const Tensor hi = random_tensor(bounds, t, seed++, 0.1, 2);
      check_fast_matches_reference([&] { return fake_quant(x, lo, hi, c.qmin, c.qmax); }, 0, 0);
      // The two gradient ops.
      const Tensor dy = random_tensor(c.x, t, seed++, -1, 1);
      const Attrs a{c.qmin, c.qmax};
      check_fast_matches_reference(
          [&] {
            return run_op(ops::kFakeQuantGrad, {dy, x, lo, hi}, a);
          },
          0, 0);
      for (int out : {0, 1}) {
        check_fast_matches_reference(
            [&] {
              const Tensor in[4] = {dy, x, lo, hi};
              Tensor res[2];
              run_op(ops::kFakeQuantRangeGrad, in, a, res);
              return res[out];
            },
            0, 0);
      }
    }
  }
}

// sum(y * r) for y = fake_quant(x, lo, hi) and its straight-through surrogate clamp(x, lo, hi).
double weighted(const std::vector<double>& y, const std::vector<double>& r) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

TEST(FakeQuant, GradientIsTheClippingsAwayFromTheEdges) {
  // An exact grid (scale 2^-6, zero point 32), so the surrogate clamp(x, lo, hi) has the same
  // edges as the nudged range. Points are kept 0.01 away from the edges.
  const double lo = -0.5, hi = 223.0 / 64;
  const std::vector<double> xs = {-0.9, -0.3, 0.0, 0.2, 1.7, 3.3, 3.6, 5.0, -0.49, 3.48};
  const std::vector<double> rs = {0.3, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -2.5, 1.3, -0.6};
  Tensor x = from_vector<double>(xs), r = from_vector<double>(rs);
  Tensor tlo = scalar(lo, float64), thi = scalar(hi, float64);
  GradientTape tape;
  tape.watch(x);
  tape.watch(tlo);
  tape.watch(thi);
  Tensor loss = sum(fake_quant(x, tlo, thi) * r);
  const std::vector<Tensor> g = tape.gradient(loss, {x, tlo, thi});
  // Central differences of the surrogate, in float64.
  auto surrogate = [&](std::vector<double> v, double l, double h) {
    for (double& e : v) e = std::min(std::max(e, l), h);
    return weighted(v, rs);
  };
  const double eps = 1e-6;
  const std::vector<double> gx = g[0].to_vector<double>();
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<double> up = xs, down = xs;
    up[i] += eps;
    down[i] -= eps;
    const double fd = (surrogate(up, lo, hi) - surrogate(down, lo, hi)) / (2 * eps);
    EXPECT_NEAR(gx[i], fd, 1e-6) << "x[" << i << "] = " << xs[i];
  }
  const double fd_lo = (surrogate(xs, lo + eps, hi) - surrogate(xs, lo - eps, hi)) / (2 * eps);
  const double fd_hi = (surrogate(xs, lo, hi + eps) - surrogate(xs, lo, hi - eps)) / (2 * eps);
  EXPECT_NEAR(g[1].item<double>(), fd_lo, 1e-6);
  EXPECT_NEAR(g[2].item<double>(), fd_hi, 1e-6);
  // The clipping explicitly: outside [lo, hi] x gets nothing, the bound gets the sum.
  EXPECT_EQ(gx[0], 0.0);
  EXPECT_EQ(gx[6], 0.0);
  EXPECT_EQ(gx[7], 0.0);
  EXPECT_EQ(gx[1], rs[1]);
  EXPECT_DOUBLE_EQ(g[1].item<double>(), rs[0]);
  EXPECT_DOUBLE_EQ(g[2].item<double>(), rs[6] + rs[7]);
}

TEST(FakeQuant, PerChannelRangeGradientsSumPerChannel) {
  Tensor x = from_vector<double>({-3, 0.1, 0.2, 5, 4, -7}).reshape({3, 2});
  Tensor lo = from_vector<double>({-1, -1}), hi = from_vector<double>({1, 1});
  GradientTape tape;
  tape.watch(x);
  tape.watch(lo);
  tape.watch(hi);
  Tensor loss = sum(fake_quant(x, lo, hi, -127, 127) *
                    from_vector<double>({1, 2, 3, 4, 5, 6}).reshape({3, 2}));
  const std::vector<Tensor> g = tape.gradient(loss, {x, lo, hi});
  EXPECT_EQ(g[0].to_vector<double>(), (std::vector<double>{0, 2, 3, 0, 0, 0}));
  EXPECT_EQ(g[1].to_vector<double>(), (std::vector<double>{1, 6}));
  EXPECT_EQ(g[2].to_vector<double>(), (std::vector<double>{5, 4}));
}

TEST(FakeQuant, GradientOfTheGradientIsTheMaskInDy) {
  // d/dw of <grad_x sum(fake_quant(x) * w), r> = r * mask.
  Tensor x = from_vector<double>({-2, 0.3, 0.9, 4});
  Tensor w = from_vector<double>({1, 1, 1, 1}), r = from_vector<double>({5, 6, 7, 8});
  GradientTape outer;
  outer.watch(w);
  Tensor gx;
  {
    GradientTape inner;
    inner.watch(x);
    Tensor l = sum(fake_quant(x, scalar(-1.0, float64), scalar(1.0, float64)) * w);
    gx = inner.gradient(l, {x})[0];
  }
  Tensor gw = outer.gradient(sum(gx * r), {w})[0];
  EXPECT_EQ(gw.to_vector<double>(), (std::vector<double>{0, 6, 7, 0}));
}

TEST(FakeQuant, Errors) {
  const Tensor x = ones({2, 3});
  expect_error<ValueError>([&] { fake_quant(x, scalar(1.0), scalar(-1.0)); },
                           {"fake_quant", "lo", "exceeds hi"});
  expect_error<ValueError>([&] { fake_quant(x, scalar(NAN), scalar(1.0)); },
                           {"fake_quant", "finite"});
  expect_error<ValueError>([&] { fake_quant(x, scalar(-1.0), scalar(1.0), 5, 5); },
                           {"fake_quant", "qmin < qmax", "5 and 5"});
  expect_error<ShapeError>([&] { fake_quant(x, zeros({2}), ones({2})); },
                           {"fake_quant", "[2, 3]", "per channel"});
  expect_error<ShapeError>([&] { fake_quant(x, zeros({3}), scalar(1.0)); },
                           {"fake_quant", "both be scalars"});
  expect_error<DTypeError>([&] { fake_quant(ones({2}, DType::kInt32), scalar(0.0), scalar(1.0)); },
                           {"fake_quant", "floating", "int32"});
  expect_error<DTypeError>([&] { fake_quant(x, scalar(0.0, float64), scalar(1.0)); },
                           {"fake_quant", "float32", "float64"});
  // The gradient ops check like the op.
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kFakeQuantGrad, {ones({3}), x, scalar(0.0), scalar(1.0)}, Attrs{0, 255});
      },
      {"fake_quant_grad", "dy must have x's shape"});
  expect_error<ShapeError>(
      [&] {
        Tensor out[2];
        const Tensor in[4] = {ones({3}), x, scalar(0.0), scalar(1.0)};
        run_op(ops::kFakeQuantRangeGrad, in, Attrs{0, 255}, out);
      },
      {"fake_quant_range_grad", "dy must have x's shape"});
}

}  // namespace
}  // namespace kiln
