// GraphModel: validation of graphs from outside, ports, one trace for every batch size,
// summaries with FLOPs.
#include "kiln/graph_model.h"

#include <gtest/gtest.h>

#include "graph/graph.h"
#include "graph/tracer.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// y = relu(x @ w + b), x [?, 4], traced at batch 2.
graph::Graph dense_graph(const Tensor& w, const Tensor& b) {
  graph::Tracer t;
  Tensor x = t.add_input(Shape{2, 4}, float32);
  t.set_outputs({relu(add(matmul(x, w), b))});
  return t.take();
}

GraphModel dense_model(const Tensor& w, const Tensor& b) {
  return GraphModel(dense_graph(w, b), {{"x", {{kUnknownDim, 4}, float32}}},
                    {{"y", {{kUnknownDim, 3}, float32}}}, "dense");
}

TEST(GraphModel, RunsEveryBatchSizeFromOneTrace) {
  Tensor w = random_tensor({4, 3}, float32, 1), b = random_tensor({3}, float32, 2);
  GraphModel m = dense_model(w, b);
  for (int64_t n : {1, 5, 64}) {
    Tensor x = random_tensor({n, 4}, float32, 3 + n);
    EXPECT_TRUE(all_close(m(x), relu(add(matmul(x, w), b))));
  }
  EXPECT_EQ(m.cache_info().traces, 1u);
  EXPECT_NE(m.graph_text(true).find("fused_matmul"), std::string::npos) << m.graph_text(true);
  EXPECT_NE(m.graph_text(false).find("matmul("), std::string::npos);
}

TEST(GraphModel, InputsAreCheckedAgainstTheirPorts) {
  GraphModel m = dense_model(random_tensor({4, 3}), random_tensor({3}));
  expect_error<ShapeError>([&] { m(zeros({2, 5})); }, {"input 'x'", "[?, 4] float32", "[2, 5]"});
  expect_error<DTypeError>([&] { m(zeros({2, 4}, float64)); }, {"input 'x'", "float64"});
  expect_error<ValueError>([&] { m(std::vector<Tensor>{}); }, {"got 0 inputs", "takes 1"});
  expect_error<StateError>([&] { GraphModel().inputs(); }, {"empty"});
}

TEST(GraphModel, SummaryCountsParametersAndFlops) {
  GraphModel m = dense_model(random_tensor({4, 3}), random_tensor({3}));
  GraphSummary s = m.summary();
  EXPECT_EQ(s.parameters, 15);
  EXPECT_EQ(s.parameter_bytes, 60);
  // matmul 2*1*3*4 = 24, add 3, relu 3 at batch 1.
  EXPECT_EQ(s.flops_per_sample, 30);
  EXPECT_NE(s.to_text().find("matmul x1"), std::string::npos) << s.to_text();
}

TEST(GraphModel, ValidationNamesTheNodeAndWhatIsWrong) {
  Tensor w = random_tensor({4, 3}), b = random_tensor({3});
  {
    graph::Graph g = dense_graph(w, b);
    g.values[g.nodes[0].outputs[0]].meta.shape = Shape{2, 7};
    expect_error<FormatError>(
        [&] {
          GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
        },
        {"node 0 (matmul)", "declared [2, 7]", "infers [2, 3]"});
  }
  {
    graph::Graph g = dense_graph(w, b);
    g.nodes[1].inputs[1] = 99;
    expect_error<FormatError>(
        [&] {
          GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
        },
        {"node 1 (add)", "%99"});
  }
  {
    graph::Graph g = dense_graph(w, b);
    std::swap(g.nodes[0], g.nodes[1]);
    expect_error<FormatError>(
        [&] {
          GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
        },
        {"before it is defined"});
  }
  {
    graph::Graph g = dense_graph(w, b);
    g.nodes[0].attrs = Attrs{1, 1, 1};
    expect_error<FormatError>(
        [&] {
          GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
        },
        {"node 0 (matmul)", "schema"});
  }
  {
    graph::Graph g = dense_graph(w, b);
    g.nodes[2].inputs.push_back(g.nodes[2].inputs[0]);
    expect_error<FormatError>(
        [&] {
          GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
        },
        {"node 2 (relu)", "has 2 inputs", "takes 1"});
  }
  expect_error<FormatError>(
      [&] {
        GraphModel(dense_graph(w, b), {{"x", {{-1, 5}, float32}}}, {{"y", {{-1, 3}, float32}}});
      },
      {"input 'x'", "[?, 5] float32", "[2, 4] float32"});
  expect_error<FormatError>(
      [&] {
        GraphModel(dense_graph(w, b), {}, {{"y", {{-1, 3}, float32}}});
      },
      {"0 input and 1 output ports"});
}

TEST(GraphModel, RefusesVariables) {
  Tensor w = random_tensor({4, 3}), b = random_tensor({3});
  graph::Graph g = dense_graph(w, b);
  g.values[g.nodes[0].inputs[1]].kind = graph::ValueKind::kVariable;
  expect_error<ValueError>(
      [&] {
        GraphModel(std::move(g), {{"x", {{-1, 4}, float32}}}, {{"y", {{-1, 3}, float32}}});
      },
      {"is a variable", "freeze"});
}

}  // namespace
}  // namespace kiln
