// Tests for src/ops/elementwise.cc: fast vs reference kernels and values against an
// independent naive broadcasting loop, on awkward shapes (broadcasting, scalars, size 1, empty,
// multi-threaded sizes); float64 gradient checks; error messages.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::Expect;
using testing::expect_error;
using testing::random_tensor;

struct ShapePair {
  Shape a, b, out;
};
const std::vector<ShapePair> kPairs = {{{3, 1, 5}, {4, 1}, {3, 4, 5}},
                                       {{}, {3, 4}, {3, 4}},
                                       {{3, 4}, {}, {3, 4}},
                                       {{}, {}, {}},
                                       {{1}, {7}, {7}},
                                       {{0, 3}, {1, 3}, {0, 3}},
                                       {{0, 3}, {3}, {0, 3}},
                                       {{2, 3, 4}, {2, 1, 4}, {2, 3, 4}},
                                       {{300, 257}, {300, 257}, {300, 257}},
                                       {{300, 257}, {257}, {300, 257}},
                                       {{300, 1}, {1, 257}, {300, 257}},
                                       {{1, 1}, {1}, {1, 1}}};

// out[i] = f(a[..], b[..]) by explicit multi-index arithmetic, independent of kernels/.
std::vector<double> naive_binary(const Tensor& a, const Tensor& b, const Shape& out,
                                 const std::function<double(double, double)>& f) {
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> r(out.numel());
  auto offset = [&](const std::vector<int64_t>& idx, const Shape& s) {
    int64_t off = 0;
    for (int d = 0; d < s.rank(); ++d) {
      int64_t c = idx[d + out.rank() - s.rank()];
      off = off * s[d] + (s[d] == 1 ? 0 : c);
    }
    return off;
  };
  std::vector<int64_t> idx(out.rank());
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t rem = i;
    for (int d = out.rank() - 1; d >= 0; --d) {
      idx[d] = rem % out[d];
      rem /= out[d];
    }
    r[i] = f(av[offset(idx, a.shape())], bv[offset(idx, b.shape())]);
  }
  return r;
}

struct BinaryCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&);
  double (*f)(double, double);
  bool float_only;
};
const BinaryCase kArith[] = {
    {"add", add, [](double a, double b) { return a + b; }, false},
    {"sub", sub, [](double a, double b) { return a - b; }, false},
    {"mul", mul, [](double a, double b) { return a * b; }, false},
    {"div", div, [](double a, double b) { return a / b; }, false},
    {"pow", pow, [](double a, double b) { return std::pow(a, b); }, true},
    {"maximum", maximum, [](double a, double b) { return a >= b ? a : b; }, false},
    {"minimum", minimum, [](double a, double b) { return a <= b ? a : b; }, false},
};

// Inputs that suit op `name`: positive bases for pow, non-zero divisors.
Tensor operand(const char* name, const Shape& s, DType dt, uint64_t seed, bool second) {
  std::string n = name;
  if (n == "pow") return random_tensor(s, dt, seed, second ? -2 : 0.1, second ? 2 : 3);
  if (is_floating(dt)) {
    if (n == "div" && second) return random_tensor(s, dt, seed, 0.5, 2);
    return random_tensor(s, dt, seed, -3, 3);
  }
  if (n == "div" && second) return random_tensor(s, dt, seed, 1, 9);
  return random_tensor(s, dt, seed, -50, 50);
}

TEST(ElementwiseTest, BinaryFastMatchesReferenceAndNaiveLoops) {
  for (const BinaryCase& c : kArith) {
    for (DType dt : {float32, float64, int32, int64}) {
      if (c.float_only && !is_floating(dt)) continue;
      for (const ShapePair& p : kPairs) {
        SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " " +
                     to_string(p.a) + " " + to_string(p.b));
        Tensor a = operand(c.name, p.a, dt, 1, false), b = operand(c.name, p.b, dt, 2, true);
        Tensor y = c.op(a, b);
        ASSERT_EQ(y.shape(), p.out);
        ASSERT_EQ(y.dtype(), dt);
        check_fast_matches_reference([&] { return c.op(a, b); });
        std::vector<double> want = naive_binary(a, b, p.out, c.f);
        if (!is_floating(dt)) {  // C++ integer division truncates toward zero
          for (double& v : want) v = std::trunc(v);
        }
        EXPECT_TRUE(all_close(y, cast(from_vector(want, p.out), dt), 1e-6, 1e-6));
      }
    }
  }
}

