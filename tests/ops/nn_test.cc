// Tests for src/ops/nn.cc: dropout (determinism, rate, scaling, identity, gradient) and
// softmax_cross_entropy (value, fast vs reference, gradients, label and shape errors).
#include <cmath>
#include <optional>
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

// ---- dropout --------------------------------------------------------------------------------

TEST(DropoutTest, SameSeedSameMaskOtherSeedOtherMask) {
  Tensor x = random_tensor({37, 11}, float32, 1, 1, 2);
  Tensor a = dropout(x, 0.5, 42), b = dropout(x, 0.5, 42), c = dropout(x, 0.5, 43);
  EXPECT_TRUE(all_close(a, b, 0, 0));
  EXPECT_FALSE(all_close(a, c, 0, 0));
}

TEST(DropoutTest, FractionOfZerosIsRateAndKeptValuesAreScaled) {
  Tensor x = ones({1000, 100});
  for (double rate : {0.1, 0.5, 0.9}) {
    SCOPED_TRACE(rate);
    std::vector<float> y = dropout(x, rate, 7).to_vector<float>();
    int64_t zeros = 0;
    for (float v : y) {
      if (v == 0) {
        ++zeros;
      } else {
        EXPECT_FLOAT_EQ(v, static_cast<float>(1 / (1 - rate)));
      }
    }
    // 100000 draws: the standard deviation of the fraction is below 0.0016.
    EXPECT_NEAR(static_cast<double>(zeros) / y.size(), rate, 0.01);
  }
}

TEST(DropoutTest, MaskDependsOnlyOnSeedAndElementIndex) {
  Tensor x = random_tensor({64, 9}, float64, 2, 1, 2);
  std::vector<double> whole = dropout(x, 0.3, 5).to_vector<double>();
  // A prefix of the elements, in another shape, sees the same mask.
  std::vector<double> xs = x.to_vector<double>();
  Tensor prefix = from_vector(std::vector<double>(xs.begin(), xs.begin() + 101), {101});
  std::vector<double> part = dropout(prefix, 0.3, 5).to_vector<double>();
  for (size_t i = 0; i < part.size(); ++i) EXPECT_EQ(part[i], whole[i]) << i;
  // float32 and float64 agree on which elements are dropped.
  std::vector<float> f = dropout(cast(x, float32), 0.3, 5).to_vector<float>();
  for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i] == 0, whole[i] == 0) << i;
}

TEST(DropoutTest, IdentityWhenNotTrainingOrRateZero) {
  Tensor x = random_tensor({4, 5}, float32, 3);
  Tensor a = dropout(x, 0.5, 1, /*training=*/false);
  Tensor b = dropout(x, 0.0, 1);
  EXPECT_TRUE(all_close(a, x, 0, 0));
  EXPECT_TRUE(all_close(b, x, 0, 0));
  // With training and rate > 0 something is dropped.
  EXPECT_FALSE(all_close(dropout(x, 0.5, 1), x, 0, 0));
}

TEST(DropoutTest, FastMatchesReferenceOnAwkwardShapes) {
  for (const Shape& s : {Shape{}, Shape{1}, Shape{3}, Shape{5}, Shape{3, 5}, Shape{0, 3},
                         Shape{2, 1, 7}, Shape{300, 257}}) {
    SCOPED_TRACE(to_string(s));
    for (DType dt : {float32, float64}) {
      Tensor x = random_tensor(s, dt, 4);
      check_fast_matches_reference([&] { return dropout(x, 0.37, 99); }, 0, 0);
    }
  }
}

TEST(DropoutTest, GradientIsTheSameMaskAndScale) {
  Tensor x = random_tensor({6, 7}, float64, 5);
  check_gradients([](const auto& in) { return dropout(in[0], 0.4, 17); }, {x});
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(dropout(x, 0.4, 17));
  Tensor g = tape.gradient(y, {x})[0];
  EXPECT_TRUE(all_close(g, dropout(ones_like(x), 0.4, 17), 0, 0));
}

TEST(DropoutTest, Errors) {
  Tensor x = zeros({2, 3});
  for (double rate : {-0.1, 1.0, 1.5, std::nan("")}) {
    SCOPED_TRACE(rate);
    expect_error<ValueError>([&] { dropout(x, rate, 1); }, {"dropout", "rate", "[0, 1)"});
    expect_error<ValueError>([&] { dropout(x, rate, 1, false); }, {"dropout", "rate"});
  }
  Tensor key = from_vector<int64_t>({1, 0});
  expect_error<ValueError>(
      [&] {
        run_op(ops::kDropout, {x, key}, Attrs{}.add_float(2.0));
      },
      {"dropout", "rate", "2.0"});
  expect_error<DTypeError>([&] { dropout(zeros({2}, int32), 0.5, 1); }, {"dropout", "int32"});
  expect_error<ShapeError>(
      [&] {
        dropout(x, 0.5, from_vector<int64_t>({1, 2, 3}));
      },
      {"dropout", "key", "int64 [2]", "[3] int64"});
  expect_error<ShapeError>(
      [&] {
        dropout(x, 0.5, from_vector<int32_t>({1, 2}));
      },
      {"dropout", "key", "[2] int32"});
}

