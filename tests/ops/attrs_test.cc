// Attribute schemas: every registered op has one, the attrs its public function and its
// gradient rules build fit it (checked while running them), printing by name, every error of
// check_attrs, and the flags the graph passes read. Also turns attrs checking on for every test
// of this program (CheckAttrsEverywhere, at the end).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "graph/fusion.h"
#include "graph/graph.h"
#include "graph/tracer.h"
#include "kiln/autograd.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;
using V = std::vector<Tensor>;

Tensor r64(const Shape& s, uint64_t seed, double low = -1, double high = 1) {
  return random_tensor(s, float64, seed, low, high);
}

// Runs every op at least once through its public function or a gradient rule (first and
// second order), with real inputs.
void run_every_op() {
  const Tensor a = r64({2, 3}, 1), b = r64({3}, 2), pos = r64({2, 3}, 3, 0.5, 2);
  // Binary ops with broadcasting: gradients go through sum_to_like, second order through
  // broadcast_like.
  using Bin = Tensor (*)(const Tensor&, const Tensor&);
  using Un = Tensor (*)(const Tensor&);
  for (Bin f : {Bin(add), Bin(sub), Bin(mul), Bin(div), Bin(maximum), Bin(minimum)}) {
    check_gradients([&](const V& v) { return f(v[0], v[1]); }, {a, b});
  }
  check_gradients([](const V& v) { return pow(v[0], v[1]); }, {pos, r64({3}, 4, 0.5, 2)});
  for (Un f : {Un(neg), Un(exp), Un(sqrt), Un(abs), Un(square), Un(tanh), Un(sigmoid), Un(relu)}) {
    check_gradients([&](const V& v) { return f(v[0]); }, {pos});
  }
  check_gradients([](const V& v) { return log(v[0]); }, {pos});
  check_gradients([](const V& v) { return leaky_relu(v[0], 0.1); }, {pos});
  check_gradients([](const V& v) { return gelu(v[0], true) + gelu(v[0], false); }, {a});
  check_gradients([](const V& v) { return softmax(v[0], 1) + log_softmax(v[0], 0); }, {a});
  for (Bin f :
       {Bin(equal), Bin(not_equal), Bin(less), Bin(less_equal), Bin(greater), Bin(greater_equal)}) {
    f(a, a);
  }
  check_gradients([&](const V& v) { return where(greater(a, pos), v[0], v[1]); }, {a, b});
  // Linear, so a large step is exact; a small one would see float32's rounding.
  check_gradients([](const V& v) { return cast(cast(v[0], float32), float64); }, {a}, 1e-2, 1e-4);
  check_gradients([](const V& v) { return broadcast_to(v[0], {2, 3}); }, {b});
  check_gradients([](const V& v) { return sum_to(v[0], {1, 3}); }, {a});
  check_gradients([](const V& v) { return sum(v[0], {1}) + mean(v[0], {1}); }, {a});
  check_gradients([](const V& v) { return max(v[0], {0}, true); }, {a});
  argmax(a, 1);
  check_gradients([](const V& v) { return matmul(v[0], v[1], false, true); }, {a, r64({4, 3}, 5)});
  check_gradients([](const V& v) { return reshape(v[0], {3, 2}).clone(); }, {a});
  check_gradients([](const V& v) { return v[0].rows(1, 2); }, {a});
  stop_gradient(a);
  check_gradients([](const V& v) { return transpose(v[0], {1, 0}); }, {a});
  check_gradients([](const V& v) { return concat({v[0], v[0]}, 0); }, {a});
  check_gradients([](const V& v) { return slice(v[0], {0, 1}, {2, 3}); }, {a});
  const Tensor idx = from_vector<int32_t>({2, 0, 2});
  check_gradients([&](const V& v) { return gather(v[0], idx, 1); }, {a});
  one_hot(idx, 4);
  check_gradients([](const V& v) { return pad(v[0], {{1, 0}, {0, 2}}, 0.5); }, {a});
  Conv2DOptions co;
  co.padding = Padding::kSame;
  check_gradients([&](const V& v) { return conv2d(v[0], v[1], co); },
                  {r64({1, 4, 3, 2}, 6), r64({2, 2, 2, 2}, 7)});
  Pool2DOptions po;
  po.padding = Padding::kSame;
  check_gradients([&](const V& v) { return max_pool2d(v[0], po) + avg_pool2d(v[0], po); },
                  {r64({1, 3, 3, 2}, 8)});
  check_gradients([](const V& v) { return dropout(v[0], 0.5, 7, true); }, {a});
  const Tensor labels = from_vector<int64_t>({2, 0});
  check_gradients([&](const V& v) { return softmax_cross_entropy(v[0], labels); }, {a});
  // State and random ops: variables, a seed generator and every optimizer's update.
  SeedGenerator seeds(3);
  random_uniform({2, 3}, 0, 1, seeds.next());
  random_normal({4}, 0, 1, seeds.next(), float64);
  const Tensor key = seeds.next();  // one mask for every evaluation of the check
  check_gradients([&](const V& v) { return dropout(v[0], 0.5, key, true); }, {a});
  Tensor s = make_state(zeros({2}));
  assign(s, ones({2}));
  assign_add(s, ones({2}));
  Variable w("attrs_test/w", ones({3}));
  std::vector<std::unique_ptr<Optimizer>> optimizers;
  optimizers.push_back(std::make_unique<SGD>(0.1));
  optimizers.push_back(std::make_unique<SGD>(0.1, 0.9, true));
  optimizers.push_back(std::make_unique<Adam>(0.01));
  optimizers.push_back(std::make_unique<AdamW>(0.01));
  optimizers.push_back(std::make_unique<RMSprop>(0.01));
  optimizers.push_back(std::make_unique<RMSprop>(0.01, 0.9, 0.5));
  Variable w2("attrs_test/w2", ones({2}));
  for (auto& opt : optimizers) {
    opt->apply_gradients({w}, {ones({3})});                 // one variable: the one-variable op
    opt->apply_gradients({w, w2}, {ones({3}), ones({2})});  // several: the *_multi op
  }
  // Fused ops exist only in graphs (graph/fusion.h): fuse traced graphs and run them op by op.
  auto fused = [](const std::function<Tensor(const V&)>& f, const V& xs) {
    graph::Graph g = [&] {
      graph::Tracer t;
      V in;
      for (const Tensor& x : xs) in.push_back(t.add_input(x.shape(), x.dtype()));
      t.set_outputs({f(in)});
      return t.take();
    }();
    graph::fuse(g);
    check_gradients([&](const V& v) { return graph::execute(g, v)[0]; }, xs);
  };
  fused([](const V& v) { return leaky_relu(add(matmul(v[0], v[1]), v[2]), 0.1); },
        {a, r64({3, 4}, 9), r64({4}, 10)});
  fused([&](const V& v) { return gelu(add(conv2d(v[0], v[1], co), v[2]), true); },
        {r64({1, 4, 3, 2}, 6), r64({2, 2, 2, 2}, 7), r64({2}, 11)});
  fused([](const V& v) { return tanh(v[0] * 2.0 + v[1]); }, {a, b});
  // relu -> max_pool's backward: fused_max_pool2d_grad (linear in the pool's gradient w; the
  // input x gets none, as relu_grad's and max_pool2d_grad's rules give it none)
  const Tensor pool_x = r64({1, 3, 3, 2}, 8);
  fused(
      [&](const V& v) {
        GradientTape tape;
        tape.watch(pool_x);
        Tensor y = max_pool2d(relu(pool_x), po);
        return tape.gradient(sum(y * v[0]), {pool_x})[0];
      },
      {r64({1, 2, 2, 2}, 12)});
  // conv -> bias -> relu -> max_pool as one op and its filter gradient (ops/conv_pool.cc)
  {
    const Attrs cp{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0};
    const Tensor in[3] = {r64({1, 4, 4, 1}, 13), r64({3, 3, 1, 2}, 14), r64({2}, 15)};
    Tensor y[2], d[2];
    run_op(ops::kFusedConv2DPool, in, cp, y);
    const Tensor g_in[4] = {in[0], y[1], y[0], r64({1, 2, 2, 2}, 16)};
    run_op(ops::kFusedConv2DPoolGrad, g_in, Attrs(cp).add_int(3).add_int(3), d);
  }
  // int8 (ops/quantized.cc)
  const Tensor scale = scalar(0.1), zp = scalar(3, DType::kUInt8);
  const Tensor q = quantize(cast(a, float32), scale, zp);
  dequantize(q, scale, zp);
  QuantizedLinear lin{scale, zp, zeros({3, 2}, DType::kInt8), ones({2}), zeros({2})};
  lin.relu = true;
  quantized_matmul(q, lin);
  lin.weights = zeros({1, 1, 3, 2}, DType::kInt8);
  lin.y_scale = scale;
  lin.y_zero_point = zp;
  quantized_conv2d(reshape(q, {1, 2, 1, 3}), lin, co);
  // dynamic int8 (ops/quantized_dynamic.cc), fake quantization and its two gradient ops
  // (ops/fake_quant.cc)
  dynamic_quantized_matmul(cast(a, float32), zeros({3, 2}, DType::kInt8), ones({2}), zeros({2}),
                           true);
  {
    const Tensor lo = scalar(-0.5, float64), hi = scalar(0.5, float64);
    GradientTape tape;
    tape.watch(a);
    tape.watch(lo);
    tape.watch(hi);
    tape.gradient(sum(fake_quant(a, lo, hi, -127, 127)), {a, lo, hi});
  }
}

