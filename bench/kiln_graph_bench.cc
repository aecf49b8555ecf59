// Graph-mode training and inference against eager mode and the physical floor:
//   BM_TrainStep/<model>/<graph>   one Adam step at batch 64 (forward, gradients, update), eager
//                                  (graph = 0) or as a traced kiln::function (1); counters:
//                                  floor_ms = training FLOPs / FP32 peak measured in this run
//                                  at the same thread count, x_floor = time / floor
//   BM_TrainStepFirstCall/<model>  a fresh Function's first call: trace + passes + plan + one
//                                  step (subtract BM_TrainStep/<model>/1 for the trace alone)
//   BM_Inference/<model>/<graph>   batch-1 inference, 1 thread
//   BM_ReadWeights/<model>         reading every weight once (sum): the floor of batch-1
//                                  inference, which must stream the weights
// model 0 = mlp, 1 = cnn. Training FLOPs per step as the issue counts them: forward, weight
// gradients, input gradients but the first layer's.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>

#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "peak.h"
#include "train_step.h"

namespace {

using kiln_bench::train_batch;
using kiln_bench::train_flops;
using Step = kiln_bench::TrainStep;

std::shared_ptr<kiln::Sequential> make(bool cnn) {
  return cnn ? kiln::make_cnn() : kiln::make_mlp();
}

void BM_TrainStep(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, graph = state.range(1) == 1;
  kiln::set_num_threads(2);
  Step step(cnn);
  kiln::Function f = step.traced();
  std::vector<kiln::Tensor> in = train_batch();
  if (graph) f(in, true);  // trace outside the timing
  for (auto _ : state) {
    std::vector<kiln::Tensor> out = graph ? f(in, true) : step(in);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  const double peak = kiln_bench::cached_fp32_peak_gflops(2);
  const double floor_ms = train_flops(cnn) / (peak * 1e9) * 1e3;
  state.counters["floor_ms"] = floor_ms;
  state.counters["peak_gflops"] = peak;
  state.counters["x_floor"] = benchmark::Counter(
      floor_ms * 1e-3, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_TrainStepFirstCall(benchmark::State& state) {
  const bool cnn = state.range(0) == 1;
  kiln::set_num_threads(2);
  std::vector<kiln::Tensor> in = train_batch();
  for (auto _ : state) {
    state.PauseTiming();
    auto step = std::make_unique<Step>(cnn);
    kiln::Function f = step->traced();
    state.ResumeTiming();
    std::vector<kiln::Tensor> out = f(in, true);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
}

void BM_Inference(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, graph = state.range(1) == 1;
  kiln::set_num_threads(1);
  auto model = make(cnn);
  kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return (*model)(x, false); });
  kiln::Tensor x = kiln::random_uniform({1, 28, 28, 1}, 0, 1, 3);
  f(x);
  for (auto _ : state) {
    kiln::Tensor y = graph ? f(x) : (*model)(x, false);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void BM_ReadWeights(benchmark::State& state) {
  const bool cnn = state.range(0) == 1;
  kiln::set_num_threads(1);
  auto model = make(cnn);
  std::vector<kiln::Variable> w = model->weights();
  int64_t bytes = 0;
  for (const kiln::Variable& v : w) bytes += v.value().nbytes();
  for (auto _ : state) {
    float s = 0;
    for (const kiln::Variable& v : w) {
      const float* p = v.value().data<float>();
      float acc[16] = {};
      const int64_t n = v.value().numel();
      int64_t i = 0;
      for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
      }
      for (; i < n; ++i) acc[0] += p[i];
      for (float a : acc) s += a;
    }
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}

}  // namespace

#define KILN_STATS                                   \
  UseRealTime()                                      \
      ->ComputeStatistics("min", kiln_bench::min_of) \
      ->ComputeStatistics("max", kiln_bench::max_of)

BENCHMARK(BM_TrainStep)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"cnn", "graph"})
    ->KILN_STATS->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TrainStepFirstCall)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("cnn")
    ->Iterations(5)
    ->KILN_STATS->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Inference)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"cnn", "graph"})
    ->KILN_STATS->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReadWeights)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("cnn")
    ->KILN_STATS->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
