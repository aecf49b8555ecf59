// Fusion passes: each checked on the graph text and on results (1e-5 against the graph as
// traced), on awkward shapes, and on gradients through the fused ops.
#include "graph/fusion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "graph/passes.h"
#include "graph/tracer.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln::graph {
namespace {

using testing::all_close;
using testing::random_tensor;

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

Graph trace(const Fn& f, const std::vector<Shape>& shapes) {
  Tracer t;
  std::vector<Tensor> xs;
  for (const Shape& s : shapes) xs.push_back(t.add_input(s, float32));
  t.set_outputs(f(xs));
  return t.take();
}

int count_op(const Graph& g, const char* name) {
  int n = 0;
  for (const Node& node : g.nodes) n += std::string(node.op->name) == name;
  return n;
}

void expect_same_results(const Graph& before, const Graph& after, const std::vector<Tensor>& xs) {
  std::vector<Tensor> a = execute(before, xs), b = execute(after, xs);
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(all_close(b[k], a[k], 1e-5, 1e-6)) << "output " << k << "\n" << after.to_text();
  }
  // The fused ops' reference kernels agree with their fast ones too.
  ForceReferenceScope ref;
  std::vector<Tensor> c = execute(after, xs);
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(all_close(c[k], a[k], 1e-5, 1e-6)) << k;
}

// Gradients of sum(outputs[0] * weights) w.r.t. every input, through a graph run on a tape.
std::vector<Tensor> grads(const Graph& g, const std::vector<Tensor>& xs) {
  GradientTape tape;
  for (const Tensor& x : xs) tape.watch(x);
  std::vector<Tensor> y = execute(g, xs);
  Tensor w = random_tensor(y[0].shape(), float32, 7);
  return tape.gradient(sum(y[0] * w), xs);
}

void expect_same_gradients(const Graph& before, const Graph& after, const std::vector<Tensor>& xs) {
  std::vector<Tensor> a = grads(before, xs), b = grads(after, xs);
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_TRUE(a[k].defined());
    EXPECT_TRUE(all_close(b[k], a[k], 1e-5, 1e-5)) << "input " << k;
  }
}

using Act = std::function<Tensor(const Tensor&)>;
struct NamedAct {
  const char* name;
  Act f;
};
const std::vector<NamedAct>& activations() {
  static const std::vector<NamedAct> kActs = {
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"tanh", [](const Tensor& x) { return kiln::tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x, false); }},
      {"gelu", [](const Tensor& x) { return gelu(x, true); }},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); }},
  };
  return kActs;
}

TEST(Fusion, DenseBiasActivationIsOneFusedMatmul) {
  for (const NamedAct& act : activations()) {
    // Dense's pattern: add(matmul(x, w), b) with b a [N] vector, then the activation.
    Graph g = trace(
        [&](const std::vector<Tensor>& a) {
          return std::vector<Tensor>{act.f(add(matmul(a[0], a[1]), a[2]))};
        },
        {{3, 7}, {7, 5}, {5}});
    const Graph before = g;
    EXPECT_EQ(fuse(g), 2) << act.name;
    EXPECT_EQ(g.nodes.size(), 1u);
    EXPECT_EQ(std::string(g.nodes[0].op->name), "fused_matmul");
    EXPECT_EQ(count_op(g, act.name), 0);
    EXPECT_NE(g.to_text().find(std::string("bias=true, activation=") + act.name), std::string::npos)
        << g.to_text();
    std::vector<Tensor> xs = {random_tensor({3, 7}, float32, 1), random_tensor({7, 5}, float32, 2),
                              random_tensor({5}, float32, 3)};
    expect_same_results(before, g, xs);
    expect_same_gradients(before, g, xs);
    reset_kernel_stats();
    execute(g, xs);
    EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast) << act.name;  // one oneDNN matmul
  }
}