TEST(AttrSchema, EveryRegisteredOpHasOne) {
  for (const OpDef* op : ops::all_ops()) {
    EXPECT_NE(op->attrs, nullptr) << op->name << " has no attribute schema";
  }
}

TEST(AttrSchema, EveryRegisteredSchemaIsWellFormed) {
  // One list field at most, the last integer one; enums name their choices; floats are single.
  for (const OpDef* op : ops::all_ops()) {
    if (!op->attrs) continue;  // reported by EveryRegisteredOpHasOne
    bool after_rest = false;
    for (const AttrField& f : op->attrs->fields) {
      SCOPED_TRACE(std::string(op->name) + "." + f.name);
      if (f.type == AttrType::kFloat) {
        EXPECT_EQ(f.count, 1);
        continue;
      }
      EXPECT_FALSE(after_rest) << "an integer field after the list field";
      after_rest = after_rest || f.count == kRest;
      EXPECT_TRUE(f.count == kRest || f.count >= 1);
      EXPECT_GE(f.group, 1);
      if (f.group > 1) EXPECT_EQ(f.count, kRest);
      EXPECT_EQ(f.type == AttrType::kEnum, f.choices != nullptr);
    }
  }
}

TEST(AttrSchema, WhatPublicFunctionsAndGradientRulesBuildFitsEverySchema) {
  std::vector<const OpDef*> seen;
  {
    CheckAttrsScope scope(&seen);  // run_op throws on attrs that do not fit
    run_every_op();
  }
  const std::set<const OpDef*> ran(seen.begin(), seen.end());
  for (const OpDef* op : ops::all_ops()) {
    EXPECT_TRUE(ran.count(op)) << op->name << " did not run: add it to run_every_op()";
  }
  // Turned off (an op's own checks of malformed attrs), a bad layout reaches the op's infer.
  seen.clear();
  {
    CheckAttrsScope off(&seen, /*enabled=*/false);
    expect_error<ValueError>([] { run_op(ops::kSlice, {zeros({2})}, Attrs{0, 1}); }, {"triples"});
  }
  EXPECT_TRUE(seen.empty());
  {
    CheckAttrsScope on;
    expect_error<ValueError>(
        [] {
          run_op(ops::kSlice, {zeros({2})}, Attrs{0, 1});
        },
        {"slice: attrs {0, 1} do not fit its schema"});
  }
}

