// bench/peak.h -- measured FP32 peak of this machine (AVX-512 FMA throughput).
//
// Used by peak_bench and by every matmul benchmark that reports a `peak_fraction` counter, so
// the fraction is computed against a peak measured in the same process, at the same thread count.
#pragma once

#include <algorithm>
#include <vector>

#include <cstdint>

namespace kiln_bench {

// Extra Google Benchmark aggregates: repetitions of small work on these 2-core machines flip
// between a fast and a slow level, so reports give min / median / max, not just mean.
inline double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
inline double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// Runs the 16-accumulator AVX-512 FMA loop for `iters` iterations on the calling thread and
// returns the number of floating-point operations performed (2 per FMA lane).
double fma_peak_kernel(std::int64_t iters);

// Runs the FMA loop on `threads` threads at once (one OpenMP parallel region, each thread its own
// loop) for about `seconds` of wall time, `trials` times, and returns the best GFLOP/s seen.
double measure_fp32_peak_gflops(int threads, double seconds = 0.05, int trials = 3);

// As measure_fp32_peak_gflops(threads), measured once per thread count per process and cached.
double cached_fp32_peak_gflops(int threads);

}  // namespace kiln_bench