TEST(Fusion, BatchOneRowsTakeTheSinglePassKernel) {
  // [1, K] rows: one pass over the weights; K not a multiple of 4, N past one 512-column block.
  for (const NamedAct& act : activations()) {
    Graph g = trace(
        [&](const std::vector<Tensor>& a) {
          return std::vector<Tensor>{act.f(add(matmul(a[0], a[1]), a[2]))};
        },
        {{1, 7}, {7, 1030}, {1030}});
    const Graph before = g;
    fuse(g);
    std::vector<Tensor> xs = {random_tensor({1, 7}, float32, 1),
                              random_tensor({7, 1030}, float32, 2),
                              random_tensor({1030}, float32, 3)};
    expect_same_results(before, g, xs);
    reset_kernel_stats();
    execute(g, xs);
    EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast) << act.name;
  }
}

TEST(Fusion, MatmulGraphText) {
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{relu(add(a[2], matmul(a[0], a[1], false, true)))};  // bias first
      },
      {{2, 3}, {4, 3}, {4}});
  const Graph before = g;
  fuse(g);
  EXPECT_EQ(g.to_text(),
            "%0 = input 0 : [2, 3] float32\n%1 = input 1 : [4, 3] float32\n"
            "%2 = input 2 : [4] float32\n"
            "%3 = fused_matmul(%0, %1, %2) {transpose_a=false, transpose_b=true, bias=true, "
            "activation=relu, approximate=false, alpha=0} : [2, 4] float32\nreturn %3\n");
  std::vector<Tensor> xs = {random_tensor({2, 3}, float32, 1), random_tensor({4, 3}, float32, 2),
                            random_tensor({4}, float32, 3)};
  expect_same_results(before, g, xs);  // b read transposed through oneDNN strides
  expect_same_gradients(before, g, xs);
}

TEST(Fusion, MatmulWithOnlyABiasOrOnlyAnActivation) {
  std::vector<Tensor> xs = {random_tensor({1, 9}), random_tensor({9, 13}), random_tensor({13})};
  Graph bias_only = trace(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{add(matmul(a[0], a[1]), a[2])};
      },
      {{1, 9}, {9, 13}, {13}});
  Graph before = bias_only;
  EXPECT_EQ(fuse(bias_only), 1);
  EXPECT_EQ(count_op(bias_only, "fused_matmul"), 1);
  expect_same_results(before, bias_only, xs);
  Graph act_only = trace(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{kiln::tanh(matmul(a[0], a[1], true, false))};
      },
      {{9, 1}, {9, 13}});
  before = act_only;
  EXPECT_EQ(fuse(act_only), 1);
  xs = {random_tensor({9, 1}), random_tensor({9, 13})};
  expect_same_results(before, act_only, xs);
  expect_same_gradients(before, act_only, xs);
}

TEST(Fusion, IntermediatesWithOtherReadersAreNotFused) {
  // matmul's result is read twice, and the biased sum is returned: nothing can fuse with them.
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        Tensor y = matmul(a[0], a[1]);
        Tensor z = add(y, a[2]);
        return std::vector<Tensor>{relu(z), z, y};
      },
      {{2, 3}, {3, 4}, {4}});
  EXPECT_EQ(fuse_matmul_conv(g), 0);
  EXPECT_EQ(count_op(g, "matmul"), 1);
  // A bias that is not a [N] vector over the last dim is a plain add.
  Graph h = trace(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{add(matmul(a[0], a[1]), a[2])};
      },
      {{4, 3}, {3, 4}, {4, 1}});
  EXPECT_EQ(fuse_matmul_conv(h), 0);
  // Batched (rank-3) matmuls are left alone.
  Graph b = trace(
      [](const std::vector<Tensor>& a) { return std::vector<Tensor>{relu(matmul(a[0], a[1]))}; },
      {{2, 4, 3}, {2, 3, 4}});
  EXPECT_EQ(fuse_matmul_conv(b), 0);
}

