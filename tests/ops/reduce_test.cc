// Tests for src/ops/reduce.cc: sum, mean, max, argmax.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kiln/threading.h"
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

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Case {
  Shape shape;
  std::vector<int> axes;
  bool fast = true;  // false: the fast kernel declines (axes not one contiguous block)
};

// Shapes that hit each fast path: rows, leading (bias-gradient) and middle reductions, all
// axes, column blocks that straddle 256, size-1 dims, and sizes big enough to use threads.
std::vector<Case> cases() {
  return {
      {{7, 13}, {1}},
      {{7, 13}, {0}},
      {{7, 13}, {}},
      {{1, 5, 1}, {}},
      {{3, 1, 4}, {1}},
      {{3, 1, 4}, {0, 1}},
      {{4, 5, 6}, {1}},
      {{4, 5, 6}, {0, 2}, false},
      {{5, 6, 7}, {-1, 0}, false},
      {{300, 257}, {0}},
      {{2, 100003}, {1}},
      {{200003}, {}},
      {{600, 129}, {1}},
      {{2, 3, 1000, 7}, {1, 2}},
      {{1, 1}, {0}},
      {{}, {}},
      {{9, 1}, {1}},
      {{1, 9}, {0}},
  };
}

TEST(Reduce, SumMeanMaxValues) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), (std::vector<float>{6, 15}));
  EXPECT_EQ(sum(x, {0}).to_vector<float>(), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(sum(x).item<float>(), 21);
  EXPECT_EQ(sum(x).rank(), 0);
  EXPECT_EQ(sum(x, {0}, true).shape(), (Shape{1, 3}));
  EXPECT_EQ(sum(x, {-1, 0}, true).shape(), (Shape{1, 1}));
  EXPECT_EQ(mean(x, {-1}).to_vector<float>(), (std::vector<float>{2, 5}));
  EXPECT_EQ(max(x, {0}).to_vector<float>(), (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(max(x, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(max(x).item<float>(), 6);
  Tensor s = scalar(3.5);
  EXPECT_EQ(sum(s).item<float>(), 3.5f);
  EXPECT_EQ(max(s).item<float>(), 3.5f);
}

TEST(Reduce, FastMatchesReference) {
  uint64_t seed = 1;
  for (const Case& c : cases()) {
    SCOPED_TRACE(to_string(c.shape));
    Tensor x = random_tensor(c.shape, float32, seed++);
    const Expect path = c.fast ? Expect::kFast : Expect::kDeclined;
    check_fast_matches_reference([&] { return sum(x, c.axes); }, 1e-5, 1e-4, path);
    check_fast_matches_reference([&] { return mean(x, c.axes, true); }, 1e-5, 1e-6, path);
    check_fast_matches_reference([&] { return max(x, c.axes); }, 0, 0, path);
  }
}

TEST(Reduce, EmptyTensors) {
  Tensor a = zeros({0, 5});
  EXPECT_EQ(sum(a, {1}).shape(), (Shape{0}));
  EXPECT_EQ(max(a, {1}).shape(), (Shape{0}));  // nothing to reduce into: fine
  Tensor s = sum(a, {0});
  EXPECT_EQ(s.to_vector<float>(), std::vector<float>(5, 0));
  EXPECT_TRUE(std::isnan(mean(a).item<double>()));
  // The fast kernels decline empty tensors; the reference handles them.
  check_fast_matches_reference([&] { return sum(a, {0}); }, 1e-5, 1e-6, Expect::kDeclined);
  EXPECT_EQ(argmax(a, 1).shape(), (Shape{0}));
}

TEST(Reduce, Float32SumIsAccurate) {
  // Naive float accumulation of 10^6 copies of 0.1f is off by ~1%; blocked or double
  // accumulation is off by ~1e-7.
  const int64_t n = 1000000;
  const double want = static_cast<double>(0.1f) * n;
  Tensor x = full({n}, 0.1);
  EXPECT_NEAR(sum(x).item<double>(), want, want * 1e-6);
  EXPECT_NEAR(mean(x).item<double>(), 0.1f, 1e-7);
  Tensor cols = full({n / 4, 4}, 0.1);  // leading-axis reduction (bias gradients)
  for (float v : sum(cols, {0}).to_vector<float>()) EXPECT_NEAR(v, want / 4, want / 4 * 1e-6);
  Tensor rows = full({4, n / 4}, 0.1);
  for (float v : sum(rows, {1}).to_vector<float>()) EXPECT_NEAR(v, want / 4, want / 4 * 1e-6);
}

TEST(Reduce, SameResultWithOneThread) {
  Tensor x = random_tensor({3, 300007}, float32, 9);
  Tensor y = random_tensor({400, 300}, float32, 10);
  Tensor a = sum(x, {1}), b = sum(y, {0}), c = sum(x);
  const int saved = num_threads();
  set_num_threads(1);
  Tensor a1 = sum(x, {1}), b1 = sum(y, {0}), c1 = sum(x);
  set_num_threads(saved);
  EXPECT_EQ(a.to_vector<float>(), a1.to_vector<float>());
  EXPECT_EQ(b.to_vector<float>(), b1.to_vector<float>());
  EXPECT_EQ(c.item<float>(), c1.item<float>());
}

TEST(Reduce, IntegerDtypes) {
  Tensor x = from_vector<int32_t>({1, -2, 3, 4, 5, -6}, {2, 3});
  EXPECT_EQ(sum(x, {1}).to_vector<int32_t>(), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(sum(x).dtype(), int32);
  EXPECT_EQ(max(x, {0}).to_vector<int32_t>(), (std::vector<int32_t>{4, 5, 3}));
  Tensor big = from_vector<int64_t>({int64_t{1} << 40, 3, -(int64_t{1} << 41)});
  EXPECT_EQ(sum(big).item_double(),
            static_cast<double>((int64_t{1} << 40) + 3 - (int64_t{1} << 41)));
  EXPECT_EQ(max(big).item_double(), static_cast<double>(int64_t{1} << 40));
  // Sums keep the dtype and wrap, as in TensorFlow.
  Tensor i8 = from_vector<int8_t>({100, 100});
  EXPECT_EQ(sum(i8).to_vector<int8_t>()[0], static_cast<int8_t>(-56));
  Tensor u8 = from_vector<uint8_t>({7, 200, 3});
  EXPECT_EQ(max(u8).to_vector<uint8_t>()[0], 200);
  Tensor x64 = random_tensor({5, 6, 7}, float64, 3);
  for (const Case& c : cases()) {
    if (c.shape.numel() > 5000) continue;
    SCOPED_TRACE(to_string(c.shape));
    Tensor xi = random_tensor(c.shape, int32, 4, -100, 100);
    EXPECT_TRUE(all_close(cast(sum(xi, c.axes), float64), sum(cast(xi, float64), c.axes), 0, 0));
    EXPECT_TRUE(all_close(cast(max(xi, c.axes), float64), max(cast(xi, float64), c.axes), 0, 0));
  }
  EXPECT_NEAR(sum(x64, {0, 2}).to_vector<double>()[0],
              sum(sum(x64, {2}), {0}).to_vector<double>()[0], 1e-12);
}

TEST(Reduce, MaxPropagatesNaN) {
  Tensor x = from_vector<float>({1, NAN, 3, 4, 5, 6, NAN, 0, 0}, {3, 3});
  for (bool ref : {false, true}) {
    std::unique_ptr<ForceReferenceScope> scope;
    if (ref) scope = std::make_unique<ForceReferenceScope>();
    std::vector<float> rows = max(x, {1}).to_vector<float>();
    EXPECT_TRUE(std::isnan(rows[0]));
    EXPECT_EQ(rows[1], 6);
    EXPECT_TRUE(std::isnan(rows[2]));
    std::vector<float> cols = max(x, {0}).to_vector<float>();
    EXPECT_TRUE(std::isnan(cols[0]) && std::isnan(cols[1]));
    EXPECT_EQ(cols[2], 6);
    EXPECT_TRUE(std::isnan(max(x).item<float>()));
  }
  Tensor inf = full({3, 4}, -INFINITY);
  EXPECT_EQ(max(inf).item<float>(), -INFINITY);
  EXPECT_EQ(argmax(inf, 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
}

TEST(Argmax, Values) {
  Tensor x = from_vector<float>({1, 7, 7, 2, 9, 0}, {2, 3});
  EXPECT_EQ(argmax(x).to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));  // first max wins
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(argmax(x).dtype(), int64);
  EXPECT_EQ(argmax(x, 1, true).shape(), (Shape{2, 1}));
  Tensor n = from_vector<float>({1, NAN, 5, NAN, 2, 3}, {2, 3});
  EXPECT_EQ(argmax(n, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));  // NaN wins
  EXPECT_EQ(argmax(n, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  {
    ForceReferenceScope ref;
    EXPECT_EQ(argmax(n, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
    EXPECT_EQ(argmax(n, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  }
  Tensor b = from_vector<bool>({false, false, true, true}, {4});
  EXPECT_EQ(argmax(b).item<int64_t>(), 2);
  Tensor i = from_vector<int64_t>({-5, -1, -1, -9});
  EXPECT_EQ(argmax(i).item<int64_t>(), 1);
}

TEST(Argmax, FastMatchesReference) {
  uint64_t seed = 20;
  for (const Case& c : cases()) {
    for (int ax = 0; ax < c.shape.rank(); ++ax) {
      SCOPED_TRACE(to_string(c.shape) + " axis " + std::to_string(ax));
      Tensor x = random_tensor(c.shape, float32, seed++);
      check_fast_matches_reference([&] { return argmax(x, ax); }, 0, 0);
    }
  }
  // Many ties: values from a tiny set.
  Tensor t = cast(random_tensor({50, 300}, float32, 99, 0, 3), int32);
  Tensor tf = cast(t, float32);
  check_fast_matches_reference([&] { return argmax(tf, 0); }, 0, 0);
  check_fast_matches_reference([&] { return argmax(tf, 1); }, 0, 0);
}

// ---- gradients (float64) -------------------------------------------------------------------

TEST(ReduceGrad, Sum) {
  Tensor x = random_tensor({3, 4, 5}, float64, 30);
  check_gradients([](const std::vector<Tensor>& v) { return sum(v[0], {1}); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return sum(v[0], {0, 2}, true); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return sum(v[0]); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return sum(v[0], {-1}); }, {x});
}

TEST(ReduceGrad, Mean) {
  Tensor x = random_tensor({3, 4, 5}, float64, 31);
  check_gradients([](const std::vector<Tensor>& v) { return mean(v[0], {1}); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return mean(v[0], {0, 2}, true); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return mean(v[0]); }, {x});
}

TEST(ReduceGrad, Max) {
  Tensor x = random_tensor({3, 4, 5}, float64, 32);
  check_gradients([](const std::vector<Tensor>& v) { return max(v[0], {1}); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return max(v[0], {0, 2}, true); }, {x});
  check_gradients([](const std::vector<Tensor>& v) { return max(v[0]); }, {x});
}

TEST(ReduceGrad, MaxTiesShareEqually) {
  // A two-way tie: the central difference sees 1/2 per tied element, as the rule gives. The
  // gradient itself jumps at a tie, so no second-order check here.
  Tensor x = from_vector<double>({1, 3, 3, 0, 2, -1}, {2, 3});
  check_gradients([](const std::vector<Tensor>& v) { return max(v[0], {1}); }, {x}, 1e-6, 1e-6,
                  /*second_order=*/false);
  GradientTape tape;
  Tensor y = from_vector<double>({4, 4, 4, 1});
  tape.watch(y);
  Tensor g = tape.gradient(max(y), {y})[0];
  std::vector<double> gv = g.to_vector<double>();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(gv[i], 1.0 / 3, 1e-15);
  EXPECT_EQ(gv[3], 0);
}

TEST(ReduceGrad, Float32GradientsHaveInputShape) {
  Tensor x = random_tensor({6, 7}, float32, 33);
  GradientTape tape;
  tape.watch(x);
  Tensor l = add(add(sum(mean(x, {0})), sum(max(x, {1}))), sum(x));
  Tensor g = tape.gradient(l, {x})[0];
  EXPECT_EQ(g.shape(), x.shape());
  EXPECT_EQ(g.dtype(), float32);
}

// ---- errors --------------------------------------------------------------------------------

TEST(ReduceErrors, Axes) {
  Tensor x = zeros({2, 3});
  expect_error<ValueError>([&] { sum(x, {2}); }, {"sum", "axis 2", "rank 2"});
  expect_error<ValueError>([&] { mean(x, {-3}); }, {"mean", "axis -3", "rank 2"});
  expect_error<ValueError>(
      [&] {
        max(x, {1, -1});
      },
      {"max", "axis -1", "more than once", "[1, -1]", "[2, 3]"});
  expect_error<ValueError>([&] { sum(x, std::vector<int>(45, 0)); }, {"sum", "45 axes"});
  expect_error<ValueError>([&] { sum(scalar(1), {0}); }, {"sum", "rank 0"});
  expect_error<ValueError>([&] { argmax(x, 2); }, {"argmax", "axis 2", "rank 2"});
  expect_error<ValueError>([&] { argmax(scalar(1), 0); }, {"argmax", "rank 0"});
}

TEST(ReduceErrors, DTypes) {
  Tensor b = from_vector<bool>({true, false});
  expect_error<DTypeError>([&] { sum(b); }, {"sum", "bool"});
  expect_error<DTypeError>([&] { max(b); }, {"max", "bool"});
  expect_error<DTypeError>([&] { mean(b); }, {"mean", "bool"});
  expect_error<DTypeError>([&] { mean(zeros({2}, int32)); }, {"mean", "floating", "int32"});
}

TEST(ReduceErrors, EmptyMax) {
  expect_error<ValueError>([&] { max(zeros({0, 3}), {0}); }, {"max", "zero-size", "[0, 3]"});
  expect_error<ValueError>([&] { max(zeros({0})); }, {"max", "[0]"});
  expect_error<ValueError>([&] { argmax(zeros({0, 3}), 0); }, {"argmax", "size 0", "[0, 3]"});
}

}  // namespace
}  // namespace kiln
