// bench/peers/torch_overhead_bench.cc -- LibTorch (eager, CPU) reference numbers for kiln:
//   BM_TorchAdd1              per-op time of eager `a + b` on 1-element float tensors (1 thread)
//   BM_TorchAutogradStep/n    one tiny autograd step  y = (w*x).sum(); y.backward();  with
//                             w requires_grad, n elements; the grad is reset each step (1 thread)
//   BM_TorchMatmul/M/K/N/t    torch::mm_out into a preallocated C (no allocation in the loop),
//                             counters GFLOPS and peak_fraction (vs the FMA peak at t threads)
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>

#include "peak.h"

namespace {

void BM_TorchAdd1(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::ones({1});
  torch::Tensor b = torch::ones({1});
  for (auto _ : state) {
    torch::Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TorchAutogradStep(benchmark::State& state) {
  torch::set_num_threads(1);
  const std::int64_t n = state.range(0);
  torch::Tensor w = torch::full({n}, 0.5f, torch::requires_grad());
  torch::Tensor x = torch::full({n}, 2.0f);
  for (auto _ : state) {
    w.mutable_grad().reset();
    torch::Tensor y = (w * x).sum();
    y.backward();
    benchmark::DoNotOptimize(w.grad().data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TorchMatmul(benchmark::State& state) {
  const std::int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  torch::set_num_threads(threads);
  const double peak = kiln_bench::cached_fp32_peak_gflops(threads);
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  torch::Tensor a = torch::rand({M, K}) * 2 - 1;
  torch::Tensor b = torch::rand({K, N}) * 2 - 1;
  torch::Tensor c = torch::empty({M, N});
  for (int i = 0; i < 2; ++i) torch::mm_out(c, a, b);
  for (auto _ : state) {
    torch::mm_out(c, a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  const double flops =
      2.0 * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_fraction"] =
      benchmark::Counter(flops * 1e-9 / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_GFLOPS"] = peak;
}

void Shapes(benchmark::internal::Benchmark* b) {
  const std::int64_t shapes[][3] = {
      {64, 64, 64}, {256, 256, 256}, {1024, 1024, 1024}, {2048, 2048, 2048}, {64, 784, 256}};
  for (int threads : {1, 2})
    for (const auto& s : shapes) b->Args({s[0], s[1], s[2], threads});
}

}  // namespace

BENCHMARK(BM_TorchAdd1)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kNanosecond);
BENCHMARK(BM_TorchAutogradStep)
    ->ArgName("n")
    ->Arg(1)
    ->Arg(16)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TorchMatmul)
    ->ArgNames({"M", "K", "N", "threads"})
    ->Apply(Shapes)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
