// Layer: lazy build, weight names, input-shape checks, unique names, the three kinds of weight
// sharing (with parameter counts and summed gradients), trainable flags.
#include <gtest/gtest.h>

#include <regex>

#include "kiln/autograd.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// A layer that counts its builds.
class CountingLayer : public Layer {
 public:
  CountingLayer() : Layer("", "counting") {}
  std::string type_name() const override { return "CountingLayer"; }
  int builds = 0;
  Variable w;

 protected:
  void build(const Shape& in) override {
    ++builds;
    w = add_weight("w", {in.dim(-1)}, initializers::ones());
  }
  Tensor call(const Tensor& x, bool) override { return x * w.value(); }
};

TEST(Layer, BuildsOnceLazilyOnTheFirstCall) {
  VariableStore store(1);
  CountingLayer l;
  l.set_store(store);
  EXPECT_FALSE(l.built());
  EXPECT_EQ(store.size(), 0u);
  l(ones({2, 3}));
  l(ones({5, 3}));  // another batch size is fine
  EXPECT_TRUE(l.built());
  EXPECT_EQ(l.builds, 1);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(l.built_input_shapes()[0], Shape({2, 3}));
  EXPECT_EQ(l.last_output_shape(), Shape({5, 3}));
}

// The textbook Keras custom layer: weights by initializer name, as
// self.add_weight(shape=..., initializer="uniform").
class KerasStyleLinear : public Layer {
 public:
  KerasStyleLinear() : Layer("", "keras_style_linear") {}
  std::string type_name() const override { return "KerasStyleLinear"; }
  Variable w, b;

 protected:
  void build(const Shape& in) override {
    w = add_weight("w", {in.dim(-1), 4}, "uniform");
    b = add_weight("b", {4}, "zeros");
  }
  Tensor call(const Tensor& x, bool) override { return matmul(x, w.value()) + b.value(); }
};

TEST(Layer, AddWeightTakesKerasInitializerNames) {
  VariableStore store(1);
  KerasStyleLinear l;
  l.set_store(store);
  EXPECT_EQ(l(ones({2, 3})).shape(), Shape({2, 4}));
  for (float v : l.w.value().to_vector<float>()) {
    EXPECT_GE(v, -0.05f);  // Keras' RandomUniform: [-0.05, 0.05)
    EXPECT_LT(v, 0.05f);
  }
  EXPECT_EQ(l.b.value().to_vector<float>(), std::vector<float>(4, 0.0f));

  class BadName : public CountingLayer {
    void build(const Shape& in) override { add_weight("w", {in.dim(-1)}, "glorot_bogus"); }
  } bad;
  bad.set_store(store);
  expect_error<ValueError>([&] { bad(ones({1, 2})); }, {"glorot_bogus", "uniform", "valid"});
}

TEST(Layer, AddWeightNamesWeightsUnderTheLayerAndItsScopes) {
  VariableStore store(1);
  Dense d(4, DenseOptions{.name = "proj"});
  d.set_store(store);
  {
    VariableStore::Scope s(store, "encoder");
    d(ones({1, 3}));
  }
  EXPECT_EQ(d.kernel().name(), "encoder/proj/kernel");
  EXPECT_EQ(d.bias().name(), "encoder/proj/bias");
  EXPECT_EQ(d.kernel().shape(), Shape({3, 4}));
  EXPECT_EQ(d.weight("bias"), d.bias());
  EXPECT_FALSE(d.weight("nope").defined());
  EXPECT_EQ(store.get("encoder/proj/kernel"), d.kernel());
}

class AddsWeightInCall : public Layer {
 public:
  AddsWeightInCall() : Layer("late", "late") {}
  std::string type_name() const override { return "AddsWeightInCall"; }

 protected:
  Tensor call(const Tensor& x, bool) override {
    add_weight("w", {1});
    return x;
  }
};

TEST(Layer, AddWeightOutsideBuildIsAStateError) {
  VariableStore store(1);
  AddsWeightInCall l;
  l.set_store(store);
  expect_error<StateError>([&] { l(ones({1, 1})); }, {"'late'", "add_weight('w')", "build"});
}