TEST(Fusion, ConvBiasActivationIsOneFusedConv) {
  struct Case {
    Shape x, f;
    Conv2DOptions o;
  };
  Conv2DOptions same2;
  same2.padding = Padding::kSame;
  same2.strides = {2, 2};
  Conv2DOptions valid;
  Conv2DOptions grouped;
  grouped.groups = 2;
  grouped.padding = Padding::kSame;
  const std::vector<Case> cases = {{{2, 9, 7, 3}, {3, 3, 3, 5}, same2},
                                   {{1, 6, 5, 2}, {2, 3, 2, 3}, valid},
                                   {{1, 5, 5, 4}, {3, 3, 2, 6}, grouped}};
  for (const Case& c : cases) {
    for (const NamedAct& act : activations()) {
      const int64_t o = c.f[3];
      Graph g = trace(
          [&](const std::vector<Tensor>& a) {
            return std::vector<Tensor>{act.f(add(conv2d(a[0], a[1], c.o), a[2]))};
          },
          {c.x, c.f, {o}});
      const Graph before = g;
      EXPECT_EQ(fuse(g), 2);
      ASSERT_EQ(g.nodes.size(), 1u);
      EXPECT_EQ(std::string(g.nodes[0].op->name), "fused_conv2d");
      std::vector<Tensor> xs = {random_tensor(c.x, float32, 4), random_tensor(c.f, float32, 5),
                                random_tensor({o}, float32, 6)};
      expect_same_results(before, g, xs);
      if (std::string(act.name) == "relu") expect_same_gradients(before, g, xs);
      reset_kernel_stats();
      execute(g, xs);
      EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast) << act.name;
    }
  }
}

TEST(Fusion, ConvGraphText) {
  Conv2DOptions o;
  o.padding = Padding::kSame;
  Graph g = trace(
      [&](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{relu(add(conv2d(a[0], a[1], o), a[2]))};
      },
      {{1, 5, 5, 2}, {3, 3, 2, 4}, {4}});
  EXPECT_EQ(
      g.to_text(),
      "%0 = input 0 : [1, 5, 5, 2] float32\n%1 = input 1 : [3, 3, 2, 4] float32\n"
      "%2 = input 2 : [4] float32\n%3 = conv2d(%0, %1) {strides=[1, 1], padding=same, "
      "dilation=[1, 1], groups=1} : [1, 5, 5, 4] float32\n%4 = add(%3, %2) : [1, 5, 5, 4] float32\n"
      "%5 = relu(%4) : [1, 5, 5, 4] float32\nreturn %5\n");
  fuse(g);
  EXPECT_EQ(g.to_text(),
            "%0 = input 0 : [1, 5, 5, 2] float32\n%1 = input 1 : [3, 3, 2, 4] float32\n"
            "%2 = input 2 : [4] float32\n%3 = fused_conv2d(%0, %1, %2) {strides=[1, 1], "
            "padding=same, dilation=[1, 1], groups=1, bias=true, activation=relu, "
            "approximate=false, alpha=0} : [1, 5, 5, 4] float32\nreturn %3\n");
}

