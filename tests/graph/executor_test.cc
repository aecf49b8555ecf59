// The plan executor, directly and through Function: results equal the dispatcher's, outputs
// survive later calls, call() writes in place, tapes fall back to the dispatcher, stateful
// nodes run in order and survive the passes.
#include "graph/executor.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "core/tensor_impl.h"
#include "graph/passes.h"
#include "graph/tracer.h"
#include "kiln/autograd.h"
#include "kiln/function.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln::graph {
namespace {

using testing::all_close;
using testing::random_tensor;

// A stateful test op: accumulate(acc, x) adds x into acc in place and has no outputs (the
// shape of the lead's assign_add).
void acc_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  if (in[0].shape != in[1].shape) throw ShapeError("test_accumulate: shapes differ");
}
void acc_reference(const KernelArgs& k) {
  float* a = detail::ptr<float>(k.in[0]);
  const float* x = detail::ptr<float>(k.in[1]);
  for (int64_t i = 0; i < k.in[0].numel(); ++i) a[i] += x[i];
}
const OpDef kAccumulate{.name = "test_accumulate",
                        .num_inputs = 2,
                        .num_outputs = 0,
                        .infer = acc_infer,
                        .reference = acc_reference,
                        .flags = kStateful | kNotDifferentiable};

TEST(Executor, PlanMatchesTheDispatcherAndKeepsOutputsAcrossRuns) {
  Tensor c = random_tensor({3, 4}, float32, 9);  // captured constant
  Graph g = [&] {
    Tracer t;  // installed while alive: the tensors below are symbolic
    Tensor x = t.add_input({3, 4}, float32);
    Tensor a = exp(x) * c;
    Tensor r = reshape(a, {4, 3});               // a view output: copied out
    t.set_outputs({relu(a + 1.0), r, x, c, r});  // an argument, a constant, a duplicate
    return t.take();
  }();
  optimize(g);
  Tensor x1 = random_tensor({3, 4}, float32, 1), x2 = random_tensor({3, 4}, float32, 2);
  std::unique_ptr<Plan> plan = Plan::build(g, std::span<const Tensor>(&x1, 1));
  std::vector<Tensor> outs1(5), outs2(5);
  plan->run({&x1, 1}, outs1);
  const std::vector<Tensor> want1 = execute(g, {x1});
  plan->run({&x2, 1}, outs2);
  const std::vector<Tensor> want2 = execute(g, {x2});
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_TRUE(all_close(outs1[k], want1[k], 1e-6, 0)) << k;  // still valid after run 2
    EXPECT_TRUE(all_close(outs2[k], want2[k], 1e-6, 0)) << k;
  }
  EXPECT_NE(outs1[0].raw_data(), outs2[0].raw_data());
  EXPECT_NE(outs1[2].raw_data(), x1.raw_data());  // a copy: the caller owns its results
}

TEST(Executor, CallWritesIntoFittingOutsAndReplacesAliasingOnes) {
  Function f = function([](const Tensor& x) { return sigmoid(x) * 2.0 - x; });
  Tensor x = random_tensor({5, 3});
  Tensor out[1] = {zeros({5, 3})};
  const void* where = out[0].raw_data();
  f.call({&x, 1}, out);
  EXPECT_EQ(out[0].raw_data(), where);  // written in place
  EXPECT_TRUE(all_close(out[0], sigmoid(x) * 2.0 - x));
  Tensor y = random_tensor({5, 3}, float32, 3);
  f.call({&y, 1}, out);
  EXPECT_EQ(out[0].raw_data(), where);
  EXPECT_TRUE(all_close(out[0], sigmoid(y) * 2.0 - y));
  // The argument as its own out: writing there first would change what the graph reads.
  Tensor self[1] = {y};
  f.call({&y, 1}, self);
  EXPECT_NE(self[0].raw_data(), y.raw_data());
  EXPECT_TRUE(all_close(self[0], sigmoid(y) * 2.0 - y));
  // A misfit out (shape) is replaced; a wrong count is an error.
  Tensor small[1] = {zeros({2})};
  f.call({&x, 1}, small);
  EXPECT_EQ(small[0].shape(), (Shape{5, 3}));
  Tensor two[2];
  testing::expect_error<ValueError>([&] { f.call({&x, 1}, two); }, {"returns 1 tensors", "got 2"});
  // One tensor passed for two results (one written in place, one a copied view): the second
  // gets a tensor of its own instead of overwriting the first.
  Function g = function([](const std::vector<Tensor>& a, bool) {
    Tensor y = exp(a[0]);
    return std::vector<Tensor>{y + 1.0, reshape(y, {15})};
  });
  Tensor same = zeros({5, 3});
  Tensor both[2] = {same, same.reshape({15})};
  g.call({&x, 1}, both);
  EXPECT_TRUE(all_close(both[0], exp(x) + 1.0));
  EXPECT_TRUE(all_close(both[1], reshape(exp(x), {15})));
  EXPECT_EQ(f.cache_info().traces, 1u);
}

