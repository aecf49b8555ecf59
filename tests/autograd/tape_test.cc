#include "kiln/autograd.h"

#include <gtest/gtest.h>

#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;

TEST(GradientTape, ProductRule) {
  Tensor w = from_vector<float>({1, 2, 3});
  Tensor x = from_vector<float>({4, 5, 6});
  GradientTape tape;
  tape.watch(w);
  tape.watch(x);
  Tensor y = sum(w * x);
  auto g = tape.gradient(y, {w, x});
  EXPECT_TRUE(all_close(g[0], x));
  EXPECT_TRUE(all_close(g[1], w));
}

TEST(GradientTape, TensorUsedTwiceAccumulates) {
  Tensor x = from_vector<double>({1, -2, 3});
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(x * x + x);
  Tensor g = tape.gradient(y, {x})[0];
  EXPECT_TRUE(all_close(g, from_vector<double>({3, -3, 7})));
}

TEST(GradientTape, RequiresGradTensorsAreWatchedAutomatically) {
  Tensor w = from_vector<float>({2});
  w.set_requires_grad(true);
  GradientTape tape;
  Tensor y = sum(w * w * w);
  EXPECT_EQ(tape.gradient(y, {w})[0].item<float>(), 12.f);
}

TEST(GradientTape, NoGradientThroughIntegersOrStopGradientOrUnconnected) {
  Tensor x = from_vector<float>({1.5, 2.5});
  Tensor other = from_vector<float>({1, 1});
  GradientTape tape(/*persistent=*/true);
  tape.watch(x);
  Tensor through_int = sum(cast(cast(x, int32), float32));
  EXPECT_FALSE(tape.gradient(through_int, {x})[0].defined());
  Tensor stopped = sum(stop_gradient(x) * x);
  EXPECT_TRUE(all_close(tape.gradient(stopped, {x})[0], x));
  EXPECT_FALSE(tape.gradient(stopped, {other})[0].defined());
}

TEST(GradientTape, NonPersistentTapeIsUsedOnce) {
  Tensor x = from_vector<float>({1});
  GradientTape tape;
  tape.watch(x);
  Tensor y = x * x;
  tape.gradient(y, {x});
  expect_error<StateError>([&] { tape.gradient(y, {x}); }, {"only once", "persistent"});
}

TEST(GradientTape, OutputGradientSeedsTheTarget) {
  Tensor x = from_vector<float>({1, 2});
  GradientTape tape(true);
  tape.watch(x);
  Tensor y = x * 3.0;
  Tensor g = tape.gradient(y, {x}, from_vector<float>({1, 10}))[0];
  EXPECT_TRUE(all_close(g, from_vector<float>({3, 30})));
  expect_error<ShapeError>([&] { tape.gradient(y, {x}, zeros({3})); },
                           {"output_gradient", "[3]", "[2]"});
}

TEST(GradientTape, StopRecording) {
  Tensor x = from_vector<float>({2});
  GradientTape tape;
  tape.watch(x);
  Tensor a = x * x;
  size_t n = tape.size();
  tape.stop_recording();
  Tensor b = a * x;  // not recorded
  tape.start_recording();
  EXPECT_EQ(tape.size(), n);
  EXPECT_FALSE(tape.gradient(b, {x})[0].defined());
}

TEST(GradientTape, NestedTapesGiveSecondDerivatives) {
  Tensor x = from_vector<double>({2, -1});
  GradientTape outer;
  outer.watch(x);
  Tensor dy;
  {
    GradientTape inner;
    inner.watch(x);
    Tensor y = sum(x * x * x);
    dy = inner.gradient(y, {x})[0];  // 3x^2, recorded by the outer tape
  }
  EXPECT_TRUE(all_close(dy, from_vector<double>({12, 3})));
  Tensor d2 = outer.gradient(sum(dy), {x})[0];  // 6x
  EXPECT_TRUE(all_close(d2, from_vector<double>({12, -6})));
}

TEST(GradientTape, BroadcastGradientsSumBack) {
  check_gradients([](const std::vector<Tensor>& v) { return v[0] * v[1] + v[1]; },
                  {random_tensor({3, 4}, float64, 1), random_tensor({4}, float64, 2)});
}

// A small MLP end to end: dense -> relu -> dense -> log_softmax, against finite differences.
TEST(GradientTape, SmallMlpMatchesFiniteDifferences) {
  auto mlp = [](const std::vector<Tensor>& p) {
    Tensor h = relu(matmul(p[0], p[1]) + p[2]);
    return log_softmax(matmul(h, p[3]) + p[4]);
  };
  check_gradients(mlp, {random_tensor({5, 4}, float64, 3), random_tensor({4, 6}, float64, 4),
                        random_tensor({6}, float64, 5), random_tensor({6, 3}, float64, 6),
                        random_tensor({3}, float64, 7)});
}