// The backward of conv -> relu -> max_pool: relu_grad(max_pool2d_grad(y, dp), y) becomes one
// fused_max_pool2d_grad; results and gradients as the traced graph's.
TEST(Fusion, ReluGradAfterMaxPoolGradIsOneFusedPoolGrad) {
  Conv2DOptions o;
  o.padding = Padding::kSame;
  struct Case {
    Shape x;
    Pool2DOptions p;
  };
  Pool2DOptions overlap;
  overlap.pool_size = {3, 3};
  overlap.strides = {2, 2};
  overlap.padding = Padding::kSame;
  for (const Case& c : {Case{{2, 8, 6, 3}, Pool2DOptions{}}, Case{{1, 7, 9, 2}, overlap}}) {
    SCOPED_TRACE(to_string(c.x));
    const Shape f{3, 3, c.x[3], 5};
    // d(sum(pool(relu(conv(x, f) + b)) * w)) / dx, df, db, traced as one graph.
    Graph g = trace(
        [&](const std::vector<Tensor>& a) {
          GradientTape tape;
          tape.watch(a[0]);
          tape.watch(a[1]);
          tape.watch(a[2]);
          Tensor y = max_pool2d(relu(add(conv2d(a[0], a[1], o), a[2])), c.p);
          Tensor l = sum(y * a[3]);
          std::vector<Tensor> d = tape.gradient(l, {a[0], a[1], a[2]});
          return std::vector<Tensor>{d[0], d[1], d[2]};
        },
        {c.x, f, {5}, max_pool2d(zeros(conv2d(zeros(c.x), zeros(f), o).shape()), c.p).shape()});
    const Graph before = g;
    ASSERT_EQ(count_op(g, "relu_grad"), 1) << g.to_text();
    fuse(g);
    EXPECT_EQ(count_op(g, "fused_max_pool2d_grad"), 1) << g.to_text();
    EXPECT_EQ(count_op(g, "relu_grad"), 0) << g.to_text();
    EXPECT_EQ(count_op(g, "max_pool2d_grad"), 0) << g.to_text();
    std::vector<Tensor> xs = {random_tensor(c.x, float32, 4), random_tensor(f, float32, 5),
                              random_tensor({5}, float32, 6),
                              random_tensor(g.values[g.inputs[3]].meta.shape, float32, 7)};
    expect_same_results(before, g, xs);
  }
}

// conv -> bias -> relu -> max_pool over a 1-3 channel input (the first conv of an image
// model): one fused_conv2d_pool forward and, when only the filter and bias want gradients, one
// fused_conv2d_pool_grad for the pool gradient, bias sum and filter gradient; results and
// returned gradients as the traced graph's.
TEST(Fusion, SmallConvReluPoolAndItsBackwardAreTwoFusedOps) {
  Conv2DOptions o;
  o.padding = Padding::kSame;
  Pool2DOptions overlap;
  overlap.pool_size = {3, 3};
  overlap.strides = {2, 2};
  overlap.padding = Padding::kSame;
  struct Case {
    Shape x;
    Pool2DOptions p;
  };
  for (const Case& c : {Case{{2, 8, 6, 1}, Pool2DOptions{}}, Case{{1, 7, 9, 3}, overlap}}) {
    SCOPED_TRACE(to_string(c.x));
    const Shape f{3, 3, c.x[3], 20};
    const Shape ps = max_pool2d(zeros(conv2d(zeros(c.x), zeros(f), o).shape()), c.p).shape();
    Graph g = trace(
        [&](const std::vector<Tensor>& a) {
          GradientTape tape;
          tape.watch(a[1]);
          tape.watch(a[2]);
          Tensor y = max_pool2d(relu(add(conv2d(a[0], a[1], o), a[2])), c.p);
          std::vector<Tensor> d = tape.gradient(sum(y * a[3]), {a[1], a[2]});
          return std::vector<Tensor>{y, d[0], d[1]};
        },
        {c.x, f, {20}, ps});
    const Graph before = g;
    fuse(g);
    EXPECT_EQ(count_op(g, "fused_conv2d_pool"), 1) << g.to_text();
    EXPECT_EQ(count_op(g, "fused_conv2d_pool_grad"), 1) << g.to_text();
    for (const char* gone : {"max_pool2d", "fused_max_pool2d_grad", "conv2d_backward_filter",
                             "sum_to_like", "fused_conv2d"}) {
      EXPECT_EQ(count_op(g, gone), 0) << gone << "\n" << g.to_text();
    }
    std::vector<Tensor> xs = {random_tensor(c.x, float32, 4), random_tensor(f, float32, 5),
                              random_tensor({20}, float32, 6), random_tensor(ps, float32, 7)};
    expect_same_results(before, g, xs);
  }
}