TEST(Layer, InputThatDoesNotFitNamesTheLayerAndBothShapes) {
  VariableStore store(1);
  Dense d(4, DenseOptions{.name = "proj"});
  d.set_store(store);
  d(ones({2, 3}));
  EXPECT_EQ(d(ones({7, 3})).shape(), Shape({7, 4}));
  expect_error<ShapeError>([&] { d(ones({2, 5})); }, {"'proj'", "Dense", "[None, 3]", "[2, 5]"});
  expect_error<ShapeError>([&] { d(ones({2, 1, 3})); }, {"'proj'", "[None, 3]", "[2, 1, 3]"});
  expect_error<ShapeError>([&] { d.output_shape(Shape{1, 9}); }, {"'proj'", "[1, 9]"});
}

TEST(Layer, DefaultNamesAreUniquePerClass) {
  std::string a = unique_layer_name("zz_unique_test");
  EXPECT_EQ(a, "zz_unique_test");
  EXPECT_EQ(unique_layer_name("zz_unique_test"), "zz_unique_test_1");
  EXPECT_EQ(unique_layer_name("zz_unique_test"), "zz_unique_test_2");
  Dense d1(1), d2(1);
  Conv2D c(1, {1, 1});
  EXPECT_NE(d1.name(), d2.name());
  std::regex dense("dense(_[0-9]+)?"), conv("conv2d(_[0-9]+)?");
  EXPECT_TRUE(std::regex_match(d1.name(), dense)) << d1.name();
  EXPECT_TRUE(std::regex_match(d2.name(), dense)) << d2.name();
  EXPECT_TRUE(std::regex_match(c.name(), conv)) << c.name();
  EXPECT_EQ(Dense(1, DenseOptions{.name = "mine"}).name(), "mine");
  expect_error<ValueError>([] { Dense(1, DenseOptions{.name = "a/b"}); }, {"'a/b'", "'/'"});
}

TEST(Layer, WeightsOfAnUnbuiltLayerAreAStateError) {
  Dense d(3, DenseOptions{.name = "unbuilt"});
  expect_error<StateError>([&] { d.weights(); }, {"'unbuilt'", "not built"});
  expect_error<StateError>([&] { d.count_params(); }, {"'unbuilt'", "not built"});
}

TEST(Layer, OutputShapeBuildsWithoutData) {
  VariableStore store(1);
  Dense d(5);
  d.set_store(store);
  EXPECT_EQ(d.output_shape(Shape{7, 3}), Shape({7, 5}));
  EXPECT_TRUE(d.built());
  EXPECT_EQ(d.count_params(), 20);
}