TEST(Executor, UnknownDimsReplanPerShape) {
  FunctionOptions o;
  o.input_signature = std::vector<TensorSpec>{{{kUnknownDim, 6}, float32}};
  Function f = function([](const Tensor& x) { return relu(x * 3.0) + 1.0; }, o);
  for (int64_t n : {1, 7, 64, 7, 1, 2, 3, 4}) {
    Tensor x = random_tensor({n, 6}, float32, static_cast<uint64_t>(n));
    EXPECT_TRUE(all_close(f(x), relu(x * 3.0) + 1.0)) << n;
  }
  const FunctionCacheInfo info = f.cache_info();
  EXPECT_EQ(info.traces, 1u);
  EXPECT_EQ(info.plan_steps, 4u);   // one fused step in each of the 4 most recent plans
  EXPECT_EQ(info.arena_bytes, 0u);  // one fused step writes the output: no intermediates
}

TEST(Executor, ATapeAroundACallTakesTheDifferentiablePath) {
  std::shared_ptr<Sequential> m = make_mlp(nullptr);
  Function f = function([&](const Tensor& x) { return (*m)(x); });
  Tensor x = random_tensor({2, 28, 28, 1});
  f(x);  // planned
  std::vector<Tensor> graph_grads, eager_grads;
  std::vector<Tensor> ws;
  for (const Variable& v : m->trainable_weights()) ws.push_back(v.value());
  {
    GradientTape tape;
    graph_grads = tape.gradient(sum(square(f(x))), ws);
  }
  {
    GradientTape tape;
    eager_grads = tape.gradient(sum(square((*m)(x))), ws);
  }
  ASSERT_EQ(graph_grads.size(), eager_grads.size());
  for (size_t k = 0; k < ws.size(); ++k) {
    EXPECT_TRUE(all_close(graph_grads[k], eager_grads[k], 1e-5, 1e-5)) << k;
  }
}

TEST(Executor, ModelsInGraphModeMatchEager) {
  for (auto make : {make_mlp, make_cnn}) {
    std::shared_ptr<Sequential> m = make(nullptr);
    Function f = function([&](const Tensor& x) { return (*m)(x); });
    for (int64_t batch : {1, 3}) {
      Tensor x = random_tensor({batch, 28, 28, 1}, float32, static_cast<uint64_t>(batch));
      for (int rep = 0; rep < 3; ++rep) {
        EXPECT_TRUE(all_close(f(x), (*m)(x), 1e-5, 1e-5)) << batch;
      }
    }
  }
}

TEST(Executor, StatefulNodesStayRunInOrderAndSplitCse) {
  Tensor acc = zeros({3});
  Function f = function([&](const std::vector<Tensor>& args, bool) {
    const Tensor& x = args[0];
    Tensor two = scalar_like(2.0, acc);
    Tensor before = mul(acc, two);
    run_op(kAccumulate, std::vector<Tensor>{acc, x}, {}, {});
    Tensor after = mul(acc, two);  // same op and inputs as `before`, but after a write
    run_op(kAccumulate, std::vector<Tensor>{acc, x}, {}, {});  // its result is never read
    return std::vector<Tensor>{before, after};
  });
  std::vector<Tensor> args = {from_vector<float>({1, 2, 3})};
  const std::string text = f.graph_text(args);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 8) << text;  // nothing removed
  EXPECT_NE(text.find("test_accumulate(%1, %0)\n"), std::string::npos) << text;
  std::vector<Tensor> y = f(args);
  EXPECT_EQ(y[0].to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(y[1].to_vector<float>(), (std::vector<float>{2, 4, 6}));
  EXPECT_EQ(acc.to_vector<float>(), (std::vector<float>{2, 4, 6}));
  y = f(args);  // the plan runs them again, in order
  EXPECT_EQ(y[0].to_vector<float>(), (std::vector<float>{4, 8, 12}));
  EXPECT_EQ(y[1].to_vector<float>(), (std::vector<float>{6, 12, 18}));
  EXPECT_EQ(acc.to_vector<float>(), (std::vector<float>{4, 8, 12}));
}

