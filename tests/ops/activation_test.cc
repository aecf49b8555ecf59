// Tests for src/ops/activation.cc: fast (float32) vs reference kernels, values against the
// textbook formulas, float64 gradient checks (first and second order) and error messages.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

const std::vector<Shape> kAwkwardShapes = {
    Shape{}, Shape{1}, Shape{7}, Shape{3, 5}, Shape{0, 3}, Shape{2, 1, 17}, Shape{300, 257}};

// Values in [-1, -0.1] U [0.1, 1] times `scale`: finite differences never straddle a kink.
Tensor away_from_zero(const Shape& s, uint64_t seed, double scale = 1) {
  std::vector<double> v = random_tensor(s, float64, seed, 0.1, 1).to_vector<double>();
  std::vector<double> sign = random_tensor(s, float64, seed + 7, -1, 1).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) v[i] *= (sign[i] < 0 ? -scale : scale);
  return from_vector(v, s);
}

// Values that stress the float32 kernels: zeros, tails, infinities and NaN.
Tensor special_values() {
  const float inf = std::numeric_limits<float>::infinity();
  return from_vector<float>({0.0f,    -0.0f, 1e-8f,  -1e-8f, 0.29f, 0.31f,        -0.31f,
                             5.0f,    -5.0f, 20.0f,  -20.0f, 80.0f, -80.0f,       100.0f,
                             -100.0f, 1e30f, -1e30f, inf,    -inf,  std::nanf("")});
}

// ---- fast vs reference ----------------------------------------------------------------------

struct Named {
  const char* name;
  Tensor (*fn)(const Tensor&);
};
Tensor leaky_default(const Tensor& x) { return leaky_relu(x); }
Tensor leaky_big(const Tensor& x) { return leaky_relu(x, 1.5); }
Tensor gelu_exact(const Tensor& x) { return gelu(x, false); }
Tensor gelu_approx(const Tensor& x) { return gelu(x, true); }
const Named kPointwise[] = {
    {"relu", relu},       {"leaky_relu", leaky_default}, {"leaky_relu 1.5", leaky_big},
    {"gelu", gelu_exact}, {"gelu approx", gelu_approx},  {"sigmoid", sigmoid},
    {"tanh", tanh}};

TEST(ActivationTest, PointwiseFastMatchesReferenceOnAwkwardShapes) {
  for (const Named& op : kPointwise) {
    SCOPED_TRACE(op.name);
    for (const Shape& s : kAwkwardShapes) {
      SCOPED_TRACE(to_string(s));
      Tensor x = random_tensor(s, float32, 3, -6, 6);
      check_fast_matches_reference([&] { return op.fn(x); });
    }
    Tensor sv = special_values();
    check_fast_matches_reference([&] { return op.fn(sv); });
    Tensor wide = random_tensor({4096}, float32, 9, -30, 30);
    check_fast_matches_reference([&] { return op.fn(wide); }, 1e-5, 1e-6);
  }
}

TEST(ActivationTest, GradOpsFastMatchReference) {
  for (const Shape& s : kAwkwardShapes) {
    SCOPED_TRACE(to_string(s));
    Tensor g = random_tensor(s, float32, 4), x = random_tensor(s, float32, 5, -6, 6);
    check_fast_matches_reference([&] { return run_op(ops::kReluGrad, {g, x}); });
    check_fast_matches_reference([&] {
      return run_op(ops::kLeakyReluGrad, {g, x}, Attrs().add_float(0.3));
    });
    check_fast_matches_reference([&] { return run_op(ops::kGeluGrad, {g, x}, Attrs{0}); });
    check_fast_matches_reference([&] { return run_op(ops::kGeluGrad, {g, x}, Attrs{1}); });
  }
}

// ---- values ---------------------------------------------------------------------------------