TEST(Fusion, ConvPoolStaysUnfusedWhereItWouldNeedTheConvOutput) {
  Conv2DOptions o;
  o.padding = Padding::kSame;
  auto train = [&](const Shape& x, const Shape& f, bool input_grad) {
    return trace(
        [&](const std::vector<Tensor>& a) {
          GradientTape tape;
          for (int k = input_grad ? 0 : 1; k < 3; ++k) tape.watch(a[k]);
          Tensor y = max_pool2d(relu(add(conv2d(a[0], a[1], o), a[2])), Pool2DOptions{});
          std::vector<Tensor> d = tape.gradient(sum(y), {a[1], a[2]});
          return std::vector<Tensor>{d[0], d[1]};
        },
        {x, f, {f[3]}});
  };
  // The input's gradient reads the conv output's gradient: only the forward part could go,
  // and its backward needs the conv output, so nothing fuses into conv_pool.
  Graph input_grad = train({1, 6, 6, 1}, {3, 3, 1, 4}, true);
  fuse(input_grad);
  EXPECT_EQ(count_op(input_grad, "fused_conv2d_pool"), 0) << input_grad.to_text();
  // 16 input channels (144 taps): oneDNN's conv, not the direct kernel.
  Graph wide = train({1, 6, 6, 16}, {3, 3, 16, 4}, false);
  fuse(wide);
  EXPECT_EQ(count_op(wide, "fused_conv2d_pool"), 0) << wide.to_text();
  // The relu output is also returned: the pool cannot take it.
  Graph shared = trace(
      [&](const std::vector<Tensor>& a) {
        Tensor r = relu(add(conv2d(a[0], a[1], o), a[2]));
        return std::vector<Tensor>{max_pool2d(r, Pool2DOptions{}), r};
      },
      {{1, 6, 6, 1}, {3, 3, 1, 4}, {4}});
  fuse(shared);
  EXPECT_EQ(count_op(shared, "fused_conv2d_pool"), 0) << shared.to_text();
  // Inference: the forward alone fuses (its slots unused).
  Graph infer = trace(
      [&](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{
            max_pool2d(relu(add(conv2d(a[0], a[1], o), a[2])), Pool2DOptions{})};
      },
      {{2, 6, 6, 1}, {3, 3, 1, 4}, {4}});
  const Graph before = infer;
  fuse(infer);
  EXPECT_EQ(count_op(infer, "fused_conv2d_pool"), 1) << infer.to_text();
  expect_same_results(before, infer,
                      {random_tensor({2, 6, 6, 1}, float32, 1),
                       random_tensor({3, 3, 1, 4}, float32, 2), random_tensor({4}, float32, 3)});
}

TEST(Fusion, PoolGradWithAnotherReaderOrEpilogueStaysUnfused) {
  Pool2DOptions p;
  const Attrs pa{2, 2, 2, 2, 0};
  // The pool gradient is also returned: relu_grad stays a separate op.
  Graph shared = trace(
      [&](const std::vector<Tensor>& a) {
        Tensor t = run_op(ops::kMaxPool2DGrad, {a[0], a[1]}, pa);
        return std::vector<Tensor>{run_op(ops::kReluGrad, {t, a[0]}), t};
      },
      {{1, 4, 4, 2}, {1, 2, 2, 2}});
  fuse(shared);
  EXPECT_EQ(count_op(shared, "fused_max_pool2d_grad"), 0) << shared.to_text();
  // relu_grad over another tensor than the pool's input: not the fused op's math.
  Graph other = trace(
      [&](const std::vector<Tensor>& a) {
        Tensor t = run_op(ops::kMaxPool2DGrad, {a[0], a[1]}, pa);
        return std::vector<Tensor>{run_op(ops::kReluGrad, {t, a[2]})};
      },
      {{1, 4, 4, 2}, {1, 2, 2, 2}, {1, 4, 4, 2}});
  fuse(other);
  EXPECT_EQ(count_op(other, "fused_max_pool2d_grad"), 0) << other.to_text();
  // mul is elementwise but not marked linear in its first input: left alone.
  Graph mul_after = trace(
      [&](const std::vector<Tensor>& a) {
        Tensor t = run_op(ops::kMaxPool2DGrad, {a[0], a[1]}, pa);
        return std::vector<Tensor>{mul(t, a[0])};
      },
      {{1, 4, 4, 2}, {1, 2, 2, 2}});
  fuse(mul_after);
  EXPECT_EQ(count_op(mul_after, "fused_max_pool2d_grad"), 0) << mul_after.to_text();
}

