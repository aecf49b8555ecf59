// The dispatcher's three paths: eager (fast kernel, else reference), the tape hook and the
// trace hook. kiln::function will implement TraceRecorder; this test stands in for it.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor_impl.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

// Records op names and output shapes; computes nothing.
class RecordingTracer : public detail::TraceRecorder {
 public:
  RecordingTracer() : saved_(detail::thread_context().tracer) {
    detail::thread_context().tracer = this;
  }
  ~RecordingTracer() override { detail::thread_context().tracer = saved_; }
  void trace(const OpDef& op, std::span<const Tensor> inputs, const Attrs&,
             std::span<const Tensor> outputs) override {
    nodes.push_back(std::string(op.name) + " -> " + to_string(outputs[0].shape()));
    EXPECT_FALSE(outputs[0].impl()->storage) << "traced outputs must be symbolic";
  }
  std::vector<std::string> nodes;

 private:
  detail::TraceRecorder* saved_;
};

TEST(Dispatch, TracingInfersShapesWithoutComputing) {
  Tensor x = zeros({4, 3}), w = zeros({3, 5}), b = zeros({5});
  RecordingTracer tracer;
  Tensor y = relu(matmul(x, w) + b);
  EXPECT_EQ(y.shape(), (Shape{4, 5}));
  EXPECT_EQ(tracer.nodes,
            (std::vector<std::string>{"matmul -> [4, 5]", "add -> [4, 5]", "relu -> [4, 5]"}));
  expect_error<StateError>([&] { y.raw_data(); }, {"symbolic"});
  // Shape errors surface while tracing, as in eager mode.
  expect_error<ShapeError>([&] { matmul(x, x); }, {"matmul", "[4, 3]"});
}

TEST(Dispatch, GradientRulesTraceLikeAnyOp) {
  // A rule applied to symbolic tensors emits ops: graph-mode training reuses eager's rules.
  Tensor a = zeros({2, 3}), b = zeros({3, 4});
  Tensor out, g = ones({2, 4});
  out = matmul(a, b);
  RecordingTracer tracer;
  Tensor grad_in[2];
  Tensor ins[2] = {a, b};
  ops::kMatmul.grad(GradArgs{ins, {&out, 1}, {&g, 1}, Attrs{0, 0}, grad_in});
  EXPECT_EQ(grad_in[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(grad_in[1].shape(), (Shape{3, 4}));
  EXPECT_EQ(tracer.nodes, (std::vector<std::string>{"matmul -> [2, 3]", "matmul -> [3, 4]"}));
}

TEST(Dispatch, TapesRecordWhileTracing) {
  // Order in run_op: infer -> trace -> tape record, so a tape inside a trace has gradients
  // (symbolic ones, emitted by the gradient rules as traced ops).
  Tensor x = zeros({2, 3}), w = zeros({3});
  RecordingTracer tracer;
  GradientTape tape;
  tape.watch(w);
  Tensor y = sum(x * w);
  tracer.nodes.clear();
  Tensor g = tape.gradient(y, {w})[0];
  ASSERT_TRUE(g.defined());
  EXPECT_EQ(g.shape(), (Shape{3}));
  EXPECT_FALSE(g.impl()->storage) << "the gradient of a traced value is symbolic";
  EXPECT_FALSE(tracer.nodes.empty());
  EXPECT_EQ(tracer.nodes.back(), "sum_to_like -> [3]");
}

TEST(Dispatch, EveryOpWithoutAGradientRuleIsKnownToNeedNone) {
  // Comparisons and argmax give bool/int results; one_hot reads integers; stop_gradient is
  // declared not differentiable. A new op lands here only with a reason (else: give it a rule).
  const std::set<std::string> none = {"equal", "not_equal", "less", "less_equal", "greater",
                                      "greater_equal", "argmax", "one_hot", "stop_gradient",
                                      // int8 inference ops: their only float inputs are
                                      // quantization parameters (training uses fake-quant)
                                      "quantize", "dequantize", "quantized_matmul",
                                      "quantized_conv2d", "dynamic_quantized_matmul",
                                      // the range gradient of fake_quant (a sum of masked dy),
                                      // needed only to first order
                                      "fake_quant_range_grad",
                                      // the filter and bias gradient of fused_conv2d_pool,
                                      // emitted only into a train step's own backward
                                      "fused_conv2d_pool_grad"};
  // Stateful ops (assign, optimizer updates, next_key) and random creators (random_uniform,
  // random_normal: functions of an integer key) are declared not differentiable.
  for (const OpDef* op : ops::all_ops()) {
    if (op->grad) continue;
    const bool declared =
        (is_stateful(*op) || (op->flags & kRandom)) && (op->flags & kNotDifferentiable);
    EXPECT_TRUE(none.count(op->name) || declared) << op->name << " has no gradient rule";
  }
  EXPECT_TRUE(ops::kStopGradient.flags & kNotDifferentiable);
}

TEST(Dispatch, RegistryFindsEveryOpByName) {
  for (const OpDef* op : ops::all_ops()) EXPECT_EQ(ops::find_op(op->name), op) << op->name;
  EXPECT_EQ(ops::find_op("no_such_op"), nullptr);
}

TEST(Dispatch, WrongInputCountAndUndefinedInputsAreErrors) {
  expect_error<ValueError>([] { run_op(ops::kAdd, {ones({1})}); }, {"add", "1 inputs"});
  expect_error<ValueError>([] { add(ones({1}), Tensor()); }, {"add", "input 1", "undefined"});
}

}  // namespace
}  // namespace kiln