double gelu_exact_d(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double gelu_approx_d(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(ActivationTest, ValuesMatchFormulasInBothDtypes) {
  std::vector<double> xs;
  for (double v = -9; v <= 9; v += 0.37) xs.push_back(v);
  std::vector<double> want_relu, want_leaky, want_ge, want_ga, want_sig, want_tanh;
  for (double v : xs) {
    want_relu.push_back(v > 0 ? v : 0);
    want_leaky.push_back(v > 0 ? v : 0.2 * v);
    want_ge.push_back(gelu_exact_d(v));
    want_ga.push_back(gelu_approx_d(v));
    want_sig.push_back(1 / (1 + std::exp(-v)));
    want_tanh.push_back(std::tanh(v));
  }
  for (DType dt : {float32, float64}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == float32 ? 2e-6 : 1e-12;
    Tensor x = cast(from_vector(xs), dt);
    auto want = [&](const std::vector<double>& v) { return cast(from_vector(v), dt); };
    EXPECT_TRUE(all_close(relu(x), want(want_relu), tol, tol));
    EXPECT_TRUE(all_close(leaky_relu(x), want(want_leaky), tol, tol));
    EXPECT_TRUE(all_close(gelu(x), want(want_ge), tol, tol));
    EXPECT_TRUE(all_close(gelu(x, true), want(want_ga), tol, tol));
    EXPECT_TRUE(all_close(sigmoid(x), want(want_sig), tol, tol));
    EXPECT_TRUE(all_close(tanh(x), want(want_tanh), tol, tol));
  }
}

// Near zero the float32 kernels must keep relative precision (tanh(x) ~ x, gelu(x) ~ x/2).
TEST(ActivationTest, TinyInputsKeepRelativePrecision) {
  std::vector<double> xs = {1e-30, -1e-20, 3e-8, -1e-6, 2e-4, -0.01, 0.1, -0.29, 0.299, 0.31};
  std::vector<double> want_tanh, want_gelu;
  for (double v : xs) {
    want_tanh.push_back(std::tanh(static_cast<double>(static_cast<float>(v))));
    want_gelu.push_back(gelu_exact_d(static_cast<double>(static_cast<float>(v))));
  }
  Tensor x = cast(from_vector(xs), float32);
  EXPECT_TRUE(all_close(cast(tanh(x), float64), from_vector(want_tanh), 1e-6, 0));
  EXPECT_TRUE(all_close(cast(gelu(x), float64), from_vector(want_gelu), 1e-6, 0));
}

TEST(ActivationTest, ExtremeInputsStayFinite) {
  Tensor x = from_vector<float>({-1000, -100, 100, 1000});
  EXPECT_TRUE(all_close(sigmoid(x), from_vector<float>({0, 0, 1, 1}), 0, 1e-30));
  EXPECT_TRUE(all_close(tanh(x), from_vector<float>({-1, -1, 1, 1})));
  EXPECT_TRUE(all_close(gelu(x), from_vector<float>({0, 0, 100, 1000})));
  EXPECT_TRUE(all_close(gelu(x, true), from_vector<float>({0, 0, 100, 1000})));
  Tensor big = from_vector<float>({1000, 1000, -1000}, {1, 3});
  EXPECT_TRUE(all_close(softmax(big), from_vector<float>({0.5, 0.5, 0}, {1, 3})));
  EXPECT_TRUE(all_close(
      log_softmax(big),
      from_vector<float>({-std::log(2.0f), -std::log(2.0f), -2000 - std::log(2.0f)}, {1, 3}), 1e-6,
      1e-4));
  EXPECT_TRUE(std::isnan(relu(from_vector<float>({std::nanf("")})).item<float>()));
}

// ---- softmax / log_softmax ------------------------------------------------------------------

struct AxisCase {
  Shape shape;
  int axis;
};
const AxisCase kAxisCases[] = {
    {{1}, 0},         {{7}, -1},      {{5, 1}, -1},       {{5, 1}, 0},       {{2, 3, 5}, -1},
    {{2, 3, 5}, 0},   {{2, 3, 5}, 1}, {{0, 3}, -1},       {{3, 0}, -1},      {{3, 0}, 0},
    {{300, 257}, -1}, {{64, 10}, 1},  {{4, 300, 100}, 1}, {{2, 33, 19}, -2}, {{1, 1, 4099}, 2}};

TEST(ActivationTest, SoftmaxFastMatchesReferenceOnEveryAxis) {
  for (const AxisCase& c : kAxisCases) {
    SCOPED_TRACE(to_string(c.shape) + " axis " + std::to_string(c.axis));
    Tensor x = random_tensor(c.shape, float32, 11, -20, 20);
    check_fast_matches_reference([&] { return softmax(x, c.axis); });
    check_fast_matches_reference([&] { return log_softmax(x, c.axis); }, 1e-5, 1e-5);
  }
}

TEST(ActivationTest, SoftmaxSumsToOneAndMatchesLogSoftmax) {
  for (const AxisCase& c : kAxisCases) {
    if (c.shape.numel() == 0) continue;
    SCOPED_TRACE(to_string(c.shape) + " axis " + std::to_string(c.axis));
    for (DType dt : {float32, float64}) {
      Tensor x = random_tensor(c.shape, dt, 12, -5, 5);
      Tensor y = softmax(x, c.axis);
      const double tol = dt == float32 ? 1e-5 : 1e-12;
      EXPECT_TRUE(all_close(sum(y, {c.axis}), ones(sum(x, {c.axis}).shape(), dt), tol, tol));
      EXPECT_TRUE(all_close(exp(log_softmax(x, c.axis)), y, tol, tol));
    }
  }
  // Known values: softmax([0, ln 3]) = [1/4, 3/4].
  Tensor x = from_vector<double>({0, std::log(3.0)}, {1, 2});
  EXPECT_TRUE(all_close(softmax(x), from_vector<double>({0.25, 0.75}, {1, 2}), 1e-14, 1e-14));
}

TEST(ActivationTest, SoftmaxOfNanRowIsNanOnlyInThatRow) {
  Tensor x = from_vector<float>({1, std::nanf(""), 2, 1, 2, 3}, {2, 3});
  for (bool ref : {false, true}) {
    std::vector<float> y;
    if (ref) {
      ForceReferenceScope scope;
      y = softmax(x).to_vector<float>();
    } else {
      y = softmax(x).to_vector<float>();
    }
    EXPECT_TRUE(std::isnan(y[1]));
    EXPECT_FALSE(std::isnan(y[3]));
    EXPECT_NEAR(y[3] + y[4] + y[5], 1.0, 1e-6);
  }
}

// ---- gradients ------------------------------------------------------------------------------

TEST(ActivationTest, PointwiseGradients) {
  const Shape s{3, 5};
  check_gradients([](const auto& in) { return relu(in[0]); }, {away_from_zero(s, 1)});
  check_gradients([](const auto& in) { return leaky_relu(in[0]); }, {away_from_zero(s, 2)});
  check_gradients([](const auto& in) { return leaky_relu(in[0], 1.7); }, {away_from_zero(s, 3)});
  check_gradients([](const auto& in) { return gelu(in[0]); }, {away_from_zero(s, 4, 3)});
  check_gradients([](const auto& in) { return gelu(in[0], true); }, {away_from_zero(s, 5, 3)});
  check_gradients([](const auto& in) { return sigmoid(in[0]); }, {away_from_zero(s, 6, 4)});
  check_gradients([](const auto& in) { return tanh(in[0]); }, {away_from_zero(s, 7, 2)});
}

TEST(ActivationTest, SoftmaxGradients) {
  for (int axis : {-1, 0, 1}) {
    SCOPED_TRACE(axis);
    Tensor x = random_tensor({2, 3, 4}, float64, 20 + axis, -3, 3);
    check_gradients([axis](const auto& in) { return softmax(in[0], axis); }, {x});
    check_gradients([axis](const auto& in) { return log_softmax(in[0], axis); }, {x});
  }
  check_gradients([](const auto& in) { return softmax(in[0]); }, {random_tensor({1}, float64, 3)});
}

// d/dx of (dy/dx * w) with an inner tape: exercises the grad ops' own gradient rules.
Tensor inner_gradient(Tensor (*f)(const Tensor&), const Tensor& x, const Tensor& w) {
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(f(x) * w);
  return tape.gradient(y, {x})[0];
}

TEST(ActivationTest, SecondOrderGradients) {
  const Shape s{2, 7};
  Tensor w = random_tensor(s, float64, 31, 0.5, 1.5);
  for (const Named& op : kPointwise) {
    SCOPED_TRACE(op.name);
    auto f = op.fn;
    const std::string name = op.name;
    if (name.starts_with("relu") || name.starts_with("leaky")) {
      // Piecewise linear: the second derivative in x is zero, so only g (here w) gets one.
      Tensor x = away_from_zero(s, 33, 2);
      check_gradients([&](const auto& in) { return inner_gradient(f, x, in[0]); }, {w.clone()});
    } else {
      check_gradients([&](const auto& in) { return inner_gradient(f, in[0], in[1]); },
                      {away_from_zero(s, 32, 2), w.clone()});
    }
  }
}

// ---- errors ---------------------------------------------------------------------------------

TEST(ActivationTest, ErrorsNameOpAndDtypeOrShape) {
  Tensor i = zeros({2, 3}, int32);
  for (const Named& op : kPointwise) {
    expect_error<DTypeError>([&] { op.fn(i); }, {"int32", "float"});
  }
  expect_error<DTypeError>([&] { relu(i); }, {"relu", "int32"});
  expect_error<DTypeError>([&] { gelu(zeros({2}, boolean)); }, {"gelu", "bool"});
  expect_error<DTypeError>([&] { softmax(i); }, {"softmax", "int32"});
  expect_error<DTypeError>([&] { log_softmax(zeros({3}, int64)); }, {"log_softmax", "int64"});
  expect_error<ValueError>([&] { softmax(zeros({2, 3}), 2); }, {"softmax", "axis 2", "rank 2"});
  expect_error<ValueError>(
      [&] {
        log_softmax(zeros({2, 3}), -3);
      },
      {"log_softmax", "axis -3", "rank 2"});
  expect_error<ShapeError>([&] { softmax(scalar(1)); }, {"softmax", "[]"});
  expect_error<ShapeError>([&] { log_softmax(scalar(1)); }, {"log_softmax", "[]"});

  Tensor g = zeros({2, 3}), x = zeros({3, 2});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kReluGrad, {g, x});
      },
      {"relu_grad", "[2, 3]", "[3, 2]"});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kLeakyReluGrad, {g, x}, Attrs().add_float(0.2));
      },
      {"leaky_relu_grad", "[2, 3]", "[3, 2]"});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kGeluGrad, {g, x}, Attrs{0});
      },
      {"gelu_grad", "[2, 3]", "[3, 2]"});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kReluGrad, {g, zeros({2, 3}, float64)});
      },
      {"relu_grad", "float32", "float64"});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kGeluGrad, {i, i}, Attrs{0});
      },
      {"gelu_grad", "int32"});
}

}  // namespace
}  // namespace kiln