TEST(ElementwiseTest, SmallIntegerTypesWrapLikeCpp) {
  Tensor a = from_vector<int8_t>({100, -100, 7}), b = from_vector<int8_t>({100, -100, 2});
  EXPECT_EQ(add(a, b).to_vector<int>(), (std::vector<int>{-56, 56, 9}));
  Tensor u = from_vector<uint8_t>({250, 3}), v = from_vector<uint8_t>({10, 5});
  EXPECT_EQ(add(u, v).to_vector<int>(), (std::vector<int>{4, 8}));
  EXPECT_EQ(sub(v, u).to_vector<int>(), (std::vector<int>{16, 2}));
}

TEST(ElementwiseTest, IntegerDivisionByZeroAndOverflowDoNotTrap) {
  Tensor a = from_vector<int32_t>({7, -7, 0, std::numeric_limits<int32_t>::min(), 9});
  Tensor b = from_vector<int32_t>({0, 2, 0, -1, -1});
  const int32_t mn = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(div(a, b).to_vector<int32_t>(), (std::vector<int32_t>{0, -3, 0, mn, -9}));
  {
    ForceReferenceScope scope;
    EXPECT_EQ(div(a, b).to_vector<int32_t>(), (std::vector<int32_t>{0, -3, 0, mn, -9}));
  }
  const int64_t mn64 = std::numeric_limits<int64_t>::min();
  Tensor c = from_vector<int64_t>({mn64, 5}), d = from_vector<int64_t>({-1, 0});
  EXPECT_EQ(div(c, d).to_vector<int64_t>(), (std::vector<int64_t>{mn64, 0}));
  Tensor e = from_vector<int8_t>({-128, 9}), f = from_vector<int8_t>({-1, -1});
  EXPECT_EQ(div(e, f).to_vector<int>(), (std::vector<int>{-128, -9}));
  // uint8 255 is not -1.
  EXPECT_EQ(div(from_vector<uint8_t>({254}), from_vector<uint8_t>({255})).to_vector<int>(),
            (std::vector<int>{0}));
}

TEST(ElementwiseTest, MaximumMinimumPropagateNan) {
  const double nan = std::nan("");
  Tensor a = from_vector<double>({nan, 1, 2}), b = from_vector<double>({1, nan, 1});
  for (const Tensor& y : {maximum(a, b), minimum(a, b), maximum(b, a), minimum(b, a)}) {
    std::vector<double> v = y.to_vector<double>();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
  }
  EXPECT_EQ(maximum(a, b).to_vector<double>()[2], 2);
  EXPECT_EQ(minimum(a, b).to_vector<double>()[2], 1);
}

struct CompareCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&);
  double (*f)(double, double);
};
const CompareCase kCompare[] = {
    {"equal", equal, [](double a, double b) { return double(a == b); }},
    {"not_equal", not_equal, [](double a, double b) { return double(a != b); }},
    {"less", less, [](double a, double b) { return double(a < b); }},
    {"less_equal", less_equal, [](double a, double b) { return double(a <= b); }},
    {"greater", greater, [](double a, double b) { return double(a > b); }},
    {"greater_equal", greater_equal, [](double a, double b) { return double(a >= b); }},
};