// Random programs (elementwise chains, broadcasts, views, matmuls with biases, shared values,
// duplicate and argument outputs): the planned, fused Function against the same code eager,
// over several calls reusing their outs.
TEST(Executor, RandomProgramsMatchEager) {
  size_t fused = 0, steps = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    uint64_t state = seed * 0x9E3779B97F4A7C15ull;
    auto next = [&](int n) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<int>((state >> 33) % static_cast<uint64_t>(n));
    };
    std::vector<int> prog;  // the same choices drive the trace and the eager run
    for (int i = 0; i < 12; ++i) prog.push_back(next(1 << 20));
    const Tensor w = random_tensor({6, 6}, float32, seed + 100);
    const Tensor b = random_tensor({6}, float32, seed + 200);
    auto body = [prog, w, b](const std::vector<Tensor>& args, bool) {
      std::vector<Tensor> vals = {args[0], args[1]};  // [4, 6] each
      auto pick = [&](int r) -> const Tensor& { return vals[r % vals.size()]; };
      for (int r : prog) {
        const Tensor& x = pick(r >> 4);
        Tensor y;
        switch (r % 9) {
          case 0:
            y = exp(x * 0.3);
            break;
          case 1:
            y = kiln::tanh(x) + pick(r >> 8);
            break;
          case 2:
            y = relu(x - b);
            break;
          case 3:
            y = reshape(reshape(x, {6, 4}) * 2.0, {4, 6});
            break;
          case 4:
            y = relu(add(matmul(x, w), b));
            break;
          case 5:
            y = sigmoid(matmul(x, w, false, true)) * pick(r >> 12);
            break;
          case 6:
            y = maximum(x, pick(r >> 8)) / (abs(x) + 1.0);
            break;
          case 7:
            y = x.rows(1, 3).reshape({2, 6}).rows(0, 2) * 1.0 + 0.0;
            break;
          default:
            y = neg(square(x));
            break;
        }
        if (y.shape() != Shape{4, 6}) y = concat({y, y}, 0);
        vals.push_back(y);
      }
      const int n = static_cast<int>(vals.size());
      return std::vector<Tensor>{vals[n - 1], vals[prog[0] % n], vals[n - 1], args[1],
                                 vals[prog[1] % n].reshape({24})};
    };
    Function f(body);
    for (int call = 0; call < 3; ++call) {
      std::vector<Tensor> args = {random_tensor({4, 6}, float32, seed * 10 + call),
                                  random_tensor({4, 6}, float32, seed * 10 + call + 5)};
      const std::vector<Tensor> want = body(args, false);
      std::vector<Tensor> outs(want.size());
      f.call(args, outs);
      const std::vector<Tensor> got = f(args);
      for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_TRUE(all_close(outs[k], want[k], 1e-5, 1e-5)) << "seed " << seed << " out " << k;
        EXPECT_TRUE(all_close(got[k], want[k], 1e-5, 1e-5)) << "seed " << seed << " out " << k;
      }
    }
    EXPECT_EQ(f.cache_info().traces, 1u);
    fused += f.cache_info().fused_nodes;
    steps += f.cache_info().plan_steps;
  }
  EXPECT_GT(fused, 100u);  // the programs do exercise fusion
  std::printf("  40 programs: %zu nodes fused away, %zu plan steps left\n", fused, steps);
}

}  // namespace
}  // namespace kiln::graph