TEST(AttrSchema, FormatsByName) {
  const Attrs conv{2, 1, 1, 1, 1, 1};
  EXPECT_EQ(format_attrs(ops::kConv2D, conv),
            "strides=[2, 1], padding=same, dilation=[1, 1], groups=1");
  EXPECT_EQ(format_attrs(ops::kConv2DBackwardFilter, Attrs{1, 1, 0, 1, 1, 1, 3, 3, 2, 4}),
            "strides=[1, 1], padding=valid, dilation=[1, 1], groups=1, filter_shape=[3, 3, 2, 4]");
  EXPECT_EQ(format_attrs(ops::kMatmul, Attrs{0, 1}), "transpose_a=false, transpose_b=true");
  EXPECT_EQ(format_attrs(ops::kSum, Attrs{1, 0, -1}), "keepdims=true, axes=[0, -1]");
  EXPECT_EQ(format_attrs(ops::kSum, Attrs{0}), "keepdims=false, axes=[]");
  EXPECT_EQ(format_attrs(ops::kCast, Attrs{static_cast<int64_t>(DType::kInt64)}), "dtype=int64");
  EXPECT_EQ(format_attrs(ops::kOneHot, Attrs{10, 0}), "depth=10, dtype=float32");
  EXPECT_EQ(format_attrs(ops::kBroadcastTo, Attrs{2, 3, 4}), "shape=[2, 3, 4]");
  EXPECT_EQ(format_attrs(ops::kPad, Attrs{1, 0, 0, 2}.add_float(0.1)),
            "pads=[1, 0, 0, 2], value=0.1");
  EXPECT_EQ(format_attrs(ops::kLeakyRelu, Attrs().add_float(0.2)), "alpha=0.2");
  EXPECT_EQ(format_attrs(ops::kDropout, Attrs().add_float(0.25)), "rate=0.25");
  EXPECT_EQ(format_attrs(ops::kRandomNormal, Attrs{0, 2, 3, 4}.add_float(0).add_float(0.5)),
            "dtype=float32, rank=2, shape=[3, 4], mean=0, stddev=0.5");
  EXPECT_EQ(format_attrs(ops::kSgdUpdate, Attrs{1}.add_float(0.9)), "nesterov=true, momentum=0.9");
  EXPECT_EQ(format_attrs(ops::kAdd, Attrs{}), "");
  EXPECT_EQ(format_attrs(ops::kMaxPool2D, Attrs{2, 2, 2, 2, 0}),
            "pool_size=[2, 2], strides=[2, 2], padding=valid");
  // Attrs that do not fit (or no schema) print by position instead of throwing.
  EXPECT_EQ(format_attrs(ops::kMatmul, Attrs{0, 1, 2}), "0, 1, 2");
  EXPECT_EQ(format_attrs(ops::kMatmul, Attrs{0, 2}), "0, 2");
  const OpDef undescribed{.name = "undescribed",
                          .num_inputs = 1,
                          .num_outputs = 1,
                          .infer = nullptr,
                          .reference = nullptr};
  EXPECT_EQ(format_attrs(undescribed, Attrs{3}.add_float(1.5)), "3, 1.5");
}