TEST(GradientTape, SoftmaxCrossEntropyThroughMlp) {
  Tensor labels = from_vector<int64_t>({0, 2, 1, 1});
  auto f = [&](const std::vector<Tensor>& p) {
    Tensor logits = matmul(tanh(matmul(p[0], p[1])), p[2]);
    return mean(softmax_cross_entropy(logits, labels));
  };
  check_gradients(f, {random_tensor({4, 3}, float64, 8), random_tensor({3, 5}, float64, 9),
                      random_tensor({5, 3}, float64, 10)});
}

// Every public Tensor method that returns a tensor, through a tape: reshape, rows and clone
// carry the gradient (they are ops); copy_from writes values in place and carries none (its
// documented contract: the destination is not an op output).
TEST(GradientTape, TensorMethodsCarryTheGradient) {
  Tensor w = from_vector<double>({1, 2, 3, 4});
  {
    GradientTape tape;
    tape.watch(w);
    Tensor g = tape.gradient(sum(w.reshape({2, 2}) * 3.0), {w})[0];
    ASSERT_TRUE(g.defined()) << "reshape lost the gradient";
    EXPECT_TRUE(all_close(g, full({4}, 3.0, float64)));
  }
  {
    GradientTape tape;
    tape.watch(w);
    Tensor m = w.reshape({4, 1});
    Tensor g = tape.gradient(sum(square(m.rows(1, 3))), {w})[0];
    ASSERT_TRUE(g.defined()) << "rows lost the gradient";
    EXPECT_TRUE(all_close(g, from_vector<double>({0, 4, 6, 0})));
  }
  {
    GradientTape tape;
    tape.watch(w);
    Tensor g = tape.gradient(sum(w.clone() * w), {w})[0];
    ASSERT_TRUE(g.defined()) << "clone lost the gradient";
    EXPECT_TRUE(all_close(g, w * 2.0));
  }
  {
    GradientTape tape;
    tape.watch(w);
    Tensor dst = zeros({4}, float64);
    dst.copy_from(w * 2.0);
    EXPECT_FALSE(tape.gradient(sum(dst), {w})[0].defined());
  }
  // Gradient checks in float64, first and second order, through each view.
  check_gradients(
      [](const std::vector<Tensor>& v) {
        return v[0].reshape({3, 2}) * v[0].reshape({3, 2});
      },
      {random_tensor({2, 3}, float64, 1)});
  check_gradients([](const std::vector<Tensor>& v) { return square(v[0].rows(1, 3)); },
                  {random_tensor({4, 2}, float64, 2)});
  check_gradients([](const std::vector<Tensor>& v) { return v[0].clone() * v[0]; },
                  {random_tensor({3}, float64, 3)});
}

TEST(GradientTape, ViewsShareStorageAndReferenceCopies) {
  Tensor x = arange(0, 12).reshape({3, 4});
  EXPECT_EQ(x.reshape({12}).raw_data(), x.raw_data());
  EXPECT_EQ(x.rows(1, 2).raw_data(), static_cast<const char*>(x.raw_data()) + 16);
  EXPECT_NE(x.clone().raw_data(), x.raw_data());
  testing::check_fast_matches_reference(
      [&] {
        return x.reshape({2, 6});
      },
      0, 0, testing::Expect::kView);
  testing::check_fast_matches_reference([&] { return x.rows(1, 3); }, 0, 0, testing::Expect::kView);
  expect_error<ValueError>([&] { x.rows(2, 5); }, {"rows: [2, 5)", "[3, 4]"});
  expect_error<StateError>([] { Tensor().reshape({1}); }, {"reshape", "undefined"});
}

// An op whose output is floating but that has no gradient rule: reaching it must throw.
void ruleless_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) { out[0] = in[0]; }
void ruleless_kernel(const KernelArgs& k) { k.out[0].copy_from(k.in[0]); }
const OpDef kRuleless{.name = "ruleless_test_op",
                      .num_inputs = 1,
                      .num_outputs = 1,
                      .infer = ruleless_infer,
                      .reference = ruleless_kernel};

