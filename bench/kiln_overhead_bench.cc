// kiln's eager bookkeeping cost, beside bench/peers/torch_overhead_bench.cc:
//   BM_KilnAdd1            eager `a + b` on 1-element float tensors (1 thread)
//   BM_KilnAutogradStep/n  one tiny step: tape; y = sum(w * x); tape.gradient(y, {w}) (1 thread)
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>

#include "peak.h"

namespace {

void BM_KilnAdd1(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor a = kiln::ones({1});
  kiln::Tensor b = kiln::ones({1});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_KilnAutogradStep(benchmark::State& state) {
  kiln::set_num_threads(1);
  const int64_t n = state.range(0);
  kiln::Tensor w = kiln::full({n}, 0.5);
  w.set_requires_grad(true);  // as a trainable variable's value is
  kiln::Tensor x = kiln::full({n}, 2.0);
  for (auto _ : state) {
    kiln::GradientTape tape;
    kiln::Tensor y = kiln::sum(w * x);
    kiln::Tensor g = tape.gradient(y, {w})[0];
    benchmark::DoNotOptimize(g.raw_data());
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_KilnAdd1)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kNanosecond);
BENCHMARK(BM_KilnAutogradStep)
    ->ArgName("n")
    ->Arg(1)
    ->Arg(16)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
