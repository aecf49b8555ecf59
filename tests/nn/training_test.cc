// fit / evaluate / predict on small synthetic problems, and the metrics they use.
#include "kiln/nn/training.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <tuple>

#include "kiln/nn/layers.h"
#include "kiln/nn/metrics.h"
#include "kiln/nn/model.h"
#include "kiln/nn/variable_store.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

// A 2-16-3 MLP with fixed names in its own store (so two builds with one seed are identical).
std::shared_ptr<Sequential> tiny_mlp(VariableStore& store, int64_t classes = 3) {
  auto m = std::make_shared<Sequential>("net");
  DenseOptions h;
  h.activation = "relu";
  h.name = "hidden";
  m->emplace<Dense>(16, h);
  DenseOptions o;
  o.name = "out";
  m->emplace<Dense>(classes, o);
  m->set_store(store);
  return m;
}

// Three well separated Gaussian blobs in 2-D: x [n, 2] float32, y [n] int32.
std::pair<Tensor, Tensor> blobs(int64_t n, uint64_t seed) {
  Tensor noise = random_normal({n, 2}, 0, 0.3, seed);
  Tensor x = empty({n, 2});
  Tensor y = empty({n}, int32);
  const float centers[3][2] = {{-2, 0}, {2, 0}, {0, 2.5f}};
  const float* z = noise.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    int c = static_cast<int>(i % 3);
    x.data<float>()[2 * i] = centers[c][0] + z[2 * i];
    x.data<float>()[2 * i + 1] = centers[c][1] + z[2 * i + 1];
    y.data<int32_t>()[i] = c;
  }
  return {x, y};
}

FitOptions quiet(int epochs) {
  FitOptions o;
  o.epochs = epochs;
  o.verbose = 0;
  return o;
}

TEST(Fit, LearnsASeparableProblem) {
  VariableStore store(1);
  auto model = tiny_mlp(store);
  auto [x, y] = blobs(300, 7);
  Adam opt(0.02);
  SparseCategoricalCrossentropy loss;
  Dataset train = Dataset(x, y).shuffle(3).batch(32);
  History h = fit(*model, opt, loss, train, quiet(15));
  ASSERT_EQ(h.size(), 15u);
  EXPECT_LT(h["loss"].back(), 0.25 * h["loss"].front());
  for (size_t i = 1; i < h.size(); i += 4) EXPECT_LT(h["loss"][i], h["loss"][0]);
  EXPECT_GE(h["accuracy"].back(), 0.98);
  EXPECT_GT(h["seconds"].front(), 0.0);
  EXPECT_EQ(opt.iterations(), 15 * 10);
  Logs ev = evaluate(*model, loss, Dataset(x, y).batch(64));
  EXPECT_GE(ev.at("accuracy"), 0.98);
  EXPECT_LT(ev.at("loss"), 0.2);
  expect_error<ValueError>([&] { h["val_loss"]; }, {"val_loss", "accuracy", "loss", "seconds"});
}

TEST(Fit, SameSeedsGiveTheSameLossCurve) {
  auto [x, y] = blobs(120, 2);
  auto run = [&, x = x, y = y](uint64_t weight_seed, uint64_t shuffle_seed) {
    VariableStore store(weight_seed);
    auto model = tiny_mlp(store);
    SGD opt(0.1, 0.9);
    return fit(*model, opt, SparseCategoricalCrossentropy(),
               Dataset(x, y).shuffle(shuffle_seed).batch(16), quiet(3))["loss"];
  };
  std::vector<double> a = run(5, 9), b = run(5, 9);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, run(5, 10));  // the shuffle seed matters
  EXPECT_NE(a, run(6, 9));   // and the weight seed
}

