// kiln::function: what a cache hit costs, graph mode against eager at batch 1, and the first
// call. One thread unless named (2-thread runs of small work flip between levels here).
//
//   BM_EagerSmallMlp          relu(x w1 + b1) w2 + b2 on [1, 16] x [16, 16], eager
//   BM_FunctionHitSmallMlp    the same as a Function, operator() (returns a new vector)
//   BM_FunctionCallSmallMlp   the same through call(args, outs): the allocation-free form
//   BM_PlanRunSmallMlp        the same plan run directly (graph::Plan::run): no lookup
//     a hit's overhead = FunctionCall - PlanRun (signature check, LRU, locks, plan binding)
//   BM_{Mlp,Cnn}Batch1{Eager,Graph}  make_mlp / make_cnn forward at batch 1
//   BM_{Mlp,Cnn}WeightsFloor  reading every weight of the model once: batch 1's floor
//   BM_CnnFirstCall{Warm,Cold}  a new Function's first call: trace, passes, plan, first run;
//     Cold also empties kiln's primitive cache first (oneDNN's own cache may still hit)
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "graph/executor.h"
#include "graph/fusion.h"
#include "graph/passes.h"
#include "graph/tracer.h"
#include "kernels/onednn/cache_stats.h"
#include "peak.h"

namespace {

struct SmallMlp {
  kiln::Tensor w1 = kiln::random_normal({16, 16}, 0, 0.1, 1);
  kiln::Tensor b1 = kiln::zeros({16});
  kiln::Tensor w2 = kiln::random_normal({16, 16}, 0, 0.1, 2);
  kiln::Tensor b2 = kiln::zeros({16});
  kiln::Tensor operator()(const kiln::Tensor& x) const {
    return kiln::matmul(kiln::relu(kiln::matmul(x, w1) + b1), w2) + b2;
  }
};

void BM_EagerSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::Tensor x = kiln::ones({1, 16});
  for (auto _ : state) {
    kiln::Tensor y = mlp(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void BM_FunctionHitSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return mlp(x); });
  kiln::Tensor x = kiln::ones({1, 16});
  f(x);  // trace
  for (auto _ : state) {
    kiln::Tensor y = f(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["traces"] = static_cast<double>(f.cache_info().traces);
}

void BM_FunctionCallSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return mlp(x); });
  kiln::Tensor x = kiln::ones({1, 16});
  kiln::Tensor out[1];
  f.call({&x, 1}, out);
  for (auto _ : state) {
    f.call({&x, 1}, out);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  state.counters["traces"] = static_cast<double>(f.cache_info().traces);
}

void BM_PlanRunSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::graph::Graph g = [&] {
    kiln::graph::Tracer t;
    kiln::Tensor x = t.add_input({1, 16}, kiln::float32);
    t.set_outputs({mlp(x)});
    return t.take();
  }();
  kiln::graph::optimize(g);  // the passes a Function runs
  kiln::graph::fuse(g);
  kiln::Tensor x = kiln::ones({1, 16});
  std::unique_ptr<kiln::graph::Plan> plan = kiln::graph::Plan::build(g, {&x, 1});
  kiln::Tensor out[1];
  plan->run({&x, 1}, out);
  for (auto _ : state) {
    plan->run({&x, 1}, out);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  state.counters["steps"] = static_cast<double>(plan->num_steps());
}

std::shared_ptr<kiln::Sequential> model(bool cnn) {
  return cnn ? kiln::make_cnn(nullptr) : kiln::make_mlp(nullptr);
}

void batch1_eager(benchmark::State& state, bool cnn) {
  kiln::set_num_threads(1);
  auto m = model(cnn);
  kiln::Tensor x = kiln::random_normal({1, 28, 28, 1}, 0, 1, 3);
  for (auto _ : state) {
    kiln::Tensor y = (*m)(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void batch1_graph(benchmark::State& state, bool cnn) {
  kiln::set_num_threads(1);
  auto m = model(cnn);
  kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return (*m)(x); });
  kiln::Tensor x = kiln::random_normal({1, 28, 28, 1}, 0, 1, 3);
  kiln::Tensor out[1];
  f.call({&x, 1}, out);
  for (auto _ : state) {
    f.call({&x, 1}, out);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  const kiln::FunctionCacheInfo info = f.cache_info();
  state.counters["steps"] = static_cast<double>(info.plan_steps);
  state.counters["arena_KiB"] = static_cast<double>(info.arena_bytes) / 1024.0;
}

// The floor of a batch-1 forward: reading every weight once (a vectorized sum over them).
void weights_floor(benchmark::State& state, bool cnn) {
  auto m = model(cnn);
  std::vector<std::pair<const float*, int64_t>> ws;
  double bytes = 0;
  for (const kiln::Variable& v : m->weights()) {
    ws.push_back({v.value().data<float>(), v.value().numel()});
    bytes += 4.0 * v.value().numel();
  }
  for (auto _ : state) {
    float acc = 0;
    for (const auto& [p, n] : ws) {
      float part[16] = {};
      for (int64_t i = 0; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; ++j) part[j] += p[i + j];
      for (float f : part) acc += f;
    }
    benchmark::DoNotOptimize(acc);
  }
  state.counters["weight_KiB"] = bytes / 1024.0;
}
void BM_MlpWeightsFloor(benchmark::State& state) { weights_floor(state, false); }
void BM_CnnWeightsFloor(benchmark::State& state) { weights_floor(state, true); }

void BM_MlpBatch1Eager(benchmark::State& state) { batch1_eager(state, false); }
void BM_MlpBatch1Graph(benchmark::State& state) { batch1_graph(state, false); }
void BM_CnnBatch1Eager(benchmark::State& state) { batch1_eager(state, true); }
void BM_CnnBatch1Graph(benchmark::State& state) { batch1_graph(state, true); }

void cnn_first_call(benchmark::State& state, bool cold) {
  kiln::set_num_threads(1);
  auto m = model(true);
  kiln::Tensor x = kiln::random_normal({1, 28, 28, 1}, 0, 1, 3);
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      kiln::onednn::clear_primitive_cache();
      state.ResumeTiming();
    }
    kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return (*m)(x); });
    kiln::Tensor y = f(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
}
void BM_CnnFirstCallWarm(benchmark::State& state) { cnn_first_call(state, false); }
void BM_CnnFirstCallCold(benchmark::State& state) { cnn_first_call(state, true); }

}  // namespace

#define KILN_BENCH(fn)                               \
  BENCHMARK(fn)                                      \
      ->UseRealTime()                                \
      ->ComputeStatistics("min", kiln_bench::min_of) \
      ->ComputeStatistics("max", kiln_bench::max_of) \
      ->Unit(benchmark::kMicrosecond)

KILN_BENCH(BM_EagerSmallMlp);
KILN_BENCH(BM_FunctionHitSmallMlp);
KILN_BENCH(BM_FunctionCallSmallMlp);
KILN_BENCH(BM_PlanRunSmallMlp);
KILN_BENCH(BM_MlpWeightsFloor);
KILN_BENCH(BM_MlpBatch1Eager);
KILN_BENCH(BM_MlpBatch1Graph);
KILN_BENCH(BM_CnnWeightsFloor);
KILN_BENCH(BM_CnnBatch1Eager);
KILN_BENCH(BM_CnnBatch1Graph);
KILN_BENCH(BM_CnnFirstCallWarm);
KILN_BENCH(BM_CnnFirstCallCold);
BENCHMARK_MAIN();
