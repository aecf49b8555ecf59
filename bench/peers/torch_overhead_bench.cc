// bench/peers/torch_overhead_bench.cc -- LibTorch (eager, CPU) reference numbers for kiln:
//   BM_TorchAdd1              per-op time of eager `a + b` on 1-element float tensors (1 thread)
//   BM_TorchAutogradStep/n    one tiny autograd step  y = (w*x).sum(); y.backward();  with
//                             w requires_grad, n elements; the grad is reset each step (1 thread)
//   BM_TorchMatmul/M/K/N/t    torch::mm_out into a preallocated C (no allocation in the loop),
//                             counters GFLOPS and peak_fraction (vs the FMA peak at t threads)
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>

#include "matmul_shapes.h"
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
  kiln_bench::set_matmul_counters(state, M, K, N, peak);
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
    ->Apply(kiln_bench::matmul_shapes)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
