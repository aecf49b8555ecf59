// Built-in layers: output shapes (shape-only and from data) and values on small inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/autograd.h"
#include "kiln/nn/layers.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// Every layer test builds into its own store.
class Layers : public ::testing::Test {
 protected:
  template <typename L>
  L& use(L& layer) {
    layer.set_store(store);
    return layer;
  }
  VariableStore store{11};
};

// Shape-only build on one instance and a data call on another agree.
template <typename L, typename... Args>
void expect_shape_matches_call(const Tensor& x, Args... args) {
  VariableStore s1(3), s2(3);
  L shape_only(args...), with_data(args...);
  shape_only.set_store(s1);
  with_data.set_store(s2);
  Shape predicted = shape_only.output_shape(x.shape());
  EXPECT_EQ(predicted, with_data(x).shape()) << with_data.type_name();
}

TEST_F(Layers, DenseIsXTimesKernelPlusBias) {
  Dense d(3, "relu");
  use(d);
  Tensor x = random_tensor({2, 4}, float32, 5);
  Tensor y = d(x);
  std::vector<float> xv = x.to_vector<float>(), k = d.kernel().value().to_vector<float>();
  d.bias().assign(from_vector<float>({0.1f, -0.2f, 0.3f}));
  y = d(x);
  std::vector<float> b = {0.1f, -0.2f, 0.3f}, expect(6);
  for (int n = 0; n < 2; ++n) {
    for (int u = 0; u < 3; ++u) {
      float acc = b[u];
      for (int i = 0; i < 4; ++i) acc += xv[n * 4 + i] * k[i * 3 + u];
      expect[n * 3 + u] = std::max(acc, 0.f);
    }
  }
  EXPECT_TRUE(all_close(y, from_vector<float>(expect, {2, 3})));
  EXPECT_EQ(d.count_params(), 15);
}

TEST_F(Layers, DenseOnRank3InputsAndWithoutBias) {
  Dense d(2, "linear", /*use_bias=*/false);
  use(d);
  Tensor x = random_tensor({2, 3, 4}, float32, 6);
  Tensor y = d(x);
  EXPECT_EQ(y.shape(), Shape({2, 3, 2}));
  EXPECT_FALSE(d.bias().defined());
  EXPECT_EQ(d.weights().size(), 1u);
  EXPECT_TRUE(all_close(y, reshape(matmul(reshape(x, {6, 4}), d.kernel().value()), {2, 3, 2})));
  expect_error<ShapeError>(
      [] {
        VariableStore s(1);
        Dense r(2, DenseOptions{.name = "rank1"});
        r.set_store(s);
        r(ones({4}));
      },
      {"'rank1'", "rank >= 2", "[4]"});
  expect_error<ValueError>([] { Dense(0); }, {"units", "0"});
  expect_shape_matches_call<Dense>(x, 5);
}

TEST_F(Layers, Conv2DMatchesTheConvOpPlusBias) {
  Conv2DLayerOptions o;
  o.strides = {2, 1};
  o.padding = Padding::kSame;
  o.bias_initializer = initializers::random_uniform(-1, 1);
  Conv2D c(4, {3, 2}, o);
  use(c);
  Tensor x = random_tensor({2, 5, 6, 3}, float32, 7);
  Tensor y = c(x);
  EXPECT_EQ(c.kernel().shape(), Shape({3, 2, 3, 4}));
  Conv2DOptions co;
  co.strides = {2, 1};
  co.padding = Padding::kSame;
  EXPECT_TRUE(all_close(y, conv2d(x, c.kernel().value(), co) + c.bias().value(), 1e-5, 1e-5));
  EXPECT_EQ(y.shape(), Shape({2, 3, 6, 4}));
}