TEST(Fusion, ElementwiseChainIsOneLoop) {
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{relu(a[0] * 2.0 + a[1])};  // mul -> add -> relu
      },
      {{3, 5, 7}, {3, 5, 7}});
  const Graph before = g;
  EXPECT_EQ(fuse(g), 2);
  EXPECT_EQ(g.to_text(),
            "%0 = input 0 : [3, 5, 7] float32\n%1 = input 1 : [3, 5, 7] float32\n"
            "%2 = constant : [] float32\n"
            "%3 = fused_elementwise(%0, %2, %1) {instructions=3, program=[" +
                // mul r0 r1 -> r3, add r3 r2 -> r4, relu r4 -> r5: ops by their registry index
                std::to_string(fe_instr(fe_opcode(ops::kMul), 0, 1)) + ", " +
                std::to_string(fe_instr(fe_opcode(ops::kAdd), 3, 2)) + ", " +
                std::to_string(fe_instr(fe_opcode(ops::kRelu), 4, 0)) +
                "]} : [3, 5, 7] float32\n"
                "return %3\n");
  EXPECT_EQ(fe_opcode(ops::kMul) + (1 << 24), fe_instr(fe_opcode(ops::kMul), 0, 1));
  std::vector<Tensor> xs = {random_tensor({3, 5, 7}, float32, 1),
                            random_tensor({3, 5, 7}, float32, 2)};
  expect_same_results(before, g, xs);
  expect_same_gradients(before, g, xs);
  reset_kernel_stats();
  execute(g, xs);
  EXPECT_EQ(kernel_stats().first_path, KernelPath::kFast);
}

TEST(Fusion, EveryElementwiseOpcodeAgreesWithTheUnfusedOps) {
  // 1000 elements: several 64-element blocks and a ragged tail.
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        Tensor p = sqrt(abs(a[0])) + exp(a[1] * 0.5);
        Tensor q = log(square(a[0]) + 1.0) - neg(sigmoid(a[1]));
        Tensor r = minimum(maximum(p, q), a[0] * 4.0) / (a[1] * a[1] + 3.0);
        return std::vector<Tensor>{kiln::tanh(r) * relu(a[1])};
      },
      {{1000}, {1000}});
  const Graph before = g;
  EXPECT_EQ(fuse(g), 19);
  EXPECT_EQ(g.nodes.size(), 1u) << g.to_text();
  std::vector<Tensor> xs = {random_tensor({1000}, float32, 1, -3, 3),
                            random_tensor({1000}, float32, 2, -3, 3)};
  expect_same_results(before, g, xs);
  expect_same_gradients(before, g, xs);
}

// Gradients of sum(y * w) in x's dtype, through a graph run on a tape.
std::vector<Tensor> typed_grads(const Graph& g, const std::vector<Tensor>& xs) {
  GradientTape tape;
  for (const Tensor& x : xs) tape.watch(x);
  std::vector<Tensor> y = execute(g, xs);
  return tape.gradient(sum(y[0] * random_tensor(y[0].shape(), y[0].dtype(), 7)), xs);
}