TEST(Fit, ValidationLogsAndOneLinePerEpochWhenNotATerminal) {
  VariableStore store(1);
  auto model = tiny_mlp(store);
  auto [x, y] = blobs(90, 3);
  auto [vx, vy] = blobs(30, 4);
  std::ostringstream out;
  FitOptions o;
  o.epochs = 2;
  o.validation = Dataset(vx, vy).batch(8);
  o.out = &out;
  Adam opt(0.01);
  History h = fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}) {
    EXPECT_EQ(h[k].size(), 2u) << k;
  }
  // val_loss equals a separate evaluation of the final model.
  EXPECT_NEAR(
      h["val_loss"].back(),
      evaluate(*model, SparseCategoricalCrossentropy(), Dataset(vx, vy).batch(30)).at("loss"),
      1e-6);
  std::string s = out.str();
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_NE(s.find("Epoch 1/2 - "), std::string::npos) << s;
  EXPECT_NE(s.find("Epoch 2/2 - "), std::string::npos) << s;
  EXPECT_NE(s.find(" - val_accuracy: "), std::string::npos) << s;
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 2);
}

TEST(Fit, ProgressBarRedrawsInPlace) {
  VariableStore store(1);
  auto model = tiny_mlp(store);
  auto [x, y] = blobs(64, 3);
  std::ostringstream out;
  FitOptions o;
  o.epochs = 1;
  o.batch_size = 8;
  o.out = &out;
  o.progress_bar = true;
  SGD opt(0.01);
  fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  std::string s = out.str();
  EXPECT_EQ(s.rfind("Epoch 1/1\n", 0), 0u) << s;
  EXPECT_NE(s.find("\r1/8 ["), std::string::npos) << s;  // first step drawn
  EXPECT_NE(s.find("\r8/8 [==============================] "), std::string::npos) << s;
  EXPECT_NE(s.find("ETA"), std::string::npos) << s;
  EXPECT_NE(s.find("ms/step - loss: "), std::string::npos) << s;
  EXPECT_EQ(s.back(), '\n');
}

TEST(Fit, RegressionWithoutAccuracyAndFrozenLayers) {
  VariableStore store(2);
  auto model = std::make_shared<Sequential>("reg");
  DenseOptions h;
  h.name = "frozen";
  auto& frozen = model->emplace<Dense>(4, h);
  DenseOptions o;
  o.name = "head";
  model->emplace<Dense>(1, o);
  model->set_store(store);
  Tensor x = random_normal({64, 3}, 0, 1, 11);
  Tensor y = sum(x, {1}, true) * 0.5;
  model->output_shape({1, 3});
  frozen.set_trainable(false);
  Tensor frozen_before = frozen.kernel().value().clone();
  FitOptions opts = quiet(30);
  opts.accuracy = false;
  opts.batch_size = 16;
  SGD opt(0.05);
  History hist = fit(*model, opt, MeanSquaredError(), x, y, opts);
  EXPECT_EQ(hist.history.count("accuracy"), 0u);
  EXPECT_LT(hist["loss"].back(), hist["loss"].front());
  EXPECT_TRUE(testing::all_close(frozen.kernel().value(), frozen_before, 0, 0));
}

TEST(Fit, CallsCallbacksInOrderAndStopsWhenAsked) {
  struct Recorder : Callback {
    std::vector<std::string> calls;
    void on_train_begin(const Logs&) override { calls.push_back("train_begin"); }
    void on_epoch_begin(int e, const Logs&) override {
      calls.push_back("epoch_begin " + std::to_string(e));
      EXPECT_NE(model(), nullptr);
    }
    void on_epoch_end(int e, const Logs& logs) override {
      calls.push_back("epoch_end " + std::to_string(e));
      EXPECT_EQ(logs.count("loss"), 1u);
      if (e == 2) stop_training = true;
    }
    void on_train_end(const Logs& logs) override {
      calls.push_back("train_end");
      EXPECT_EQ(logs.count("loss"), 1u);
    }
  };
  auto rec = std::make_shared<Recorder>();
  VariableStore store(1);
  auto model = tiny_mlp(store);
  auto [x, y] = blobs(30, 1);
  FitOptions o = quiet(10);
  o.initial_epoch = 1;
  o.callbacks = {rec};
  SGD opt(0.01);
  History h = fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  EXPECT_EQ(h.epochs, (std::vector<int>{1, 2}));
  EXPECT_EQ(rec->calls, (std::vector<std::string>{"train_begin", "epoch_begin 1", "epoch_end 1",
                                                  "epoch_begin 2", "epoch_end 2", "train_end"}));
  EXPECT_EQ(rec->model(), nullptr);
}

