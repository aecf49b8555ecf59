// Graph passes: each checked on the graph text and on results (1e-5 against the graph as
// traced).
#include "graph/passes.h"

#include <gtest/gtest.h>

#include <functional>

#include "graph/tracer.h"
#include "kiln/function.h"
#include "kiln/nn/variable.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln::graph {
namespace {

using testing::all_close;
using testing::random_tensor;

// Traces f on one float32 argument of `shape`.
Graph trace(const std::function<std::vector<Tensor>(const Tensor&)>& f, const Shape& shape) {
  Tracer t;
  Tensor x = t.add_input(shape, float32);
  t.set_outputs(f(x));
  return t.take();
}

int count_op(const Graph& g, const char* name) {
  int n = 0;
  for (const Node& node : g.nodes) n += std::string(node.op->name) == name;
  return n;
}

void expect_same_results(const Graph& before, const Graph& after, const Tensor& x) {
  std::vector<Tensor> a = execute(before, {x}), b = execute(after, {x});
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(all_close(b[k], a[k], 1e-5, 1e-6)) << k;
}

TEST(Passes, DeadCodeIsRemoved) {
  Graph g = trace(
      [](const Tensor& x) {
        Tensor unused = exp(x) * 3.0;  // nothing returns it
        return std::vector<Tensor>{relu(x)};
      },
      {2, 3});
  const Graph before = g;
  EXPECT_EQ(eliminate_dead_code(g), 2);
  compact(g);
  EXPECT_EQ(count_op(g, "exp"), 0);
  EXPECT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.to_text(),
            "%0 = input 0 : [2, 3] float32\n%1 = relu(%0) : [2, 3] float32\nreturn %1\n");
  expect_same_results(before, g, random_tensor({2, 3}));
}

TEST(Passes, CommonSubexpressionsAreMerged) {
  Graph g = trace(
      [](const Tensor& x) {
        Tensor a = tanh(x) * 2.0, b = tanh(x) * 2.0;  // the same twice (two scalar constants)
        return std::vector<Tensor>{a + b, sum(tanh(x), {1})};
      },
      {3, 4});
  const Graph before = g;
  EXPECT_EQ(count_op(g, "tanh"), 3);
  PassStats s = optimize(g);
  EXPECT_EQ(count_op(g, "tanh"), 1);
  EXPECT_GE(s.merged_nodes, 2);
  expect_same_results(before, g, random_tensor({3, 4}));
  // Different attrs are different expressions.
  Graph h = trace(
      [](const Tensor& x) {
        return std::vector<Tensor>{sum(x, {0}), sum(x, {1})};
      },
      {3, 3});
  EXPECT_EQ(eliminate_common_subexpressions(h), 0);
}

TEST(Passes, ConstantsFoldButVariablesNever) {
  Tensor c = from_vector<float>({1, 2, 3});
  Variable v("passes_test/v", from_vector<float>({4, 5, 6}), false);
  Graph g = trace(
      [&](const Tensor& x) {
        Tensor folded = exp(c) * 2.0 + 1.0;  // constants only: computed once, at trace time
        Tensor kept = v.value() * 2.0;       // reads a variable: stays in the graph
        return std::vector<Tensor>{x * folded + kept};
      },
      {3});
  const Graph before = g;
  PassStats s = optimize(g);
  EXPECT_EQ(s.folded_nodes, 3);
  EXPECT_EQ(count_op(g, "exp"), 0);
  EXPECT_EQ(g.nodes.size(), 3u);  // v * 2, x * folded, + kept
  std::string text = g.to_text();
  EXPECT_NE(text.find("= variable : [3] float32"), std::string::npos) << text;
  Tensor x = random_tensor({3});
  expect_same_results(before, g, x);
  // The variable is read at run time: an assignment shows in the next run, no retrace.
  v.assign(from_vector<float>({0, 0, 0}));
  EXPECT_TRUE(all_close(execute(g, {x})[0], x * (exp(c) * 2.0 + 1.0)));
}

TEST(Passes, LifetimesReleaseEachIntermediateAfterItsLastReader) {
  Graph g =
      trace([](const Tensor& x) { return std::vector<Tensor>{exp(x) + tanh(exp(x) * 2.0)}; }, {4});
  optimize(g);
  g.plan_lifetimes();
  // exp's result is read by mul and add: released after add (the last node) only if not an
  // output; the final add is the output and is never released.
  size_t released = 0;
  for (const Node& n : g.nodes) released += n.release.size();
  EXPECT_EQ(released, g.nodes.size() - 1);  // every node value but the returned one
  for (int32_t v : g.nodes.back().release) EXPECT_NE(v, g.outputs[0]);
  Tensor x = random_tensor({4});
  EXPECT_TRUE(all_close(execute(g, {x})[0], exp(x) + tanh(exp(x) * 2.0)));
}

TEST(Passes, FunctionShowsTheGraphBeforeAndAfter) {
  kiln::Function f = kiln::function([](const Tensor& x) {
    Tensor dead = square(x);
    return relu(x) + relu(x);
  });
  std::vector<Tensor> args = {zeros({2})};
  std::string before = f.graph_text(args, false, /*optimized=*/false);
  std::string after = f.graph_text(args);
  EXPECT_NE(before.find("square"), std::string::npos) << before;
  EXPECT_EQ(after.find("square"), std::string::npos) << after;
  EXPECT_EQ(after,
            "%0 = input 0 : [2] float32\n%1 = relu(%0) : [2] float32\n"
            "%2 = add(%1, %1) : [2] float32\nreturn %2\n");
  Tensor x = from_vector<float>({-1, 2});
  EXPECT_EQ(f(x).to_vector<float>(), (std::vector<float>{0, 4}));
}

}  // namespace
}  // namespace kiln::graph