TEST_F(Layers, Conv2DShapesForPaddingStridesDilationAndGroups) {
  Tensor x = random_tensor({1, 9, 8, 4}, float32, 8);
  Conv2DLayerOptions valid;
  valid.strides = {2, 3};
  expect_shape_matches_call<Conv2D>(x, 6, std::array<int64_t, 2>{3, 3}, valid);
  Conv2DLayerOptions dil;
  dil.dilation = {2, 2};
  expect_shape_matches_call<Conv2D>(x, 6, std::array<int64_t, 2>{3, 3}, dil);
  Conv2DLayerOptions same;
  same.padding = Padding::kSame;
  same.strides = {2, 2};
  expect_shape_matches_call<Conv2D>(x, 2, std::array<int64_t, 2>{3, 3}, same);
  Conv2DLayerOptions grouped;
  grouped.groups = 2;
  Conv2D g(6, {1, 1}, grouped);
  use(g);
  EXPECT_EQ(g(x).shape(), Shape({1, 9, 8, 6}));
  EXPECT_EQ(g.kernel().shape(), Shape({1, 1, 2, 6}));
  grouped.groups = 3;
  Conv2D bad(6, {1, 1}, grouped);
  use(bad);
  expect_error<ValueError>([&] { bad(x); }, {bad.name(), "channels 4", "groups 3"});
  expect_error<ShapeError>(
      [&] {
        Conv2D r(2, {1, 1});
        r.set_store(store);
        r(ones({2, 3}));
      },
      {"rank 4", "[2, 3]"});
}

TEST_F(Layers, PoolingMatchesTheOpsAndPredictsShapes) {
  Tensor x = random_tensor({2, 5, 7, 3}, float32, 9);
  MaxPool2D mp;
  AvgPool2D ap;
  use(mp);
  use(ap);
  EXPECT_TRUE(all_close(mp(x), max_pool2d(x)));
  EXPECT_TRUE(all_close(ap(x), avg_pool2d(x)));
  EXPECT_EQ(mp(x).shape(), Shape({2, 2, 3, 3}));
  Pool2DLayerOptions same;
  same.pool_size = {3, 3};
  same.strides = {2, 2};
  same.padding = Padding::kSame;
  expect_shape_matches_call<MaxPool2D>(x, same);
  expect_shape_matches_call<AvgPool2D>(x, same);
  expect_shape_matches_call<MaxPool2D>(x, Pool2DLayerOptions{});
  GlobalAveragePooling2D gap;
  use(gap);
  EXPECT_TRUE(all_close(gap(x), mean(x, {1, 2})));
  EXPECT_EQ(gap.output_shape(Shape{4, 5, 7, 3}), Shape({4, 3}));
  expect_error<ValueError>(
      [] {
        MaxPool2D(Pool2DLayerOptions{.pool_size = {0, 2}});
      },
      {"pool_size"});
}