TEST(GradientTape, AnOpWithoutARuleIsRefusedNotDropped) {
  Tensor x = from_vector<double>({1, 2});
  GradientTape tape(/*persistent=*/true);
  tape.watch(x);
  Tensor y = run_op(kRuleless, {x});
  expect_error<StateError>([&] { tape.gradient(sum(y), {x}); },
                           {"ruleless_test_op", "no gradient rule"});
  // A path that does not reach the op is unaffected.
  EXPECT_TRUE(all_close(tape.gradient(sum(x * x), {x})[0], x * 2.0));
}

TEST(GradientTape, SecondOrderThroughMaxPool) {
  // d/dx sum(d/dx sum(maxpool(x) * maxpool(x))): the inner gradient goes through max_pool2d's
  // rule (max_pool2d_grad), whose own rule (max_pool2d_select) the outer tape needs.
  check_gradients(
      [](const std::vector<Tensor>& v) {
        Pool2DOptions o;
        o.pool_size = {2, 2};
        Tensor p = max_pool2d(v[0], o);
        return p * p;
      },
      {random_tensor({1, 4, 4, 2}, float64, 5)});
}

// The on_ready overload: each source reported once, as soon as its gradient is final, with
// the same values as the plain gradient() call.
TEST(GradientTape, OnReadyReportsEachSourceWhenItsGradientIsFinal) {
  Tensor w1 = from_vector<float>({1, 2});
  Tensor w2 = from_vector<float>({3, 4});
  Tensor unused = from_vector<float>({5});
  Tensor x = from_vector<float>({0.5f, -1});
  GradientTape tape(/*persistent=*/true);
  for (const Tensor& t : {w1, w2, unused}) tape.watch(t);
  Tensor h = w1 * x;               // node 0 reads w1
  Tensor y = sum(square(h) * w2);  // w2 is read by the last mul only
  std::vector<size_t> order;
  std::vector<Tensor> seen(3);
  std::vector<Tensor> g = tape.gradient(y, {w2, w1, unused}, [&](size_t k, const Tensor& grad) {
    order.push_back(k);
    seen[k] = grad;
  });
  // w2 first (its only reader is the latest op), then w1 when the walk reaches the first op;
  // unused sources come last, undefined.
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2}));
  EXPECT_FALSE(seen[2].defined());
  EXPECT_FALSE(g[2].defined());
  EXPECT_TRUE(all_close(seen[0], g[0]));
  EXPECT_TRUE(all_close(seen[1], g[1]));
  std::vector<Tensor> plain = tape.gradient(y, {w2, w1, unused});
  EXPECT_TRUE(all_close(plain[0], g[0]));
  EXPECT_TRUE(all_close(plain[1], g[1]));
}

TEST(GradientTape, OnReadyFiresBeforeTheWalkEnds) {
  // A chain of 4 layers: the last layer's weight must be reported while earlier layers'
  // gradients are still to be computed (that is what lets communication overlap).
  std::vector<Tensor> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(from_vector<float>({1.0f + i}));
  GradientTape tape;
  for (const Tensor& w : ws) tape.watch(w);
  Tensor h = from_vector<float>({2});
  for (const Tensor& w : ws) h = h * w;
  Tensor y = sum(h);
  std::vector<size_t> order;
  tape.gradient(y, ws, [&](size_t k, const Tensor& g) {
    EXPECT_TRUE(g.defined());
    order.push_back(k);
  });
  EXPECT_EQ(order, (std::vector<size_t>{3, 2, 1, 0}));
}

TEST(GradientTape, OnReadyWithoutAPathReportsEverySourceUndefined) {
  Tensor a = from_vector<float>({1});
  Tensor b = from_vector<float>({2});
  GradientTape tape;
  tape.watch(a);
  Tensor y = sum(b * b);  // not recorded: b is not watched
  int calls = 0;
  tape.gradient(y, {a, a}, [&](size_t, const Tensor& g) {
    EXPECT_FALSE(g.defined());
    ++calls;
  });
  EXPECT_EQ(calls, 2);
}

TEST(GradientTape, OnReadyErrors) {
  Tensor w = from_vector<float>({1});
  {
    GradientTape tape;
    tape.watch(w);
    Tensor y = sum(w * w);
    int calls = 0;
    expect_error<ValueError>(
        [&] {
          tape.gradient(y, {w, Tensor()}, [&](size_t, const Tensor&) { ++calls; });
        },
        {"source 1", "undefined"});
    EXPECT_EQ(calls, 0);  // checked before the walk
  }
  GradientTape tape;
  tape.watch(w);
  Tensor y = sum(w * w);
  expect_error<ValueError>(
      [&] {
        tape.gradient(y, {w}, [](size_t, const Tensor&) { throw ValueError("from on_ready"); });
      },
      {"from on_ready"});
}

}  // namespace
}  // namespace kiln