TEST(DropoutTest, KeyCounterZeroIsTheSeedAndEveryCounterDiffers) {
  Tensor x = ones({40, 50});
  EXPECT_TRUE(all_close(dropout(x, 0.5, from_vector<int64_t>({7, 0})), dropout(x, 0.5, 7), 0, 0));
  Tensor a = dropout(x, 0.5, from_vector<int64_t>({7, 1}));
  Tensor b = dropout(x, 0.5, from_vector<int64_t>({7, 2}));
  EXPECT_FALSE(all_close(a, dropout(x, 0.5, 7), 0, 0));
  EXPECT_FALSE(all_close(a, b, 0, 0));
  // The gradient reuses the call's key: mask and scale of that call.
  Tensor k = from_vector<int64_t>({7, 3});
  Tensor xs = random_tensor({6, 7}, float64, 5);
  check_gradients([&](const auto& in) { return dropout(in[0], 0.4, k); }, {xs});
}

TEST(SeedGeneratorTest, HandsOutSuccessiveKeysAsAStatefulOp) {
  SeedGenerator gen(42);
  EXPECT_EQ(gen.seed(), 42u);
  EXPECT_EQ(gen.counter(), 0);
  EXPECT_EQ(gen.next().to_vector<int64_t>(), (std::vector<int64_t>{42, 0}));
  EXPECT_EQ(gen.next().to_vector<int64_t>(), (std::vector<int64_t>{42, 1}));
  EXPECT_EQ(gen.counter(), 2);
  reset_kernel_stats();
  gen.next();
  EXPECT_EQ(kernel_stats().first_op, &ops::kNextKey);
  EXPECT_TRUE(is_stateful(ops::kNextKey) && (ops::kNextKey.flags & kRandom));
  expect_error<ShapeError>([] { run_op(ops::kNextKey, {zeros({3}, int64)}); },
                           {"next_key", "int64 [2]", "[3] int64"});
}

// ---- softmax_cross_entropy -------------------------------------------------------------------

// -log_softmax(logits)[i, labels[i]] from the public ops.
Tensor cross_entropy_formula(const Tensor& logits, const std::vector<int64_t>& labels) {
  std::vector<double> ls = cast(log_softmax(logits), float64).to_vector<double>();
  const int64_t c = logits.dim(1);
  std::vector<double> out;
  for (size_t i = 0; i < labels.size(); ++i) out.push_back(-ls[i * c + labels[i]]);
  return cast(from_vector(out), logits.dtype());
}

std::vector<int64_t> some_labels(int64_t n, int64_t c, uint64_t seed) {
  std::vector<int64_t> v;
  if (c == 0) return v;
  for (double u : random_tensor({n}, float64, seed, 0, 1).to_vector<double>()) {
    v.push_back(static_cast<int64_t>(u * c));
  }
  return v;
}

TEST(SoftmaxCrossEntropyTest, MatchesLogSoftmaxFormula) {
  for (DType dt : {float32, float64}) {
    for (DType lt : {int32, int64}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::string(dtype_name(lt)));
      Tensor logits = random_tensor({9, 13}, dt, 6, -8, 8);
      std::vector<int64_t> y = some_labels(9, 13, 7);
      Tensor loss = softmax_cross_entropy(logits, cast(from_vector(y), lt));
      const double tol = dt == float32 ? 1e-5 : 1e-12;
      EXPECT_TRUE(all_close(loss, cross_entropy_formula(logits, y), tol, tol));
    }
  }
  // Uniform logits: loss = log C.
  Tensor u = zeros({2, 4});
  EXPECT_TRUE(
      all_close(softmax_cross_entropy(u, from_vector<int32_t>({0, 3})), full({2}, std::log(4.0))));
}

TEST(SoftmaxCrossEntropyTest, ExtremeLogitsStayFinite) {
  Tensor logits = from_vector<float>({1000, 0, -1000, 0}, {2, 2});
  Tensor loss = softmax_cross_entropy(logits, from_vector<int32_t>({0, 0}));
  EXPECT_TRUE(all_close(loss, from_vector<float>({0, 1000})));
}

