// bench/peak_bench.cc -- the machine's FP32 peak: FMA throughput of the widest vector ISA the CPU
// has, chosen at run time (peak.h: AVX-512 16 accumulators, AVX2+FMA 12, SSE2 mul+add 8), flops
// counted as 2 per FMA lane. The label names the kernel and the CPU.
//   BM_FmaPeak/threads:1  one thread
//   BM_FmaPeak/threads:2  two threads (one OpenMP parallel region, each thread its own loop)
//   BM_Bf16Peak/threads:N the bf16 peak (AVX512_BF16 vdpbf16ps, 4 flops a lane), 1 and 2 threads
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "machine.h"
#include "peak.h"

namespace {

// 2^18 * 512 flop = 134 MFLOP per thread with AVX-512, 50 MFLOP with AVX2.
constexpr std::int64_t kItersPerThread = 1 << 18;

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
  state.counters["accumulators"] = kiln_bench::fma_kernel().accumulators;
  state.counters["lanes"] = kiln_bench::fma_kernel().lanes;
  const std::string label =
      std::string(kiln_bench::fma_kernel().name) + " on " + kiln_bench::cpu_model();
  state.SetLabel(label.c_str());
}

// The bf16 peak (peak.h: vdpbf16ps, 4 flops a lane); skipped without AVX512_BF16.
void BM_Bf16Peak(benchmark::State& state) {
  if (!kiln_bench::cpu_has_avx512_bf16()) {
    state.SkipWithError("this CPU lacks AVX512_BF16");
    return;
  }
  const int threads = static_cast<int>(state.range(0));
  std::vector<double> flops(threads, 0.0);
#pragma omp parallel num_threads(threads)
  { kiln_bench::bf16_peak_kernel(kItersPerThread / 4); }
  double total = 0.0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    { flops[omp_get_thread_num()] = kiln_bench::bf16_peak_kernel(kItersPerThread); }
    for (double f : flops) total += f;
  }
  state.counters["GFLOPS"] = benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  const std::string label = "avx512_bf16 vdpbf16ps on " + kiln_bench::cpu_model();
  state.SetLabel(label.c_str());
}

}  // namespace

BENCHMARK(BM_Bf16Peak)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_FmaPeak)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
