// bench/kiln_matmul_bench.cc -- kiln::matmul (float32) at the shapes of onednn_matmul_bench.cc,
// so the two can be compared line by line (target: >= 0.95x of oneDNN called directly).
//
// C[M,N] = A[M,K] * B[K,N]. The kiln thread count is set with kiln::set_num_threads; kiln then
// picks 1 thread itself for small problems. Counters:
//   GFLOPS         2*M*K*N per iteration, over wall time
//   peak_fraction  GFLOPS / measured FMA peak (peak.h) at the same thread count, same process
#include <benchmark/benchmark.h>

#include <cstdint>

#include "kiln/ops.h"
#include "kiln/tensor.h"
#include "kiln/threading.h"
#include "matmul_shapes.h"
#include "peak.h"

namespace {

void BM_KilnMatmul(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  kiln::set_num_threads(threads);
  const double peak = kiln_bench::cached_fp32_peak_gflops(threads);

  kiln::Tensor a = kiln::random_uniform({M, K}, -1, 1, 1);
  kiln::Tensor b = kiln::random_uniform({K, N}, -1, 1, 2);
  // Warm-up: primitive creation, JIT, the output buffer's size class, the OpenMP team.
  for (int i = 0; i < 2; ++i) benchmark::DoNotOptimize(kiln::matmul(a, b).raw_data());

  for (auto _ : state) {
    kiln::Tensor c = kiln::matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }

  kiln_bench::set_matmul_counters(state, M, K, N, peak);
}

}  // namespace

BENCHMARK(BM_KilnMatmul)
    ->Apply(kiln_bench::matmul_shapes)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