TEST(Fit, Errors) {
  VariableStore store(1);
  auto model = tiny_mlp(store);
  // Plain variables, not a structured binding: the lambdas below capture them (clang < 16).
  Tensor x, y;
  std::tie(x, y) = blobs(30, 1);
  SGD opt(0.01);
  FitOptions o = quiet(1);
  o.initial_epoch = 2;
  expect_error<ValueError>([&] { fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o); },
                           {"initial_epoch 2", "epochs 1"});
  // Labels out of range for 3 classes reach the loss's error.
  Tensor bad = full({30}, 5, int32);
  expect_error<ValueError>(
      [&] { fit(*model, opt, SparseCategoricalCrossentropy(), x, bad, quiet(1)); }, {"5"});
  // Data-parallel fit needs kiln::distributed::init() (never called in this program).
  FitOptions d = quiet(1);
  d.distributed = true;
  expect_error<StateError>([&] { fit(*model, opt, SparseCategoricalCrossentropy(), x, y, d); },
                           {"FitOptions::distributed", "kiln::distributed::init()"});
}

TEST(Predict, MatchesTheModelBatchByBatchAndWhole) {
  VariableStore store(4);
  auto model = tiny_mlp(store);
  Tensor x, y;  // not a structured binding: captured by a lambda below (clang < 16)
  std::tie(x, y) = blobs(50, 5);
  Tensor whole = (*model)(x, false);
  Tensor p = predict(*model, x, 7);
  EXPECT_EQ(p.shape(), Shape({50, 3}));
  EXPECT_TRUE(testing::all_close(p, whole, 1e-6, 1e-6));
  EXPECT_TRUE(testing::all_close(predict(*model, Dataset(x, y).batch(16)), whole, 1e-6, 1e-6));
  // drop_remainder: only the full batches' rows.
  EXPECT_EQ(predict(*model, Dataset(x, y).batch(16, true)).shape(), Shape({48, 3}));
  expect_error<ValueError>([&] { predict(*model, x, 0); }, {"batch_size", "0"});
}

TEST(Accuracy, CountsArgmaxMatches) {
  Accuracy acc;
  Tensor logits = from_vector(std::vector<float>{1, 3, 2, 5, 0, 0, 1, 1, 0}, {3, 3});
  acc.update(from_vector(std::vector<int64_t>{1, 0, 0}), logits);  // ties pick the first
  EXPECT_DOUBLE_EQ(acc.result(), 1.0);
  acc.update(from_vector(std::vector<float>{2}, {1, 1}),
             from_vector(std::vector<double>{9, 1, 2}, {1, 3}));
  EXPECT_DOUBLE_EQ(acc.result(), 0.75);
  EXPECT_EQ(acc.count(), 4);
  acc.reset();
  EXPECT_DOUBLE_EQ(acc.result(), 0.0);
  expect_error<ShapeError>(
      [&] {
        acc.update(zeros({2}, int32), zeros({3, 4}));
      },
      {"accuracy", "[2]", "[3, 4]"});
  expect_error<DTypeError>(
      [&] {
        acc.update(zeros({3}, int32), zeros({3, 4}, int32));
      },
      {"accuracy", "int32"});
  expect_error<DTypeError>(
      [&] {
        acc.update(zeros({3}, boolean), zeros({3, 4}));
      },
      {"accuracy", "bool"});
}

TEST(MeanMetric, WeightedRunningMean) {
  Mean m("loss");
  m.update(1.0, 2);
  m.update(4.0);
  EXPECT_DOUBLE_EQ(m.result(), 2.0);
  m.update(Tensor(), from_vector(std::vector<int32_t>{2, 2, 2}));
  EXPECT_DOUBLE_EQ(m.result(), 2.0);
  EXPECT_DOUBLE_EQ(m.total_weight(), 6);
  m.reset();
  EXPECT_DOUBLE_EQ(m.result(), 0.0);
  expect_error<ValueError>([&] { m.update(1.0, -1); }, {"loss", "weight"});
}

}  // namespace
}  // namespace kiln
