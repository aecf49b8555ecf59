// bench/peak.h -- measured FP32 peak of this machine (FMA throughput of the widest vector ISA).
//
// Used by peak_bench and by every matmul benchmark that reports a `peak_fraction` counter, so
// the fraction is computed against a peak measured in the same process, at the same thread count.
// The kernel is chosen at run time from CPUID, so the binaries run on any x86-64: AVX-512
// (16 accumulators) where the CPU has it, else AVX2+FMA (12 accumulators: AVX2 has only 16
// vector registers), else SSE2 (mul + add). Linking bench_peak also adds "cpu_model",
// "cpu_isa" and "fp32_peak_kernel" to the Google Benchmark context (console header, JSON).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include <cstdint>

#include "report/machine_peak.h"

namespace kiln_bench {

// Extra Google Benchmark aggregates: repetitions of small work on these 2-core machines flip
// between a fast and a slow level, so reports give min / median / max, not just mean.
inline double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
inline double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// One FP32 peak kernel (src/report/machine_peak.h: the library's floors use the same ones).
using FmaKernel = kiln::peak::FmaKernel;

// The kernel this process uses: the widest the CPU supports, unless the environment variable
// KILN_BENCH_FMA_KERNEL names a narrower supported one ("avx2+fma" or "avx2", "sse2") to
// compare kernels on one machine. An unknown or unsupported name prints an error and exits
// with status 2. Chosen once; thread-safe.
const FmaKernel& fma_kernel();

// e.g. "avx2+fma, 12 accumulators x 8 lanes".
std::string fma_kernel_description();

// fma_kernel().run(iters).
double fma_peak_kernel(std::int64_t iters);

// Runs the FMA loop on `threads` threads at once (one OpenMP parallel region, each thread its own
// loop) for about `seconds` of wall time, `trials` times, and returns the best GFLOP/s seen.
double measure_fp32_peak_gflops(int threads, double seconds = 0.05, int trials = 3);

// As measure_fp32_peak_gflops(threads), measured once per thread count per process and cached.
double cached_fp32_peak_gflops(int threads);

// The bf16 peak: throughput of AVX512_BF16's dot product (vdpbf16ps: 16 lanes, each 2 bf16
// products summed into a float32 accumulator = 4 flops per lane), 16 accumulators. 0 when the
// CPU lacks AVX512_BF16 (cpu_has_avx512_bf16() false). bf16_peak_kernel(iters) returns flops.
bool cpu_has_avx512_bf16();
double bf16_peak_kernel(std::int64_t iters);
double measure_bf16_peak_gflops(int threads, double seconds = 0.05, int trials = 3);
double cached_bf16_peak_gflops(int threads);

}  // namespace kiln_bench
