// The machine's measured limits: FP32 FMA throughput and memory read bandwidth. The
// profiler's floor of a step is max(FLOPs / peak, bytes / bandwidth); bench/peak.cc (the
// benchmarks' peak_fraction counters) runs the same kernels.
//
// Self-contained C++17 with no kiln includes, so the benchmark programs that do not link kiln
// (bench/peers, peak_bench_portable) compile this file too. Each FMA kernel is compiled for
// its own ISA (target attribute) and only called on a CPU that has it, so no -m flags are
// needed and the code runs on any x86-64.
#pragma once

#include <cstdint>

namespace kiln::peak {

// One FP32 peak kernel. `run(iters)` runs its loop `iters` times on the calling thread and
// returns the floating-point operations done (2 per FMA lane, or per mul + add lane).
struct FmaKernel {
  const char* name;  // "avx512f", "avx2+fma", "sse2"
  int accumulators;  // independent dependency chains
  int lanes;         // floats per vector register
  double (*run)(std::int64_t iters);
};

extern const FmaKernel kAvx512;  // 16 accumulators x 16 lanes
extern const FmaKernel kAvx2;    // 12 accumulators x 8 lanes (AVX2 has 16 vector registers)
extern const FmaKernel kSse2;    // 8 accumulators x 4 lanes, multiply + add

// The widest kernel this CPU and OS support (CPUID via the compiler's cpu-supports checks).
const FmaKernel& widest_fma_kernel();

// Runs `kernel` on `threads` threads at once (one OpenMP parallel region, each thread its own
// loop) for about `seconds` of wall time, `trials` times, and returns the best GFLOP/s seen.
double measure_gflops(const FmaKernel& kernel, int threads, double seconds = 0.05, int trials = 3);

// Streams a 64 MiB buffer (larger than the last-level caches of the machines kiln runs on) on
// `threads` threads, `trials` times, and returns the best read bandwidth seen in GB/s (1e9).
double measure_read_gbs(int threads, int trials = 3);

}  // namespace kiln::peak