TEST_F(Layers, FlattenKeepsTheBatchDim) {
  Flatten f;
  use(f);
  Tensor x = random_tensor({2, 3, 4}, float32, 10);
  Tensor y = f(x);
  EXPECT_EQ(y.shape(), Shape({2, 12}));
  EXPECT_EQ(y.to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(f.count_params(), 0);
}

TEST_F(Layers, DropoutIsIdentityAtInferenceAndSeededInTraining) {
  Dropout d(0.5, 123);
  use(d);
  Tensor x = ones({1000});
  EXPECT_EQ(d(x).to_vector<float>(), x.to_vector<float>());
  Tensor a = d(x, true), b = d(x, true);
  int zeros_a = 0;
  for (float v : a.to_vector<float>()) {
    EXPECT_TRUE(v == 0.f || v == 2.f);
    zeros_a += v == 0.f;
  }
  EXPECT_NEAR(zeros_a, 500, 80);
  EXPECT_NE(a.to_vector<float>(), b.to_vector<float>());  // a fresh mask per call
  Dropout again(0.5, 123);
  use(again);
  EXPECT_EQ(again(x, true).to_vector<float>(), a.to_vector<float>());  // same seed, same masks
  expect_error<ValueError>([] { Dropout(1.0); }, {"rate", "[0, 1)"});
}

TEST_F(Layers, BatchNormTrainingUsesBatchStatsAndUpdatesMovingOnes) {
  BatchNormalization bn;
  use(bn);
  // Channel c of example n: values with known mean and variance per channel.
  Tensor x = from_vector<float>({1, 10, 3, 20, 5, 30, 7, 40}, {4, 2});
  Tensor y = bn(x, /*training=*/true);
  const double m0 = 4, v0 = 5, m1 = 25, v1 = 125;  // biased variances
  std::vector<float> xv = x.to_vector<float>(), expect(8);
  for (int n = 0; n < 4; ++n) {
    expect[n * 2] = (xv[n * 2] - m0) / std::sqrt(v0 + 1e-3);
    expect[n * 2 + 1] = (xv[n * 2 + 1] - m1) / std::sqrt(v1 + 1e-3);
  }
  EXPECT_TRUE(all_close(y, from_vector<float>(expect, {4, 2}), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(bn.moving_mean().value(), from_vector<float>({0.04f, 0.25f})));
  EXPECT_TRUE(
      all_close(bn.moving_variance().value(), from_vector<float>({0.99f + 0.05f, 0.99f + 1.25f})));
  EXPECT_EQ(bn.non_trainable_weights().size(), 2u);
  EXPECT_EQ(bn.trainable_weights().size(), 2u);
  // Inference: the moving statistics, and nothing updates.
  Tensor yi = bn(x, false);
  std::vector<float> mm = bn.moving_mean().value().to_vector<float>();
  std::vector<float> mv = bn.moving_variance().value().to_vector<float>();
  for (int n = 0; n < 4; ++n) {
    for (int c = 0; c < 2; ++c)
      expect[n * 2 + c] = (xv[n * 2 + c] - mm[c]) / std::sqrt(mv[c] + 1e-3);
  }
  EXPECT_TRUE(all_close(yi, from_vector<float>(expect, {4, 2}), 1e-5, 1e-5));
  EXPECT_EQ(bn.moving_mean().value().to_vector<float>(), mm);
}

TEST_F(Layers, BatchNormOnImagesAndItsInputGradient) {
  BatchNormalization bn;
  use(bn);
  Tensor x = random_tensor({3, 2, 2, 4}, float32, 12);
  Tensor y = bn(x, true);
  EXPECT_TRUE(all_close(mean(y, {0, 1, 2}), zeros({4}), 1e-5, 1e-5));
  EXPECT_EQ(bn.moving_mean().shape(), Shape({4}));
  BatchNormalization bn64;
  use(bn64);
  testing::check_gradients([&](const std::vector<Tensor>& in) { return bn64(in[0], true); },
                           {random_tensor({4, 3}, float64, 13)});
}

TEST_F(Layers, LayerNormMatchesAManualComputation) {
  LayerNormalization ln;
  use(ln);
  Tensor x = random_tensor({3, 5}, float32, 14);
  Tensor y = ln(x);
  std::vector<float> xv = x.to_vector<float>(), expect(15);
  for (int n = 0; n < 3; ++n) {
    double m = 0, v = 0;
    for (int i = 0; i < 5; ++i) m += xv[n * 5 + i] / 5.0;
    for (int i = 0; i < 5; ++i) v += (xv[n * 5 + i] - m) * (xv[n * 5 + i] - m) / 5.0;
    for (int i = 0; i < 5; ++i) expect[n * 5 + i] = (xv[n * 5 + i] - m) / std::sqrt(v + 1e-3);
  }
  EXPECT_TRUE(all_close(y, from_vector<float>(expect, {3, 5}), 1e-5, 1e-5));
  EXPECT_EQ(ln.count_params(), 10);
  LayerNormalization ln64;
  use(ln64);
  testing::check_gradients([&](const std::vector<Tensor>& in) { return ln64(in[0]); },
                           {random_tensor({2, 4}, float64, 15)});
}

TEST_F(Layers, EmbeddingLooksUpRows) {
  Embedding e(5, 3);
  use(e);
  Tensor idx = from_vector<int64_t>({4, 0, 4, 2}, {2, 2});
  Tensor y = e(idx);
  EXPECT_EQ(y.shape(), Shape({2, 2, 3}));
  std::vector<float> table = e.embeddings().value().to_vector<float>(), got = y.to_vector<float>();
  const int rows[4] = {4, 0, 4, 2};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(got[r * 3 + c], table[rows[r] * 3 + c]);
  }
  for (float v : table) EXPECT_LE(std::abs(v), 0.05f);
  EXPECT_EQ(e.output_shape(Shape{7, 2}), Shape({7, 2, 3}));
  EXPECT_EQ(e(from_vector<float>({1.f, 2.f}, {1, 2})).shape(), Shape({1, 2, 3}));
  expect_error<ValueError>([&] { e(from_vector<int32_t>({5, 0}, {1, 2})); }, {});
}

TEST_F(Layers, ActivationLayerAppliesTheNamedOp) {
  Tensor x = random_tensor({2, 3}, float32, 16, -3, 3);
  struct Case {
    const char* name;
    Tensor expect;
  } cases[] = {
      {"relu", relu(x)}, {"sigmoid", sigmoid(x)},       {"tanh", tanh(x)}, {"softmax", softmax(x)},
      {"gelu", gelu(x)}, {"leaky_relu", leaky_relu(x)}, {"linear", x}};
  for (const Case& c : cases) {
    Activation a(c.name);
    use(a);
    EXPECT_TRUE(all_close(a(x), c.expect)) << c.name;
  }
}

TEST_F(Layers, AddAndConcatenateTakeLists) {
  Tensor a = random_tensor({2, 3}, float32, 17), b = random_tensor({2, 3}, float32, 18);
  Tensor c = random_tensor({2, 1}, float32, 19);
  Add add_l;
  Concatenate cat;
  use(add_l);
  use(cat);
  EXPECT_TRUE(all_close(add_l({a, b, a}), a + b + a));
  Tensor joined = cat({a, c});
  EXPECT_EQ(joined.shape(), Shape({2, 4}));
  EXPECT_TRUE(all_close(joined, concat({a, c}, 1)));
  EXPECT_EQ(cat.output_shape(std::vector<Shape>{{5, 3}, {5, 1}}), Shape({5, 4}));
  Add bad("bad_add");
  use(bad);
  expect_error<ShapeError>([&] { bad({a, c}); }, {"'bad_add'", "[2, 3]", "[2, 1]"});
  Concatenate bad_cat(0, "bad_cat");
  use(bad_cat);
  expect_error<ShapeError>([&] { bad_cat({a, c}); }, {"'bad_cat'", "[2, 3]", "[2, 1]"});
  Add one("one_input");
  use(one);
  expect_error<ValueError>([&] { one(std::vector<Tensor>{a}); }, {"'one_input'", "at least 2"});
}

// A float64 input builds float64 weights, so finite differences check the layer gradient.
TEST_F(Layers, DenseGradientsMatchFiniteDifferences) {
  Dense d(3, "tanh");
  use(d);
  Tensor x = random_tensor({2, 4}, float64, 20);
  d(x);
  ASSERT_EQ(d.kernel().dtype(), float64);
  testing::check_gradients([&](const std::vector<Tensor>& in) { return d(in[0]); }, {x});
  // d sum(d(x)) / d kernel against central differences on the variable itself.
  GradientTape tape;
  Tensor loss = sum(d(x));
  Tensor g = tape.gradient(loss, {d.kernel().value()})[0];
  std::vector<double> k = d.kernel().value().to_vector<double>(), gv = g.to_vector<double>();
  const double eps = 1e-6;
  for (size_t i = 0; i < k.size(); ++i) {
    std::vector<double> kp = k, km = k;
    kp[i] += eps;
    km[i] -= eps;
    d.kernel().assign(from_vector<double>(kp, {4, 3}));
    double fp = sum(d(x)).item<double>();
    d.kernel().assign(from_vector<double>(km, {4, 3}));
    double fm = sum(d(x)).item<double>();
    EXPECT_NEAR(gv[i], (fp - fm) / (2 * eps), 1e-6) << "kernel element " << i;
  }
}

}  // namespace
}  // namespace kiln