TEST(AttrSchema, CheckAttrsNamesWhatDoesNotFit) {
  EXPECT_NO_THROW(check_attrs(ops::kConv2D, Attrs{1, 1, 1, 1, 1, 1}));
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kConv2D, Attrs{1, 1, 1});
      },
      {"conv2d: attrs {1, 1, 1} do not fit its schema", "strides: 2 ints, padding: valid|same",
       "3 integers given, 6 expected"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kConv2D, Attrs{1, 1, 2, 1, 1, 1});
      },
      {"conv2d", "padding is 2, expected one of valid|same"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kMatmul, Attrs{0, 3});
      },
      {"matmul", "transpose_b is 3, expected 0 or 1"});
  expect_error<ValueError>([] { check_attrs(ops::kCast, Attrs{99}); },
                           {"cast", "dtype is 99, not a dtype code"});
  expect_error<ValueError>([] { check_attrs(ops::kCast, Attrs{-1}); }, {"cast", "dtype is -1"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kSumTo, Attrs{2, -3});
      },
      {"sum_to", "shape holds the negative dim -3"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kConv2DBackwardFilter, Attrs{1, 1, 0, 1, 1, 1, 3, -3, 2, 4});
      },
      {"conv2d_backward_filter", "filter_shape holds the negative dim -3"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kSlice, Attrs{0, 1, 1, 0});
      },
      {"slice", "slices: int list of 3s",
       "4 integers given, expected 0 plus slices (a multiple of 3)"});
  expect_error<ValueError>(
      [] {
        check_attrs(ops::kPad, Attrs{1, 0});
      },
      {"pad", "0 floats given, 1 expected"});
  expect_error<ValueError>([] { check_attrs(ops::kSum, Attrs{}); },
                           {"sum", "0 integers given, expected 1 plus axes"});
  expect_error<ValueError>([] { check_attrs(ops::kAdd, Attrs{1}); },
                           {"add: attrs {1}", "(no attributes)", "1 integers given, 0 expected"});
  const OpDef undescribed{.name = "undescribed",
                          .num_inputs = 1,
                          .num_outputs = 1,
                          .infer = nullptr,
                          .reference = nullptr};
  expect_error<StateError>([&] { check_attrs(undescribed, Attrs{}); },
                           {"undescribed", "no attribute schema"});
  // Under a CheckAttrsScope, run_op rejects them before the op runs (or traces).
  CheckAttrsScope scope;
  expect_error<ValueError>(
      [] {
        run_op(ops::kMatmul, {ones({1, 1}), ones({1, 1})}, Attrs{0, 5});
      },
      {"matmul", "transpose_b is 5"});
  EXPECT_NO_THROW(matmul(ones({1, 1}), ones({1, 1}), false, true));
}