// Loss sum(layer(x1)) + sum(layer(x2)) through one Dense: d/dkernel = colsum(x1) + colsum(x2)
// broadcast over units, d/dbias = 2 * batch.
TEST(Sharing, OneInstanceCalledTwiceSumsGradients) {
  VariableStore store(1);
  Dense d(3);
  d.set_store(store);
  Tensor x1 = random_tensor({2, 4}, float32, 1), x2 = random_tensor({5, 4}, float32, 2);
  GradientTape tape;
  Tensor loss = sum(d(x1)) + sum(d(x2));
  auto g = tape.gradient(loss, {d.kernel().value(), d.bias().value()});
  // Expected column sums by hand (not with the sum op under test elsewhere).
  std::vector<float> expect(12, 0.f);
  for (const Tensor& x : {x1, x2}) {
    std::vector<float> v = x.to_vector<float>();
    for (size_t i = 0; i < v.size(); ++i) {
      for (int u = 0; u < 3; ++u) expect[(i % 4) * 3 + u] += v[i];
    }
  }
  EXPECT_TRUE(all_close(g[0], from_vector<float>(expect, {4, 3}), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(g[1], full({3}, 7.0)));
  EXPECT_EQ(d.weights().size(), 2u);
  EXPECT_EQ(store.size(), 2u);
}

// Two users of one variable: the tape gradient equals the sum of each user's own gradient.
void expect_summed_gradient(Dense& a, Dense& b) {
  Tensor x1 = random_tensor({3, 4}, float32, 3), x2 = random_tensor({2, 4}, float32, 4);
  const Tensor& k = a.kernel().value();
  std::vector<Tensor> ga, gb, both;
  {
    GradientTape t;
    ga = t.gradient(sum(square(a(x1))), {k});
  }
  {
    GradientTape t;
    gb = t.gradient(sum(square(b(x2))), {k});
  }
  {
    GradientTape t;
    both = t.gradient(sum(square(a(x1))) + sum(square(b(x2))), {k});
  }
  EXPECT_TRUE(all_close(both[0], ga[0] + gb[0], 1e-5, 1e-5));
  EXPECT_FALSE(all_close(gb[0], zeros_like(gb[0])));  // b's use really contributes
}

// A model holding two layers, to count parameters over both.
class Pair : public Model {
 public:
  Pair(std::shared_ptr<Dense> a, std::shared_ptr<Dense> b) : Model("pair") {
    a_ = &track(std::move(a));
    b_ = &track(std::move(b));
  }

 protected:
  Tensor call(const Tensor& x, bool training) override {
    return (*a_)(x, training) + (*b_)(x, training);
  }

 private:
  Dense* a_;
  Dense* b_;
};

TEST(Sharing, LayerBuiltWithAnothersWeights) {
  VariableStore store(1);
  auto a = std::make_shared<Dense>(3);
  auto b = std::make_shared<Dense>(3, DenseOptions{.share_weights_with = a.get()});
  Pair m(a, b);
  m.set_store(store);
  m(ones({2, 4}));  // b builds from a's weights (a is built first either way)
  EXPECT_EQ(a->kernel(), b->kernel());
  EXPECT_EQ(a->bias(), b->bias());
  EXPECT_EQ(m.count_params(), 4 * 3 + 3);
  EXPECT_EQ(m.weights().size(), 2u);
  EXPECT_EQ(store.size(), 2u);
  expect_summed_gradient(*a, *b);
}

TEST(Sharing, ShareWeightsFromBuildsTheOtherLayerFirst) {
  VariableStore store(1);
  Dense a(3), b(3);
  a.set_store(store);
  b.set_store(store);
  b.share_weights_from(a);
  b(ones({1, 2}));  // a is not built yet: built now for the same input shape
  EXPECT_TRUE(a.built());
  EXPECT_EQ(a.kernel(), b.kernel());
  expect_error<StateError>([&] { b.share_weights_from(a); }, {b.name(), "already built"});
}

TEST(Sharing, SharedWeightOfAnotherShapeIsAShapeError) {
  VariableStore store(1);
  Dense a(3, DenseOptions{.name = "src"});
  Dense b(3, DenseOptions{.name = "dst"});
  a.set_store(store);
  b.set_store(store);
  a(ones({1, 2}));
  b.share_weights_from(a);
  expect_error<ShapeError>(
      [&] {
        b(ones({1, 5}));
      },
      {"'dst'", "'src'", "kernel", "[5, 3]", "[2, 3]"});
  Dense c(3, DenseOptions{.use_bias = true, .name = "c"});
  Dense nobias(3, DenseOptions{.use_bias = false, .name = "nobias"});
  nobias.set_store(store);
  c.set_store(store);
  nobias(ones({1, 2}));
  c.share_weights_from(nobias);
  expect_error<ValueError>([&] { c(ones({1, 2})); }, {"'c'", "'nobias'", "no weight 'bias'"});
}

TEST(Sharing, NameScopedReuseInAStore) {
  VariableStore store(1);
  auto a = std::make_shared<Dense>(3, DenseOptions{.name = "proj"});
  auto b = std::make_shared<Dense>(3, DenseOptions{.name = "proj"});
  a->set_store(store);
  b->set_store(store);
  {
    VariableStore::Scope s(store, "tied", /*reuse=*/true);
    (*a)(ones({1, 4}));
    (*b)(ones({1, 4}));
  }
  EXPECT_EQ(a->kernel().name(), "tied/proj/kernel");
  EXPECT_EQ(a->kernel(), b->kernel());
  EXPECT_EQ(store.size(), 2u);
  expect_summed_gradient(*a, *b);
  // Without reuse the same name is an error naming the variable.
  Dense c(3, DenseOptions{.name = "proj"});
  c.set_store(store);
  VariableStore::Scope s(store, "tied");
  expect_error<ValueError>([&] { c(ones({1, 4})); }, {"tied/proj/kernel"});
}

TEST(Sharing, SharedParametersAreCountedOnceInAModel) {
  VariableStore store(1);
  auto a = std::make_shared<Dense>(3, DenseOptions{.name = "pa"});
  auto b = std::make_shared<Dense>(3, DenseOptions{.name = "pa"});
  Pair m(a, b);
  m.set_store(store);
  VariableStore::Scope s(store, "r", true);
  m(ones({2, 4}));
  EXPECT_EQ(a->kernel().name(), "r/pair/pa/kernel");
  EXPECT_EQ(m.count_params(), 15);
  EXPECT_EQ(m.trainable_weights().size(), 2u);
}

TEST(Layer, TrainableFlagMovesWeightsToNonTrainable) {
  VariableStore store(1);
  Sequential seq;
  seq.set_store(store);
  auto d = std::make_shared<Dense>(2);
  auto bn = std::make_shared<BatchNormalization>();
  seq.add(d).add(bn);
  seq(ones({3, 4}));
  EXPECT_EQ(seq.trainable_weights().size(), 4u);      // kernel, bias, gamma, beta
  EXPECT_EQ(seq.non_trainable_weights().size(), 2u);  // moving mean and variance
  EXPECT_EQ(seq.weights().size(), 6u);
  d->set_trainable(false);
  EXPECT_EQ(seq.trainable_weights().size(), 2u);
  EXPECT_EQ(seq.non_trainable_weights().size(), 4u);
  seq.set_trainable(false);
  EXPECT_TRUE(seq.trainable_weights().empty());
  EXPECT_EQ(seq.non_trainable_weights().size(), 6u);
  EXPECT_EQ(seq.count_params(), 4 * 2 + 2 + 4 * 2);
}

TEST(Layer, SetStoreAfterBuildIsAStateError) {
  VariableStore store(1);
  Dense d(2, DenseOptions{.name = "built_one"});
  d.set_store(store);
  d(ones({1, 1}));
  VariableStore other(2);
  expect_error<StateError>([&] { d.set_store(other); }, {"'built_one'", "already built"});
}

TEST(Layer, UnknownActivationListsTheValidOnes) {
  expect_error<ValueError>([] { Dense(2, "relux"); }, {"relux", "relu", "sigmoid", "tanh",
                                                       "softmax", "gelu", "leaky_relu", "linear"});
  expect_error<ValueError>([] { Activation("swishy"); }, {"swishy", "relu"});
}

TEST(Layer, MultiInputLayersRejectOneTensorAndOneInputLayersRejectLists) {
  VariableStore store(1);
  Add add_layer("adder");
  add_layer.set_store(store);
  expect_error<ValueError>([&] { add_layer(ones({1, 2})); }, {"'adder'", "list of inputs"});
  Dense d(2, DenseOptions{.name = "single"});
  d.set_store(store);
  expect_error<ValueError>(
      [&] {
        d({ones({1, 2}), ones({1, 2})});
      },
      {"'single'", "one input", "2"});
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

TEST(LayerNameScope, CountsNamesFromScratchAndLeavesTheGlobalCountersAlone) {
  Dense before(3);
  const std::string next_global = Dense(3).name();
  {
    LayerNameScope scope;
    VariableStore store;
    Dense a(3), b(3);
    EXPECT_EQ(a.name(), "dense");
    EXPECT_EQ(b.name(), "dense_1");
    {
      LayerNameScope inner;
      EXPECT_EQ(Dense(3).name(), "dense");
    }
    EXPECT_EQ(Dense(3).name(), "dense_2");
  }
  // The process-wide counter went on from where it was, untouched by the scope.
  const std::string after = Dense(3).name();
  EXPECT_NE(after, next_global);
  EXPECT_NE(after, "dense");
}

}  // namespace
}  // namespace kiln