TEST(ElementwiseTest, ComparisonsGiveBoolAndMatchNaiveLoops) {
  for (const CompareCase& c : kCompare) {
    for (DType dt : {float32, float64, int32, int64, uint8}) {
      for (const ShapePair& p : kPairs) {
        // One multi-threaded case per op is enough here (each costs a thread fork on a busy box).
        if (p.out.numel() > 10000 && (dt != float32 || p.a != p.b)) continue;
        SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " " +
                     to_string(p.a) + " " + to_string(p.b));
        // Few distinct values, so ties occur.
        Tensor a = cast(random_tensor(p.a, int32, 3, 0, 4), dt);
        Tensor b = cast(random_tensor(p.b, int32, 4, 0, 4), dt);
        Tensor y = c.op(a, b);
        ASSERT_EQ(y.dtype(), boolean);
        check_fast_matches_reference([&] { return cast(c.op(a, b), int32); });
        EXPECT_TRUE(
            all_close(cast(y, float64), from_vector(naive_binary(a, b, p.out, c.f), p.out)));
      }
    }
  }
  // NaN compares unequal to everything, itself included.
  Tensor n = from_vector<float>({std::nanf("")});
  EXPECT_FALSE(equal(n, n).item<bool>());
  EXPECT_TRUE(not_equal(n, n).item<bool>());
  EXPECT_FALSE(less_equal(n, n).item<bool>());
  // Bool tensors compare too.
  Tensor t = from_vector<bool>({true, false});
  EXPECT_EQ(equal(t, from_vector<bool>({true, true})).to_vector<int>(), (std::vector<int>{1, 0}));
}

struct UnaryCase {
  const char* name;
  Tensor (*op)(const Tensor&);
  double (*f)(double);
  double low, high;
  bool float_only;
};
const UnaryCase kUnary[] = {
    {"neg", neg, [](double x) { return -x; }, -5, 5, false},
    {"exp", exp, [](double x) { return std::exp(x); }, -20, 20, true},
    {"log", log, [](double x) { return std::log(x); }, 1e-3, 100, true},
    {"sqrt", sqrt, [](double x) { return std::sqrt(x); }, 0, 100, true},
    {"abs", abs, [](double x) { return std::abs(x); }, -5, 5, false},
    {"square", square, [](double x) { return x * x; }, -5, 5, false},
};

TEST(ElementwiseTest, UnaryValuesOnAwkwardShapes) {
  for (const UnaryCase& c : kUnary) {
    for (DType dt : {float32, float64, int32, int64}) {
      if (c.float_only && !is_floating(dt)) continue;
      for (const Shape& s : {Shape{}, Shape{1}, Shape{7}, Shape{0, 3}, Shape{300, 257}}) {
        if (s.numel() > 10000 && dt != float32 && dt != int32) continue;
        SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " " + to_string(s));
        Tensor x = random_tensor(s, dt, 5, c.low, c.high);
        std::vector<double> want;
        for (double v : x.to_vector<double>()) want.push_back(c.f(v));
        Tensor y = c.op(x);
        ASSERT_EQ(y.dtype(), dt);
        EXPECT_TRUE(all_close(y, cast(from_vector(want, s), dt), 1e-6, 1e-6));
        // neg exp log sqrt abs square have no separate fast kernel: their one kernel is the
        // vectorizable reference loop.
        check_fast_matches_reference([&] { return c.op(x); }, 1e-5, 1e-6, Expect::kDeclined);
      }
    }
  }
  EXPECT_TRUE(std::isnan(log(scalar(-1.0)).item<double>()));
  EXPECT_TRUE(std::isinf(log(scalar(0.0)).item<double>()));
}

TEST(ElementwiseTest, WhereBroadcastsAllThree) {
  Tensor cond = greater(random_tensor({3, 1}, float32, 6), scalar(0.0f));
  Tensor a = random_tensor({1, 4}, float32, 7), b = scalar(5.0f);
  Tensor y = where(cond, a, b);
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  std::vector<int> cv = cast(cond, int32).to_vector<int>();
  std::vector<float> av = a.to_vector<float>(), yv = y.to_vector<float>();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(yv[i * 4 + j], cv[i] ? av[j] : 5.0f);
  }
  check_fast_matches_reference([&] { return where(cond, a, b); });
  Tensor big_c = less(random_tensor({300, 257}, float32, 8), scalar(0.0f));
  Tensor big_a = random_tensor({257}, float64, 9), big_b = random_tensor({300, 1}, float64, 10);
  check_fast_matches_reference([&] { return where(big_c, big_a, big_b); });
  check_fast_matches_reference([&] {
    return where(zeros({0, 3}, boolean), zeros({3}), ones({1}));
  });
}