TEST(AttrSchema, FlagsThePassesRead) {
  for (const OpDef* op : {&ops::kDropout, &ops::kRandomUniform, &ops::kRandomNormal}) {
    EXPECT_TRUE(is_random(*op)) << op->name;
    EXPECT_FALSE(is_stateful(*op)) << op->name;
  }
  EXPECT_TRUE(is_stateful(ops::kAssign));
  for (const OpDef* op : {&ops::kReshape, &ops::kReshapeLike, &ops::kRows}) {
    EXPECT_TRUE(is_view(*op)) << op->name;
  }
  for (const OpDef* op : ops::all_ops()) {
    EXPECT_EQ(is_view(*op), op->view != nullptr) << op->name;
  }
  const OpDef assign{.name = "assign",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = nullptr,
                     .reference = nullptr,
                     .flags = kStateful};
  EXPECT_TRUE(is_stateful(assign));
  EXPECT_FALSE(is_random(assign));
  EXPECT_FALSE(is_view(assign));
}

TEST(AttrSchema, GraphTextNamesAttrs) {
  graph::Graph g;
  const Tensor f = ones({3, 3, 2, 4});
  {
    graph::Tracer tracer;
    Tensor x = tracer.add_input({1, 5, 5, 2}, float32);
    Conv2DOptions co;
    co.padding = Padding::kSame;
    Tensor y = sum(conv2d(x, f, co), {1, 2});
    tracer.set_outputs({y});
    g = tracer.take();
  }
  const std::string text = g.to_text();
  EXPECT_NE(text.find("= conv2d(%0, %1) {strides=[1, 1], padding=same, dilation=[1, 1], "
                      "groups=1} : [1, 5, 5, 4] float32"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("= sum(%2) {keepdims=false, axes=[1, 2]} : [1, 4] float32"),
            std::string::npos)
      << text;
}

// Every test in this program runs with attrs checked: each op test's real inputs and attrs,
// and every gradient op its rules emit, must fit the op's schema.
class CheckAttrsEverywhere : public ::testing::Environment {
 public:
  void SetUp() override { scope_ = std::make_unique<CheckAttrsScope>(); }
  void TearDown() override { scope_.reset(); }

 private:
  std::unique_ptr<CheckAttrsScope> scope_;
};
[[maybe_unused]] ::testing::Environment* const kCheckAttrsEverywhere =
    ::testing::AddGlobalTestEnvironment(new CheckAttrsEverywhere);

}  // namespace
}  // namespace kiln
