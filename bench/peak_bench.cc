// bench/peak_bench.cc -- the machine's FP32 peak: AVX-512 FMA throughput, 16 independent
// accumulators per thread, flops counted as 2 per FMA lane.
//   BM_FmaPeak/threads:1  one thread
//   BM_FmaPeak/threads:2  two threads (one OpenMP parallel region, each thread its own loop)
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <vector>

#include "peak.h"

namespace {

constexpr std::int64_t kItersPerThread = 1 << 18;  // 2^18 * 512 flop = 134 MFLOP per thread

void BM_FmaPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  std::vector<double> flops(threads, 0.0);
  // Warm up the OpenMP team (and the vector unit) outside the timed loop.
#pragma omp parallel num_threads(threads)
  { kiln_bench::fma_peak_kernel(kItersPerThread / 4); }
  double total = 0.0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    { flops[omp_get_thread_num()] = kiln_bench::fma_peak_kernel(kItersPerThread); }
    for (double f : flops) total += f;
  }
  state.counters["GFLOPS"] = benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
}

}  // namespace

BENCHMARK(BM_FmaPeak)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