TEST(SoftmaxCrossEntropyTest, FastMatchesReference) {
  struct Case {
    int64_t n, c;
  };
  for (Case k :
       {Case{1, 1}, Case{7, 10}, Case{0, 5}, Case{3, 1000}, Case{64, 10}, Case{300, 257}}) {
    SCOPED_TRACE(std::to_string(k.n) + "x" + std::to_string(k.c));
    Tensor logits = random_tensor({k.n, k.c}, float32, 8, -30, 30);
    Tensor labels = from_vector(some_labels(k.n, k.c, 9), {k.n});
    Tensor g = random_tensor({k.n}, float32, 10);
    check_fast_matches_reference([&] { return softmax_cross_entropy(logits, labels); }, 1e-5, 1e-5);
    check_fast_matches_reference([&] {
      return run_op(ops::kSoftmaxCrossEntropyGrad, {logits, labels, g});
    });
  }
}

TEST(SoftmaxCrossEntropyTest, GradientIsSoftmaxMinusOneHot) {
  Tensor logits = random_tensor({5, 6}, float64, 11, -3, 3);
  Tensor labels = from_vector<int64_t>({0, 5, 2, 2, 3});
  check_gradients([&](const auto& in) { return softmax_cross_entropy(in[0], labels); }, {logits});
  GradientTape tape;
  tape.watch(logits);
  Tensor loss = sum(softmax_cross_entropy(logits, labels));
  std::vector<Tensor> g = tape.gradient(loss, {logits, labels});
  EXPECT_FALSE(g[1].defined());  // no gradient for labels
  std::vector<double> want = softmax(logits).to_vector<double>();
  for (int64_t i = 0; i < 5; ++i) want[i * 6 + labels.to_vector<int64_t>()[i]] -= 1;
  EXPECT_TRUE(all_close(g[0], from_vector(want, {5, 6}), 1e-12, 1e-12));
}

TEST(SoftmaxCrossEntropyTest, SecondOrderGradient) {
  Tensor labels = from_vector<int32_t>({2, 0, 1});
  auto inner = [&](const std::vector<Tensor>& in) {
    GradientTape tape;
    tape.watch(in[0]);
    Tensor l = sum(softmax_cross_entropy(in[0], labels) * in[1]);
    return tape.gradient(l, {in[0]})[0];
  };
  check_gradients(inner, {random_tensor({3, 4}, float64, 12, -2, 2),
                          random_tensor({3}, float64, 13, 0.5, 1.5)});
}

TEST(SoftmaxCrossEntropyTest, LabelErrorsNameTheLabelAndC) {
  Tensor logits = zeros({3, 5});
  for (bool ref : {false, true}) {
    SCOPED_TRACE(ref ? "reference" : "fast");
    std::optional<ForceReferenceScope> scope;
    if (ref) scope.emplace();
    expect_error<ValueError>(
        [&] {
          softmax_cross_entropy(logits, from_vector<int32_t>({0, 5, 1}));
        },
        {"softmax_cross_entropy", "label 5", "C = 5"});
    expect_error<ValueError>(
        [&] {
          softmax_cross_entropy(logits, from_vector<int64_t>({-1, 0, 1}));
        },
        {"softmax_cross_entropy", "label -1", "C = 5"});
    expect_error<ValueError>(
        [&] {
          run_op(ops::kSoftmaxCrossEntropyGrad,
                 {logits, from_vector<int64_t>({0, 1, 7}), zeros({3})});
        },
        {"label 7", "C = 5"});
  }
  expect_error<ValueError>(
      [&] {
        softmax_cross_entropy(zeros({1, 0}), zeros({1}, int32));
      },
      {"label 0", "C = 0"});
}

TEST(SoftmaxCrossEntropyTest, ShapeAndDtypeErrors) {
  expect_error<ShapeError>(
      [&] {
        softmax_cross_entropy(zeros({2, 3, 4}), zeros({2}, int32));
      },
      {"softmax_cross_entropy", "[2, 3, 4]", "[2]"});
  expect_error<ShapeError>(
      [&] {
        softmax_cross_entropy(zeros({2, 5}), zeros({3}, int32));
      },
      {"softmax_cross_entropy", "[2, 5]", "[3]"});
  expect_error<ShapeError>(
      [&] {
        softmax_cross_entropy(zeros({2, 5}), zeros({2, 1}, int64));
      },
      {"softmax_cross_entropy", "[2, 5]", "[2, 1]"});
  expect_error<DTypeError>(
      [&] {
        softmax_cross_entropy(zeros({2, 5}), zeros({2}));
      },
      {"softmax_cross_entropy", "labels", "float32"});
  expect_error<DTypeError>(
      [&] {
        softmax_cross_entropy(zeros({2, 5}, int32), zeros({2}, int32));
      },
      {"softmax_cross_entropy", "int32"});
  Tensor labels = zeros({2}, int32);
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kSoftmaxCrossEntropyGrad, {zeros({2, 5}), labels, zeros({3})});
      },
      {"softmax_cross_entropy_grad", "[2, 5]", "[3]"});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kSoftmaxCrossEntropyGrad, {zeros({2, 5}), labels, zeros({2}, float64)});
      },
      {"softmax_cross_entropy_grad", "float32", "float64"});
}

}  // namespace
}  // namespace kiln