TEST(ElementwiseTest, CastTruncatesSaturatesAndMapsBool) {
  Tensor x = from_vector<double>({-1.7, 1.7, 0, 1e20, -1e20, std::nan(""), 255.5, -0.5});
  EXPECT_EQ(cast(x, int32).to_vector<int64_t>(),
            (std::vector<int64_t>{-1, 1, 0, std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int32_t>::min(), 0, 255, 0}));
  EXPECT_EQ(cast(x, uint8).to_vector<int>(), (std::vector<int>{0, 1, 0, 255, 0, 0, 255, 0}));
  EXPECT_EQ(cast(x, boolean).to_vector<int>(), (std::vector<int>{1, 1, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(cast(from_vector<bool>({true, false}), float32).to_vector<float>(),
            (std::vector<float>{1, 0}));
  EXPECT_EQ(cast(from_vector<int64_t>({-3, 4}), float64).to_vector<double>(),
            (std::vector<double>{-3, 4}));
  Tensor f = from_vector<float>({1, 2});
  EXPECT_EQ(cast(f, float32).impl(), f.impl());  // same dtype: no copy
  EXPECT_EQ(cast(zeros({0, 2}), int8).shape(), (Shape{0, 2}));
}

TEST(ElementwiseTest, BroadcastToAndSumTo) {
  Tensor x = random_tensor({3, 1}, float32, 11);
  Tensor y = broadcast_to(x, {2, 3, 4});
  std::vector<float> xv = x.to_vector<float>(), yv = y.to_vector<float>();
  for (int i = 0; i < 24; ++i) EXPECT_EQ(yv[i], xv[(i / 4) % 3]);
  check_fast_matches_reference([&] { return broadcast_to(x, {2, 3, 4}); });
  EXPECT_EQ(broadcast_to(scalar(2.0f), {5}).to_vector<float>(), std::vector<float>(5, 2.0f));
  EXPECT_EQ(broadcast_to(zeros({0, 1}), {0, 3}).shape(), (Shape{0, 3}));

  // sum_to is broadcast_to's adjoint: <broadcast_to(a), b> == <a, sum_to(b)>.
  struct Case {
    Shape big, small;
  };
  for (const Case& c : {Case{{2, 3, 4}, {3, 1}}, Case{{2, 3, 4}, {}}, Case{{2, 3, 4}, {2, 1, 4}},
                        Case{{300, 257}, {257}}, Case{{300, 257}, {300, 1}},
                        Case{{600, 500}, {500}}, Case{{0, 3}, {3}}, Case{{5}, {1}}}) {
    SCOPED_TRACE(to_string(c.big) + " -> " + to_string(c.small));
    for (DType dt : {float64, int32}) {
      Tensor b = random_tensor(c.big, dt, 12, -9, 9);
      Tensor s = sum_to(b, c.small);
      ASSERT_EQ(s.shape(), c.small);
      std::vector<double> want(c.small.numel(), 0.0);
      Shape idx_shape = c.big;
      std::vector<double> bv = b.to_vector<double>();
      // Position of each big element in `small`, via a naive broadcast of an index tensor.
      Tensor index = arange(0, static_cast<double>(c.small.numel()), 1, float64).reshape(c.small);
      std::vector<double> where_to = broadcast_to(index, c.big).to_vector<double>();
      for (size_t i = 0; i < bv.size(); ++i) want[static_cast<size_t>(where_to[i])] += bv[i];
      EXPECT_TRUE(all_close(s, cast(from_vector(want, c.small), dt), 1e-9, 1e-9));
      check_fast_matches_reference([&] { return sum_to(b, c.small); }, 1e-9, 1e-9);
    }
  }
}

TEST(ElementwiseTest, OperatorsWithScalars) {
  Tensor x = from_vector<float>({1, 2, 4});
  EXPECT_EQ((x + 1.5).to_vector<float>(), (std::vector<float>{2.5, 3.5, 5.5}));
  EXPECT_EQ((1.5 + x).to_vector<float>(), (std::vector<float>{2.5, 3.5, 5.5}));
  EXPECT_EQ((x - 1).to_vector<float>(), (std::vector<float>{0, 1, 3}));
  EXPECT_EQ((2.0 - x).to_vector<float>(), (std::vector<float>{1, 0, -2}));
  EXPECT_EQ((x * 3).to_vector<float>(), (std::vector<float>{3, 6, 12}));
  EXPECT_EQ((3 * x).to_vector<float>(), (std::vector<float>{3, 6, 12}));
  EXPECT_EQ((x / 2).to_vector<float>(), (std::vector<float>{0.5, 1, 2}));
  EXPECT_EQ((4.0 / x).to_vector<float>(), (std::vector<float>{4, 2, 1}));
  EXPECT_EQ((-x).to_vector<float>(), (std::vector<float>{-1, -2, -4}));
  EXPECT_EQ((x + x * x - x / x).to_vector<float>(), (std::vector<float>{1, 5, 19}));
  // The scalar takes the tensor's dtype (so 1.5 becomes 1 beside an int32 tensor).
  Tensor i = from_vector<int32_t>({1, 2});
  Tensor r = i + 1.5;
  EXPECT_EQ(r.dtype(), int32);
  EXPECT_EQ(r.to_vector<int32_t>(), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(scalar_like(2.5, x).dtype(), float32);
  EXPECT_EQ(scalar_like(2.5, x).rank(), 0);
}

// ---- gradients (float64) ------------------------------------------------------------------------

TEST(ElementwiseTest, BinaryGradientsWithBroadcasting) {
  for (const ShapePair& p : {ShapePair{{3, 1, 5}, {4, 1}, {}}, ShapePair{{}, {2, 3}, {}},
                             ShapePair{{2, 3}, {2, 3}, {}}, ShapePair{{1}, {4}, {}}}) {
    SCOPED_TRACE(to_string(p.a) + " " + to_string(p.b));
    Tensor a = random_tensor(p.a, float64, 13, -2, 2), b = random_tensor(p.b, float64, 14, -2, 2);
    Tensor pos_a = random_tensor(p.a, float64, 15, 0.5, 2);
    Tensor pos_b = random_tensor(p.b, float64, 16, 0.5, 2);
    check_gradients([](const auto& in) { return add(in[0], in[1]); }, {a, b});
    check_gradients([](const auto& in) { return sub(in[0], in[1]); }, {a, b});
    check_gradients([](const auto& in) { return mul(in[0], in[1]); }, {a, b});
    check_gradients([](const auto& in) { return div(in[0], in[1]); }, {a, pos_b});
    check_gradients([](const auto& in) { return pow(in[0], in[1]); }, {pos_a, b}, 1e-6, 1e-5);
    // Random values never tie, so max/min are differentiable here.
    check_gradients([](const auto& in) { return maximum(in[0], in[1]); }, {a, b});
    check_gradients([](const auto& in) { return minimum(in[0], in[1]); }, {a, b});
  }
}

TEST(ElementwiseTest, UnaryAndStructuralGradients) {
  Tensor x = random_tensor({3, 4}, float64, 17, -2, 2);
  Tensor pos = random_tensor({3, 4}, float64, 18, 0.2, 3);
  check_gradients([](const auto& in) { return neg(in[0]); }, {x});
  check_gradients([](const auto& in) { return exp(in[0]); }, {x});
  check_gradients([](const auto& in) { return log(in[0]); }, {pos});
  check_gradients([](const auto& in) { return sqrt(in[0]); }, {pos});
  check_gradients([](const auto& in) { return abs(in[0]); }, {pos - 1.6});
  check_gradients([](const auto& in) { return square(in[0]); }, {x});
  Tensor cond = greater(random_tensor({3, 1}, float64, 19), scalar(0.0, float64));
  check_gradients([&](const auto& in) { return where(cond, in[0], in[1]); },
                  {random_tensor({1, 4}, float64, 20), random_tensor({3, 4}, float64, 21)});
  check_gradients(
      [](const auto& in) {
        return broadcast_to(in[0], {2, 3, 4});
      },
      {random_tensor({3, 1}, float64, 22)});
  check_gradients(
      [](const auto& in) {
        return sum_to(in[0], {3, 1});
      },
      {random_tensor({2, 3, 4}, float64, 23)});
  check_gradients([](const auto& in) { return in[0] * 3.0 - 2.0 / in[0]; }, {pos});
  // Through float32 and back: finite differences need a wide step at float32 precision.
  check_gradients([](const auto& in) { return cast(cast(in[0], float32), float64); }, {x}, 1e-2,
                  1e-4);
}

TEST(ElementwiseTest, ComparisonsCarryNoGradient) {
  Tensor x = random_tensor({4}, float64, 24);
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(cast(greater(x, scalar(0.0, float64)), float64) * x);
  Tensor g = tape.gradient(y, {x})[0];
  // Only the direct `* x` path contributes.
  EXPECT_TRUE(all_close(g, cast(greater(x, scalar(0.0, float64)), float64)));
}

// ---- errors ---------------------------------------------------------------------------------

TEST(ElementwiseTest, ShapeErrorsNameOpAndBothShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  for (const BinaryCase& c : kArith) {
    expect_error<ShapeError>([&] { c.op(a, b); }, {c.name, "[2, 3]", "[4]"});
  }
  for (const CompareCase& c : kCompare) {
    expect_error<ShapeError>([&] { c.op(a, b); }, {c.name, "[2, 3]", "[4]"});
  }
  expect_error<ShapeError>([&] { a + b; }, {"add", "[2, 3]", "[4]"});
  expect_error<ShapeError>([&] { where(zeros({5}, boolean), a, a); }, {"where", "[5]", "[2, 3]"});
  expect_error<ShapeError>([&] { broadcast_to(a, {3, 3}); }, {"broadcast_to", "[2, 3]", "[3, 3]"});
  expect_error<ShapeError>([&] { broadcast_to(a, {3}); }, {"broadcast_to", "[2, 3]", "[3]"});
  expect_error<ShapeError>([&] { sum_to(a, {4}); }, {"sum_to", "[2, 3]", "[4]"});
  expect_error<ShapeError>([&] { sum_to(b, {2, 4}); }, {"sum_to", "[4]", "[2, 4]"});
}

TEST(ElementwiseTest, DTypeErrorsNameOpAndDtypes) {
  Tensor f = zeros({2}), d = zeros({2}, float64), i = zeros({2}, int32);
  Tensor t = zeros({2}, boolean);
  for (const BinaryCase& c : kArith) {
    expect_error<DTypeError>([&] { c.op(f, d); }, {c.name, "float32", "float64"});
    expect_error<DTypeError>([&] { c.op(t, t); }, {c.name, "bool"});
  }
  for (const CompareCase& c : kCompare) {
    expect_error<DTypeError>([&] { c.op(i, f); }, {c.name, "int32", "float32"});
  }
  expect_error<DTypeError>([&] { pow(i, i); }, {"pow", "int32"});
  for (const UnaryCase& c : kUnary) {
    expect_error<DTypeError>([&] { c.op(t); }, {c.name, "bool"});
    if (c.float_only) expect_error<DTypeError>([&] { c.op(i); }, {c.name, "int32"});
  }
  expect_error<DTypeError>([&] { where(f, f, f); }, {"where", "condition", "float32"});
  expect_error<DTypeError>([&] { where(t, f, d); }, {"where", "float32", "float64"});
  expect_error<DTypeError>([&] { sum_to(t, {1}); }, {"sum_to", "bool"});
  expect_error<ValueError>([&] { add(Tensor(), f); }, {"add", "undefined"});
}

}  // namespace
}  // namespace kiln