// An op is fusable by its OpDef alone: every registered op carrying an elementwise function
// fuses with an add before it, and the fused op (fast and reference kernels, gradients) agrees
// with the unfused ops in float32 and float64, on shapes whose rows wrap inside the fused
// kernel's blocks and with ragged tails.
TEST(Fusion, EveryElementwiseOpInTheRegistryFuses) {
  std::vector<std::string> fusable;
  for (const OpDef* op : ops::all_ops()) {
    if (!op->elementwise) continue;
    SCOPED_TRACE(op->name);
    fusable.push_back(op->name);
    const int arity = op->elementwise->arity;
    ASSERT_EQ(arity, op->num_inputs);
    EXPECT_EQ(op->num_outputs, 1);
    EXPECT_EQ(op->attrs, &kNoAttrs);  // a fused program has no room for attrs
    ASSERT_GE(fe_opcode(*op), 0);
    EXPECT_EQ(fe_op(fe_opcode(*op)), op);
    for (DType dtype : {float32, float64}) {
      for (const Shape& shape : {Shape{1000}, Shape{3, 5, 7}, Shape{2, 67}}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + to_string(shape));
        const Shape row{shape[shape.rank() - 1]};
        Graph g = [&] {
          Tracer t;  // symbolic while alive
          Tensor x = t.add_input(shape, dtype), c = t.add_input(row, dtype);
          Tensor y = t.add_input(shape, dtype);
          Tensor z = x + c;
          t.set_outputs({arity == 2 ? run_op(*op, {z, y}) : run_op(*op, {z})});
          return t.take();
        }();
        const Graph before = g;
        EXPECT_EQ(fuse(g), 1);
        ASSERT_EQ(g.nodes.size(), 1u) << g.to_text();
        EXPECT_EQ(g.nodes[0].op, &ops::kFusedElementwise);
        // Positive operands: log, sqrt and pow are defined, div does not divide by zero.
        const std::vector<Tensor> in = {random_tensor(shape, dtype, 1, 0.5, 2),
                                        random_tensor(row, dtype, 2, 0.25, 1),
                                        random_tensor(shape, dtype, 3, 0.5, 2)};
        const double tol = dtype == float32 ? 1e-6 : 1e-13;
        std::vector<Tensor> want = execute(before, in);
        EXPECT_TRUE(all_close(execute(g, in)[0], want[0], tol, tol));
        {
          ForceReferenceScope ref;
          EXPECT_TRUE(all_close(execute(g, in)[0], want[0], tol, tol));
        }
        std::vector<Tensor> da = typed_grads(before, in), db = typed_grads(g, in);
        for (size_t k = 0; k < da.size(); ++k) {
          if (!da[k].defined()) continue;
          EXPECT_TRUE(all_close(db[k], da[k], 10 * tol, 10 * tol)) << "input " << k;
        }
      }
    }
  }
  // The ops fusion had before they said so in their OpDefs, and pow, which came by its OpDef.
  for (const char* name : {"neg", "exp", "log", "sqrt", "abs", "square", "relu", "sigmoid", "tanh",
                           "add", "sub", "mul", "div", "pow", "maximum", "minimum"}) {
    EXPECT_NE(std::find(fusable.begin(), fusable.end(), name), fusable.end()) << name;
  }
}

// fused_matmul / fused_conv2d's activation codes, the fusion pass and the attr schema's names
// all come from one table.
TEST(Fusion, ActivationCodesNameTheirOps) {
  std::string choices = ops::kFusedMatmul.attrs->fields[3].choices;
  EXPECT_EQ(choices, ops::kFusedConv2D.attrs->fields[5].choices);
  EXPECT_EQ(fused_act_op(kActNone), nullptr);
  EXPECT_EQ(fused_act_op(kActCount), nullptr);
  EXPECT_EQ(fused_act_code(&ops::kExp), kActNone);
  std::string names = "none";
  for (int64_t act = kActNone + 1; act < kActCount; ++act) {
    ASSERT_NE(fused_act_op(act), nullptr);
    EXPECT_EQ(fused_act_code(fused_act_op(act)), act);
    names += std::string("|") + fused_act_op(act)->name;
  }
  EXPECT_EQ(names, choices);
}

TEST(Fusion, ElementwiseChainsStopAtSharedValuesAndShapeChanges) {
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        Tensor shared = exp(a[0]) * 2.0;  // two readers: a chain ends here
        Tensor b = relu(shared + 1.0);
        Tensor c = sum(shared * 3.0);  // sum is not elementwise
        Tensor d = a[0] + a[1];        // [4, 3] + [4, 1]: a column, not fusable
        return std::vector<Tensor>{b, c, neg(d)};
      },
      {{4, 3}, {4, 1}});
  const Graph before = g;
  fuse(g);
  EXPECT_EQ(count_op(g, "fused_elementwise"), 2) << g.to_text();  // exp*2, +1 relu
  EXPECT_EQ(count_op(g, "add"), 1);
  EXPECT_EQ(count_op(g, "mul"), 1);  // shared * 3 alone
  std::vector<Tensor> xs = {random_tensor({4, 3}), random_tensor({4, 1})};
  expect_same_results(before, g, xs);
}

