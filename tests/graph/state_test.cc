// State inside traced functions: variable assignment, optimizer updates and random keys are
// stateful ops, so a graph applies them on every call and passes never drop or merge them.
#include <gtest/gtest.h>

#include "kiln/autograd.h"
#include "kiln/function.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::random_tensor;

TEST(GraphState, AssignInsideAFunctionRunsOnEveryCall) {
  Variable v("counter", zeros({3}), /*trainable=*/false);
  int runs = 0;
  Function f = function([&](const Tensor& x) {
    ++runs;
    v.assign(v.value() + x);
    return v.value() * 1.0;
  });
  Tensor one = ones({3});
  const uint64_t v0 = v.version();
  for (int i = 1; i <= 4; ++i) {
    Tensor y = f(one);
    EXPECT_TRUE(all_close(y, full({3}, i), 0, 0)) << i;
  }
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(all_close(v.value(), full({3}, 4), 0, 0));
  EXPECT_EQ(v.version(), v0 + 4);
  // Assigning from outside is seen by the next call without a retrace.
  v.assign(full({3}, 10));
  EXPECT_TRUE(all_close(f(one), full({3}, 11), 0, 0));
  EXPECT_EQ(f.cache_info().traces, 1u);
}

TEST(GraphState, PassesKeepUnreadUpdatesAndDoNotMergeAcrossThem) {
  Variable w("w", ones({2, 2}), /*trainable=*/false);
  Function f = function([&](const Tensor& x) {
    Tensor before = matmul(x, w.value());
    w.assign(w.value() * 2.0);  // nobody reads the assign: it must stay
    Tensor after = matmul(x, w.value());
    return before + after;
  });
  Tensor x = ones({1, 2});
  // Call 1: before = [2, 2], after = [4, 4]; w doubles on every call.
  EXPECT_TRUE(all_close(f(x), full({1, 2}, 6), 0, 0));
  EXPECT_TRUE(all_close(f(x), full({1, 2}, 12), 0, 0));
  std::string text = f.graph_text({x});
  EXPECT_NE(text.find("assign"), std::string::npos) << text;
  size_t first = text.find("matmul"), second = text.find("matmul", first + 1);
  EXPECT_NE(second, std::string::npos) << "the two matmuls were merged across the update:\n"
                                       << text;
}

TEST(GraphState, OptimizerStepsInAGraphMatchEagerSteps) {
  for (const char* name : {"sgd", "adam", "rmsprop"}) {
    SCOPED_TRACE(name);
    auto make_opt = [&]() -> std::unique_ptr<Optimizer> {
      if (std::string(name) == "sgd") return std::make_unique<SGD>(0.1, 0.9, true);
      if (std::string(name) == "adam") return std::make_unique<Adam>(0.01);
      return std::make_unique<RMSprop>(0.01, 0.9, 0.5);
    };
    Variable we("w", random_tensor({4, 3}, float32, 1)), wg("w", we.value());
    auto oe = make_opt(), og = make_opt();
    Tensor x = random_tensor({5, 4}, float32, 2);
    auto loss_of = [&](const Variable& w, const Tensor& in) {
      return mean(square(tanh(matmul(in, w.value()))));
    };
    int runs = 0;
    Function step = function([&](const Tensor& in) {
      ++runs;
      GradientTape tape;
      Tensor l = loss_of(wg, in);
      tape.stop_recording();
      og->apply_gradients({wg}, tape.gradient(l, {wg.value()}));
      return l;
    });
    for (int i = 0; i < 5; ++i) {
      GradientTape tape;
      Tensor le = loss_of(we, x);
      tape.stop_recording();
      oe->apply_gradients({we}, tape.gradient(le, {we.value()}));
      Tensor lg = step(x);
      EXPECT_TRUE(all_close(lg, le, 1e-6, 1e-7)) << i;
    }
    EXPECT_EQ(runs, 1);
    EXPECT_TRUE(all_close(wg.value(), we.value(), 1e-6, 1e-7));
    EXPECT_EQ(og->iterations(), 5);
    EXPECT_EQ(oe->iterations(), 5);
    // A new learning rate is read by the next call: no retrace. (Momentum keeps SGD and
    // RMSprop moving at rate 0; Adam stops.)
    og->set_learning_rate(0);
    Tensor w_before = wg.value().clone();
    step(x);
    if (std::string(name) == "adam") EXPECT_TRUE(all_close(wg.value(), w_before, 0, 0));
    EXPECT_EQ(step.cache_info().traces, 1u);
  }
}

TEST(GraphState, TracedDropoutDrawsANewMaskPerCallAndTheSameMasksAsEager) {
  Dropout eager(0.5, /*seed=*/3), traced(0.5, /*seed=*/3);
  Function f = function([&](const std::vector<Tensor>& a,
                            bool training) { return std::vector<Tensor>{traced(a[0], training)}; },
                        {.name = "drop"});
  Tensor x = ones({8, 16});
  Tensor prev;
  for (int i = 0; i < 4; ++i) {
    Tensor g = f(std::vector<Tensor>{x}, /*training=*/true)[0];
    Tensor e = eager(x, /*training=*/true);
    EXPECT_TRUE(all_close(g, e, 0, 0)) << i;
    if (prev.defined()) EXPECT_FALSE(all_close(g, prev, 0, 0)) << "the same mask twice: " << i;
    prev = g;
  }
  EXPECT_EQ(f.cache_info().traces, 1u);
  // Inference is the identity and draws nothing.
  EXPECT_TRUE(all_close(f(std::vector<Tensor>{x}, false)[0], x, 0, 0));
}

TEST(GraphState, GradientThroughTracedDropoutUsesTheCallsMask) {
  Dropout layer(0.4, /*seed=*/9);
  Variable w("w", ones({6, 5}));
  Function f = function([&](const Tensor& x) {
    GradientTape tape;
    Tensor y = sum(layer(x * w.value(), /*training=*/true));
    return tape.gradient(y, {w.value()})[0];
  });
  // d/dw sum(dropout(x * w)) = dropout(x) with the same key: x = 1 gives the mask * scale.
  Tensor prev;
  for (int i = 0; i < 3; ++i) {
    Tensor g = f(ones({6, 5}));
    std::vector<float> v = g.to_vector<float>();
    for (float e : v) EXPECT_TRUE(e == 0.0f || std::abs(e - 1 / 0.6f) < 1e-6) << e;
    if (prev.defined()) EXPECT_FALSE(all_close(g, prev, 0, 0)) << i;
    prev = g;
  }
}

}  // namespace
}  // namespace kiln
