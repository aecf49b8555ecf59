// The matmul shapes every matmul benchmark runs (kiln, oneDNN direct, LibTorch), and their
// counters, so the three programs report line-for-line comparable rows.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

namespace kiln_bench {

// Args {M, K, N, threads}: 64^3, 256^3, 1024^3, 2048^3 and the mlp's 64x784x256, on 1 and 2
// threads.
inline void matmul_shapes(benchmark::internal::Benchmark* b) {
  const std::int64_t shapes[][3] = {
      {64, 64, 64}, {256, 256, 256}, {1024, 1024, 1024}, {2048, 2048, 2048}, {64, 784, 256}};
  b->ArgNames({"M", "K", "N", "threads"});
  for (int threads : {1, 2})
    for (const auto& s : shapes) b->Args({s[0], s[1], s[2], threads});
}

// GFLOPS (2*M*K*N per iteration over wall time), peak_fraction (GFLOPS / `peak`, a rate of
// achieved/peak per second) and peak_GFLOPS.
inline void set_matmul_counters(benchmark::State& state, std::int64_t m, std::int64_t k,
                                std::int64_t n, double peak) {
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_fraction"] =
      benchmark::Counter(flops * 1e-9 / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_GFLOPS"] = peak;
}

}  // namespace kiln_bench
