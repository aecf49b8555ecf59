// Losses: values against hand computations, gradients against finite differences.
#include "kiln/nn/losses.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

double ref_sce(const std::vector<double>& row, int label) {
  double mx = row[0];
  for (double v : row) mx = std::max(mx, v);
  double s = 0;
  for (double v : row) s += std::exp(v - mx);
  return -(row[label] - mx - std::log(s));
}

TEST(SparseCategoricalCrossentropy, ValuesFromLogits) {
  std::vector<double> l = {1.0, 2.0, 0.5, -1.0, 0.0, 3.0};
  Tensor logits = from_vector(l, {2, 3});
  Tensor labels = from_vector(std::vector<int64_t>{1, 2});
  double want = (ref_sce({1, 2, 0.5}, 1) + ref_sce({-1, 0, 3}, 2)) / 2;
  SparseCategoricalCrossentropy loss;
  Tensor v = loss(labels, logits);
  EXPECT_EQ(v.rank(), 0);
  EXPECT_NEAR(v.item<double>(), want, 1e-6);
  // [N, 1] int32 labels and float labels are accepted too.
  EXPECT_NEAR(loss(from_vector(std::vector<int32_t>{1, 2}, {2, 1}), logits).item<double>(), want,
              1e-6);
  EXPECT_NEAR(loss(from_vector(std::vector<float>{1, 2}), logits).item<double>(), want, 1e-6);
  Tensor per = sparse_categorical_crossentropy(labels, logits);
  EXPECT_EQ(per.shape(), Shape({2}));
  EXPECT_NEAR(per.to_vector<double>()[0], ref_sce({1, 2, 0.5}, 1), 1e-6);
}

TEST(SparseCategoricalCrossentropy, ValuesFromProbabilities) {
  Tensor probs = from_vector(std::vector<double>{0.2, 0.7, 0.1, 0.0, 0.5, 0.5}, {2, 3});
  Tensor labels = from_vector(std::vector<int64_t>{1, 0});
  SparseCategoricalCrossentropy loss(/*from_logits=*/false);
  // Row 2 has p = 0 for its label: clipped to 1e-7, not infinite.
  double p0 = 1e-7 / (1.0 + 1e-7);
  double want = (-std::log(0.7) - std::log(p0)) / 2;
  EXPECT_NEAR(loss(labels, probs).item<double>(), want, 1e-9);
}

TEST(SparseCategoricalCrossentropy, LargeLogitsStayFinite) {
  Tensor logits = from_vector(std::vector<float>{1000, -1000, 0, 500}, {2, 2});
  Tensor labels = from_vector(std::vector<int64_t>{1, 0});
  double v = SparseCategoricalCrossentropy()(labels, logits).item<double>();
  EXPECT_NEAR(v, (2000 + 500) / 2.0, 1e-2);
}

TEST(SparseCategoricalCrossentropy, Gradients) {
  Tensor labels = from_vector(std::vector<int64_t>{0, 3, 2, 1, 3});
  check_gradients(
      [&](const std::vector<Tensor>& x) { return SparseCategoricalCrossentropy()(labels, x[0]); },
      {random_tensor({5, 4}, float64, 11, -3, 3)});
  check_gradients(
      [&](const std::vector<Tensor>& x) {
        return SparseCategoricalCrossentropy(false)(labels, x[0]);
      },
      {random_tensor({5, 4}, float64, 12, 0.1, 0.9)});
}

TEST(SparseCategoricalCrossentropy, Errors) {
  SparseCategoricalCrossentropy loss;
  expect_error<ShapeError>(
      [&] {
        loss(zeros({3}, int64), zeros({2, 4}));
      },
      {"sparse_categorical_crossentropy", "[3]", "[2, 4]"});
  expect_error<ShapeError>([&] { loss(zeros({2, 2}, int64), zeros({2, 4})); }, {"[2, 2]"});
  expect_error<ShapeError>([&] { loss(zeros({2}, int64), zeros({2})); }, {"[2]"});
  expect_error<DTypeError>(
      [&] {
        loss(zeros({2}, int64), zeros({2, 4}, int32));
      },
      {"sparse_categorical_crossentropy", "int32"});
  expect_error<ValueError>(
      [&] {
        loss(from_vector(std::vector<int64_t>{0, 4}), zeros({2, 4}));
      },
      {"4"});
}

