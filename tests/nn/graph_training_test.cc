// Graph-mode fit / evaluate / predict: the traced step matches eager training from the same
// seed, traces once per batch shape, and evaluation and prediction agree with eager mode.
#include <gtest/gtest.h>

#include "graph_training.h"
#include "kiln/function.h"
#include "kiln/nn.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_graph_matches_eager;

Tensor labels(int64_t n, int classes, uint64_t seed) {
  return cast(random_uniform({n}, 0, classes - 1e-6, seed), int32);
}

// 50 steps: 5 epochs of 10 batches of 32.
TEST(GraphTraining, MlpFiftyStepsMatchEager) {
  Tensor x = random_uniform({320, 28, 28, 1}, 0, 1, 1);
  expect_graph_matches_eager([] { return make_mlp(); }, x, labels(320, 10, 2), 32, 5, 1e-5);
}

// Dropout draws its masks from a key per call, BatchNorm assigns its moving statistics: both
// are ops, so the graph does what eager mode does.
std::shared_ptr<Layer> dropout_batchnorm_model() {
  auto m = std::make_shared<Sequential>(unique_layer_name("dbn"));
  m->emplace<Flatten>();
  m->emplace<Dense>(64);
  m->emplace<BatchNormalization>();
  m->emplace<Activation>("relu");
  m->emplace<Dropout>(0.3, /*seed=*/5);
  m->emplace<Dense>(10);
  m->output_shape(Shape{1, 8, 8, 1});
  return m;
}

TEST(GraphTraining, DropoutAndBatchNormFiftyStepsMatchEager) {
  Tensor x = random_normal({320, 8, 8, 1}, 0, 1, 3);
  expect_graph_matches_eager(dropout_batchnorm_model, x, labels(320, 10, 4), 32, 5, 1e-5);
}

// Counts how often its call() runs: once per trace in graph mode, once per batch eagerly.
class CountingLayer : public Layer {
 public:
  CountingLayer() : Layer("counting", "counting") {}
  std::string type_name() const override { return "Counting"; }
  int calls = 0;

 protected:
  Tensor call(const Tensor& x, bool) override {
    ++calls;
    return x;
  }
  Shape compute_output_shape(const Shape& s) override { return s; }
};

TEST(GraphTraining, TracesOncePerBatchShapeAndEvaluatesAndPredictsLikeEager) {
  auto model = std::make_shared<Sequential>(unique_layer_name("counted"));
  model->emplace<Flatten>();
  model->emplace<Dense>(32, "relu");
  auto counter = std::make_shared<CountingLayer>();
  model->add(counter);
  model->emplace<Dense>(10);
  Tensor x = random_uniform({100, 28, 28, 1}, 0, 1, 5);
  Tensor y = labels(100, 10, 6);
  Dataset data = Dataset(x, y).batch(32);  // 3 x 32 and one of 4
  FitOptions o;
  o.epochs = 2;
  o.verbose = 0;
  o.graph = true;
  o.validation = data;
  Adam opt;
  SparseCategoricalCrossentropy loss;
  History h = fit(*model, opt, loss, data, o);
  EXPECT_EQ(opt.iterations(), 8);
  // Two batch shapes: two traces of the train step and two of validation, over 2 epochs.
  EXPECT_EQ(counter->calls, 4);
  // Validation in graph mode equals eager evaluation of the trained weights.
  Logs eager = evaluate(*model, loss, data);
  Logs graph = evaluate(*model, loss, data, true, /*graph=*/true);
  EXPECT_NEAR(graph["loss"], eager["loss"], 1e-6);
  EXPECT_DOUBLE_EQ(graph["accuracy"], eager["accuracy"]);
  EXPECT_NEAR(h["val_loss"].back(), eager["loss"], 1e-6);
  EXPECT_TRUE(
      all_close(predict(*model, x, 32, /*graph=*/true), predict(*model, x, 32), 1e-6, 1e-6));
  EXPECT_TRUE(all_close(predict(*model, data, /*graph=*/true), predict(*model, data), 1e-6, 1e-6));
}

TEST(GraphTraining, FreezingALayerBetweenEpochsTracesTheStepAgain) {
  auto model = make_mlp();
  Tensor x = random_uniform({64, 28, 28, 1}, 0, 1, 7);
  Dataset data = Dataset(x, labels(64, 10, 8)).batch(32);
  FitOptions o;
  o.epochs = 1;
  o.verbose = 0;
  o.graph = true;
  Adam opt;
  SparseCategoricalCrossentropy loss;
  fit(*model, opt, loss, data, o);
  std::shared_ptr<Layer> first = model->layers()[1];
  Tensor frozen = first->weights()[0].value().clone();
  first->set_trainable(false);
  fit(*model, opt, loss, data, o);
  EXPECT_TRUE(all_close(first->weights()[0].value(), frozen, 0, 0));
}

// predict(..., graph = true) keeps one traced function per live model: later calls reuse its
// traces (the counting layer runs only while tracing), and it dies with the model.
TEST(GraphTraining, PredictReusesTheModelsTracesAcrossCalls) {
  auto model = std::make_shared<Sequential>(unique_layer_name("predicted"));
  model->emplace<Flatten>();
  auto counter = std::make_shared<CountingLayer>();
  model->add(counter);
  model->emplace<Dense>(10);
  Tensor x = random_uniform({40, 28, 28, 1}, 0, 1, 9);
  Tensor first = predict(*model, x, 16, /*graph=*/true);  // batches 16, 16, 8: two traces
  EXPECT_EQ(counter->calls, 2);
  Tensor again = predict(*model, x, 16, /*graph=*/true);
  EXPECT_EQ(counter->calls, 2);
  EXPECT_TRUE(all_close(again, first, 0, 0));
  EXPECT_TRUE(all_close(first, predict(*model, x, 16), 1e-6, 1e-6));
}

}  // namespace
}  // namespace kiln