TEST(Fusion, RowsOverTheLastDimFuseLikeBatchNormInference) {
  // BatchNormalization at inference: (x - mean) / sqrt(var + eps) * gamma + beta, the four
  // vectors [C] broadcast over x's last dim. sqrt(var + eps) is a chain of its own ([C]).
  for (int64_t c : {7, 100}) {  // rows wrapping inside a 64-element block, and longer ones
    const Shape xs{2, 5, 3, c};
    Graph g = trace(
        [](const std::vector<Tensor>& a) {
          return std::vector<Tensor>{(a[0] - a[1]) / sqrt(a[2] + 1e-3) * a[3] + a[4]};
        },
        {xs, {c}, {c}, {1, c}, {c}});
    const Graph before = g;
    EXPECT_EQ(fuse(g), 4);
    EXPECT_EQ(count_op(g, "fused_elementwise"), 2) << g.to_text();
    EXPECT_EQ(g.nodes.size(), 2u);
    std::vector<Tensor> in = {random_tensor(xs, float32, 1), random_tensor({c}, float32, 2),
                              random_tensor({c}, float32, 3, 0.5, 2),
                              random_tensor({1, c}, float32, 4), random_tensor({c}, float32, 5)};
    expect_same_results(before, g, in);
    expect_same_gradients(before, g, in);
  }
}

TEST(Fusion, LongChainsSplitAtTheInstructionLimit) {
  Graph g = trace(
      [](const std::vector<Tensor>& a) {
        Tensor x = a[0], c = scalar_like(0.99, x), d = scalar_like(0.01, x);
        for (int i = 0; i < 100; ++i) x = x * c + d;  // 200 ops on 3 inputs
        return std::vector<Tensor>{x};
      },
      {{17}});
  const Graph before = g;
  fuse(g);
  EXPECT_EQ(g.nodes.size(), 6u);  // 5 x 39 ops + 5
  for (const Node& n : g.nodes) EXPECT_LE(n.attrs.i(0), kFusedMaxInstructions);
  expect_same_results(before, g, {random_tensor({17})});
}

TEST(Fusion, FusedOpsRejectBadInputs) {
  testing::expect_error<ShapeError>(
      [] {
        run_op(ops::kFusedElementwise, {ones({3}), ones({4})},
               Attrs{1, fe_instr(fe_opcode(ops::kAdd), 0, 1)});
      },
      {"fused_elementwise", "[3] and [4]"});
  testing::expect_error<ValueError>(
      [] {
        run_op(ops::kFusedElementwise, {ones({3})}, Attrs{1, fe_instr(fe_opcode(ops::kAdd), 0, 5)});
      },
      {"instruction 0"});
  // An opcode naming an op that is not elementwise (matmul), or no op at all.
  const int64_t matmul = std::find(ops::all_ops().begin(), ops::all_ops().end(), &ops::kMatmul) -
                         ops::all_ops().begin();
  for (int64_t opcode : {matmul, int64_t{60000}}) {
    testing::expect_error<ValueError>(
        [&] {
          run_op(ops::kFusedElementwise, {ones({3}), ones({3})},
                 Attrs{2, fe_instr(fe_opcode(ops::kAdd), 0, 1), fe_instr(opcode, 2, 0)});
        },
        {"fused_elementwise", "instruction 1 is invalid"});
  }
  testing::expect_error<ShapeError>(
      [] {
        run_op(ops::kFusedMatmul, {ones({2, 3}), ones({3, 4}), ones({3})},
               Attrs{0, 0, 1, kActRelu, 0});
      },
      {"fused_matmul", "bias must be [4]"});
}

}  // namespace
}  // namespace kiln::graph
