// plan_memory: liveness-based sharing in one arena, views aliasing their input.
#include "graph/memory_plan.h"

#include <gtest/gtest.h>

#include <functional>

#include "graph/fusion.h"
#include "graph/passes.h"
#include "graph/tracer.h"
#include "kiln/function.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln::graph {
namespace {

Graph trace(const std::function<std::vector<Tensor>(const Tensor&)>& f, const Shape& shape) {
  Tracer t;
  Tensor x = t.add_input(shape, float32);
  t.set_outputs(f(x));
  return t.take();
}

std::vector<Meta> metas_of(const Graph& g) {
  std::vector<Meta> m;
  for (const Value& v : g.values) m.push_back(v.meta);
  return m;
}

// Checks the planner's contract from the outside: aligned offsets inside the arena, and no two
// values whose lifetimes overlap (computed here independently) sharing a byte.
void expect_valid(const Graph& g, const MemoryPlan& p) {
  const size_t nv = g.values.size();
  std::vector<int32_t> first(nv, -1), last(nv, -1), root(nv);
  for (size_t v = 0; v < nv; ++v) root[v] = static_cast<int32_t>(v);
  for (int32_t i = 0; i < static_cast<int32_t>(g.nodes.size()); ++i) {
    const Node& n = g.nodes[i];
    for (int32_t v : n.outputs) {
      if (n.op->view) root[v] = root[n.inputs[0]];
      if (first[root[v]] < 0) first[root[v]] = i;
      last[root[v]] = std::max(last[root[v]], i);
    }
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (!reads_shape_only(*n.op, static_cast<int>(k))) {
        last[root[n.inputs[k]]] = std::max(last[root[n.inputs[k]]], i);
      }
    }
  }
  for (int32_t v : g.outputs) last[root[v]] = static_cast<int32_t>(g.nodes.size());
  for (size_t a = 0; a < nv; ++a) {
    EXPECT_EQ(p.root[a], root[a]) << a;
    if (p.offset[a] < 0) continue;
    EXPECT_EQ(p.offset[a] % 64, 0) << a;
    const size_t abytes = g.values[a].meta.shape.numel() * size_of(g.values[a].meta.dtype);
    EXPECT_LE(p.offset[a] + abytes, p.arena_bytes) << a;
    for (size_t b = a + 1; b < nv; ++b) {
      if (p.offset[b] < 0) continue;
      const size_t bbytes = g.values[b].meta.shape.numel() * size_of(g.values[b].meta.dtype);
      const bool live_together = first[a] <= last[b] && first[b] <= last[a];
      const bool share = p.offset[a] < static_cast<int64_t>(p.offset[b] + bbytes) &&
                         p.offset[b] < static_cast<int64_t>(p.offset[a] + abytes);
      EXPECT_FALSE(live_together && share) << "values " << a << " and " << b;
    }
  }
}

TEST(MemoryPlan, AChainPingPongsBetweenTwoBuffers) {
  // Five intermediates of 100 floats in a line: each dies as the next is written, so two
  // buffers (448 bytes each after alignment) hold all of them; the output is not in the arena.
  Graph g = trace(
      [](const Tensor& x) {
        Tensor y = x;
        for (int i = 0; i < 6; ++i) y = i % 2 ? exp(y) : neg(y);
        return std::vector<Tensor>{y};
      },
      {100});
  MemoryPlan p = plan_memory(g, metas_of(g));
  EXPECT_EQ(p.arena_bytes, 2u * 448u);
  EXPECT_EQ(p.value_bytes, 5u * 448u);
  EXPECT_EQ(p.offset[g.outputs[0]], -1);
  expect_valid(g, p);
}