TEST(MeanSquaredError, ValuesAndBroadcastOfColumnTargets) {
  Tensor pred = from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  Tensor truth = from_vector(std::vector<float>{0, 2, 5, 1}, {2, 2});
  MeanSquaredError mse;
  EXPECT_FLOAT_EQ(mse(truth, pred).item<float>(), (1 + 0 + 4 + 9) / 4.0f);
  EXPECT_EQ(mean_squared_error(truth, pred).to_vector<float>(), (std::vector<float>{0.5f, 6.5f}));
  Tensor col = from_vector(std::vector<float>{1, 2, 3}, {3, 1});
  Tensor flat = from_vector(std::vector<int32_t>{0, 2, 5});  // int targets are cast
  EXPECT_FLOAT_EQ(mse(flat, col).item<float>(), (1 + 0 + 4) / 3.0f);
  check_gradients([&](const std::vector<Tensor>& x) { return mse(x[1], x[0]); },
                  {random_tensor({3, 4}, float64, 1), random_tensor({3, 4}, float64, 2)});
  expect_error<ShapeError>(
      [&] {
        mse(zeros({2, 3}), zeros({3, 2}));
      },
      {"mean_squared_error", "[2, 3]", "[3, 2]"});
}

double ref_bce(double z, double p) { return -(z * std::log(p) + (1 - z) * std::log(1 - p)); }

TEST(BinaryCrossentropy, ValuesFromProbabilitiesAndLogits) {
  std::vector<double> z = {1, 0, 1, 0.25}, x = {0.3, -1.2, 2.5, 0.0};
  std::vector<double> p;
  double want = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    p.push_back(1 / (1 + std::exp(-x[i])));
    want += ref_bce(z[i], p.back()) / x.size();
  }
  Tensor zt = from_vector(z, {2, 2});
  EXPECT_NEAR(BinaryCrossentropy(false)(zt, from_vector(p, {2, 2})).item<double>(), want, 1e-12);
  EXPECT_NEAR(BinaryCrossentropy(true)(zt, from_vector(x, {2, 2})).item<double>(), want, 1e-12);
  Tensor per = binary_crossentropy(zt, from_vector(x, {2, 2}), true);
  EXPECT_NEAR(per.to_vector<double>()[1], (ref_bce(1, p[2]) + ref_bce(0.25, p[3])) / 2, 1e-12);
}

TEST(BinaryCrossentropy, StableForLargeLogitsAndClippedProbabilities) {
  Tensor z = from_vector(std::vector<float>{0, 1, 1, 0});
  Tensor x = from_vector(std::vector<float>{200, -200, 200, -200});
  EXPECT_NEAR(BinaryCrossentropy(true)(z, x).item<double>(), 100.0, 1e-3);
  Tensor p = from_vector(std::vector<double>{1, 0});
  Tensor zp = from_vector(std::vector<double>{0, 1});
  EXPECT_NEAR(BinaryCrossentropy()(zp, p).item<double>(), -std::log(1e-7), 1e-6);
}

TEST(BinaryCrossentropy, GradientsIncludingZeroLogits) {
  Tensor z = from_vector(std::vector<double>{1, 0, 0.5, 1, 0, 1}, {3, 2});
  check_gradients([&](const std::vector<Tensor>& x) { return BinaryCrossentropy(true)(z, x[0]); },
                  {random_tensor({3, 2}, float64, 5, -4, 4)});
  check_gradients([&](const std::vector<Tensor>& x) { return BinaryCrossentropy(false)(z, x[0]); },
                  {random_tensor({3, 2}, float64, 6, 0.05, 0.95)});
  // At logit 0 the gradient is sigmoid(0) - z, averaged: (0.5 - 1) / 1 for one element.
  Tensor x0 = zeros({1}, float64);
  GradientTape tape;
  tape.watch(x0);
  Tensor l = BinaryCrossentropy(true)(from_vector(std::vector<double>{1}), x0);
  EXPECT_NEAR(tape.gradient(l, {x0})[0].item<double>(), -0.5, 1e-12);
}

TEST(BinaryCrossentropy, Errors) {
  expect_error<ShapeError>(
      [] {
        BinaryCrossentropy()(zeros({4}), zeros({2, 2}));
      },
      {"binary_crossentropy", "[4]", "[2, 2]"});
  expect_error<DTypeError>([] { BinaryCrossentropy()(zeros({4}), zeros({4}, int64)); },
                           {"binary_crossentropy", "int64"});
}

}  // namespace
}  // namespace kiln
