// kiln's eager bookkeeping cost, beside bench/peers/torch_overhead_bench.cc:
//   BM_KilnAdd1            eager `a + b` on 1-element float tensors (1 thread)
//   BM_KilnAutogradStep/n  one tiny step: tape; y = sum(w * x); tape.gradient(y, {w}) (1 thread)
//   BM_ShuffledBatch       the next batch of 64 from a shuffled 60000 x 28 x 28 x 1 float data
//                          set (Fashion-MNIST's training set, 188 MB): what fit() waits for
//                          between steps without prefetch
#include <benchmark/benchmark.h>

#include <kiln/data.h>
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

void BM_ShuffledBatch(benchmark::State& state) {
  const kiln::Tensor images = kiln::random_uniform({60000, 28, 28, 1}, 0.0, 1.0, 1);
  const kiln::Tensor labels = kiln::zeros({60000}, kiln::DType::kInt32);
  const kiln::Dataset data = kiln::Dataset(images, labels).shuffle(0).batch(64);
  int64_t epoch = 0;
  kiln::DatasetIterator it = data.begin_epoch(epoch);
  for (auto _ : state) {
    std::optional<kiln::Batch> b = it.next();
    if (!b) {
      state.PauseTiming();
      it = data.begin_epoch(++epoch);
      state.ResumeTiming();
      b = it.next();
    }
    benchmark::DoNotOptimize(b->x.raw_data());
  }
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
BENCHMARK(BM_ShuffledBatch)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