TEST(MemoryPlan, ViewsAliasTheirInputAndExtendItsLife) {
  // r is a view of a; a must stay intact until r's last reader, though a itself is read only
  // by the reshape.
  Graph g = trace(
      [](const Tensor& x) {
        Tensor a = exp(x);
        Tensor r = reshape(a, {6, 2});
        Tensor b = neg(x);      // live while r is
        Tensor c = exp(b) + 1;  // more values that must not land on a
        return std::vector<Tensor>{reshape(c, {6, 2}) * r};
      },
      {3, 4});
  MemoryPlan p = plan_memory(g, metas_of(g));
  int32_t a = -1, r = -1;
  for (const Node& n : g.nodes) {
    if (std::string(n.op->name) == "reshape" && a < 0) r = n.outputs[0], a = n.inputs[0];
  }
  ASSERT_GE(a, 0);
  EXPECT_EQ(p.root[r], a);
  EXPECT_EQ(p.offset[r], -1);  // a view owns no bytes
  EXPECT_GE(p.offset[a], 0);
  expect_valid(g, p);
  // Run through a Function (the executor uses this plan): results match eager.
  Function f = function([](const Tensor& x) {
    Tensor a = exp(x);
    Tensor r = reshape(a, {6, 2});
    Tensor b = neg(x);
    Tensor c = exp(b) + 1;
    return reshape(c, {6, 2}) * r;
  });
  Tensor x = testing::random_tensor({3, 4});
  EXPECT_TRUE(testing::all_close(f(x), reshape(exp(neg(x)) + 1, {6, 2}) * reshape(exp(x), {6, 2})));
}

TEST(MemoryPlan, ShapeOnlyInputsDoNotKeepBytesAlive) {
  // y = exp(x) is read only for its shape (sum_to_like's "like"): its bytes may be reused by
  // a = neg(x) right away, so three intermediates fit in two buffers.
  auto body = [](const Tensor& x) {
    Tensor y = exp(x);
    return run_op(ops::kSumToLike, {kiln::tanh(neg(x)), y});
  };
  Graph g = trace([&](const Tensor& x) { return std::vector<Tensor>{body(x)}; }, {100});
  MemoryPlan p = plan_memory(g, metas_of(g));
  EXPECT_EQ(p.value_bytes, 3u * 448u);
  EXPECT_EQ(p.arena_bytes, 2u * 448u);
  expect_valid(g, p);
  Function f = function(body);
  Tensor x = testing::random_tensor({100});
  EXPECT_TRUE(testing::all_close(f(x), kiln::tanh(neg(x))));
}

TEST(MemoryPlan, ModelGraphsShareTheirArena) {
  for (bool cnn : {false, true}) {
    std::shared_ptr<Sequential> m = cnn ? make_cnn(nullptr) : make_mlp(nullptr);
    Graph g = trace([&](const Tensor& x) { return std::vector<Tensor>{(*m)(x)}; }, {4, 28, 28, 1});
    optimize(g);
    fuse(g);
    MemoryPlan p = plan_memory(g, metas_of(g));
    expect_valid(g, p);
    EXPECT_GT(p.arena_bytes, 0u);
    // The fused mlp's two hidden activations are live together (one is read while the next
    // is written), so they cannot share; the cnn's first conv output can be reused later.
    if (cnn) {
      EXPECT_LT(p.arena_bytes, p.value_bytes) << "no sharing at all";
    } else {
      EXPECT_EQ(p.arena_bytes, (256 + 128) * 4 * 4u);  // [4, 256] and [4, 128] floats
    }
  }
}

TEST(MemoryPlan, FunctionReportsItsArena) {
  std::shared_ptr<Sequential> m = make_cnn(nullptr);
  Function f = function([&](const Tensor& x) { return (*m)(x); });
  EXPECT_EQ(f.cache_info().arena_bytes, 0u);
  f(testing::random_tensor({2, 28, 28, 1}));
  const FunctionCacheInfo info = f.cache_info();
  // conv 32 -> pool -> conv 64 -> pool: the first conv and its pool are one step
  // (fused_conv2d_pool), so its 2*28*28*32-float output never reaches the arena; the largest
  // value there is the second conv's output, 2*14*14*64 floats.
  EXPECT_GE(info.arena_bytes, 2u * 14 * 14 * 64 * 4);
  EXPECT_LT(info.arena_bytes, 2u * 28 * 28 * 32 * 4);
  // conv+bias+relu+pool, conv+bias+relu, pool, the flatten is a view (no step),
  // dense+bias+relu, dense+bias.
  EXPECT_EQ(info.plan_steps, 5u);
  EXPECT_EQ(info.fused_nodes, 8u);
}

}  // namespace
}  // namespace kiln::graph
