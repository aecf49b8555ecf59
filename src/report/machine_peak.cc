// See machine_peak.h.
#include "report/machine_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kiln::peak {

namespace {
volatile float g_sink = 0.0f;  // keeps the accumulators observable

// Each kernel is compiled for its own ISA (target attribute) and only called after CPUID said
// the CPU has it, so this file needs no -m flags and the binary runs on any x86-64.

__attribute__((target("avx512f"), noinline)) double avx512_kernel(std::int64_t iters) {
  // 16 independent chains: enough to cover FMA latency (4 cycles) times the number of FMA pipes.
  const __m512 b = _mm512_set1_ps(0.999999f);
  const __m512 c = _mm512_set1_ps(1e-6f);
  __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f),
         a3 = _mm512_set1_ps(0.13f), a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f),
         a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f), a8 = _mm512_set1_ps(0.18f),
         a9 = _mm512_set1_ps(0.19f), a10 = _mm512_set1_ps(0.20f), a11 = _mm512_set1_ps(0.21f),
         a12 = _mm512_set1_ps(0.22f), a13 = _mm512_set1_ps(0.23f), a14 = _mm512_set1_ps(0.24f),
         a15 = _mm512_set1_ps(0.25f);
  for (std::int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, b, c);
    a1 = _mm512_fmadd_ps(a1, b, c);
    a2 = _mm512_fmadd_ps(a2, b, c);
    a3 = _mm512_fmadd_ps(a3, b, c);
    a4 = _mm512_fmadd_ps(a4, b, c);
    a5 = _mm512_fmadd_ps(a5, b, c);
    a6 = _mm512_fmadd_ps(a6, b, c);
    a7 = _mm512_fmadd_ps(a7, b, c);
    a8 = _mm512_fmadd_ps(a8, b, c);
    a9 = _mm512_fmadd_ps(a9, b, c);
    a10 = _mm512_fmadd_ps(a10, b, c);
    a11 = _mm512_fmadd_ps(a11, b, c);
    a12 = _mm512_fmadd_ps(a12, b, c);
    a13 = _mm512_fmadd_ps(a13, b, c);
    a14 = _mm512_fmadd_ps(a14, b, c);
    a15 = _mm512_fmadd_ps(a15, b, c);
  }
  __m512 s =
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                  _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
                    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                  _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
  g_sink = _mm512_reduce_add_ps(s);
  return static_cast<double>(iters) * 16.0 /*accumulators*/ * 16.0 /*lanes*/ * 2.0 /*flops*/;
}

__attribute__((target("avx2,fma"), noinline)) double avx2_kernel(std::int64_t iters) {
  // 12 chains of 16 ymm registers (2 hold b and c): covers FMA latency (4-5 cycles) times 2
  // FMA pipes on Haswell..Zen 3, without spilling accumulators to memory.
  const __m256 b = _mm256_set1_ps(0.999999f);
  const __m256 c = _mm256_set1_ps(1e-6f);
  __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f),
         a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f),
         a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f), a8 = _mm256_set1_ps(0.18f),
         a9 = _mm256_set1_ps(0.19f), a10 = _mm256_set1_ps(0.20f), a11 = _mm256_set1_ps(0.21f);
  for (std::int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, b, c);
    a1 = _mm256_fmadd_ps(a1, b, c);
    a2 = _mm256_fmadd_ps(a2, b, c);
    a3 = _mm256_fmadd_ps(a3, b, c);
    a4 = _mm256_fmadd_ps(a4, b, c);
    a5 = _mm256_fmadd_ps(a5, b, c);
    a6 = _mm256_fmadd_ps(a6, b, c);
    a7 = _mm256_fmadd_ps(a7, b, c);
    a8 = _mm256_fmadd_ps(a8, b, c);
    a9 = _mm256_fmadd_ps(a9, b, c);
    a10 = _mm256_fmadd_ps(a10, b, c);
    a11 = _mm256_fmadd_ps(a11, b, c);
  }
  __m256 s =
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                  _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
                    _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  g_sink = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
  return static_cast<double>(iters) * 12.0 /*accumulators*/ * 8.0 /*lanes*/ * 2.0 /*flops*/;
}

// Baseline x86-64 has no FMA: a multiply and an add per lane, counted as 2 flops.
__attribute__((noinline)) double sse2_kernel(std::int64_t iters) {
  const __m128 b = _mm_set1_ps(0.999999f);
  const __m128 c = _mm_set1_ps(1e-6f);
  __m128 a0 = _mm_set1_ps(0.10f), a1 = _mm_set1_ps(0.11f), a2 = _mm_set1_ps(0.12f),
         a3 = _mm_set1_ps(0.13f), a4 = _mm_set1_ps(0.14f), a5 = _mm_set1_ps(0.15f),
         a6 = _mm_set1_ps(0.16f), a7 = _mm_set1_ps(0.17f);
  for (std::int64_t i = 0; i < iters; ++i) {
    a0 = _mm_add_ps(_mm_mul_ps(a0, b), c);
    a1 = _mm_add_ps(_mm_mul_ps(a1, b), c);
    a2 = _mm_add_ps(_mm_mul_ps(a2, b), c);
    a3 = _mm_add_ps(_mm_mul_ps(a3, b), c);
    a4 = _mm_add_ps(_mm_mul_ps(a4, b), c);
    a5 = _mm_add_ps(_mm_mul_ps(a5, b), c);
    a6 = _mm_add_ps(_mm_mul_ps(a6, b), c);
    a7 = _mm_add_ps(_mm_mul_ps(a7, b), c);
  }
  __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)),
                        _mm_add_ps(_mm_add_ps(a4, a5), _mm_add_ps(a6, a7)));
  float lanes[4];
  _mm_storeu_ps(lanes, s);
  g_sink = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  return static_cast<double>(iters) * 8.0 /*accumulators*/ * 4.0 /*lanes*/ * 2.0 /*flops*/;
}

}  // namespace

const FmaKernel kAvx512 = {"avx512f", 16, 16, avx512_kernel};
const FmaKernel kAvx2 = {"avx2+fma", 12, 8, avx2_kernel};
const FmaKernel kSse2 = {"sse2", 8, 4, sse2_kernel};

const FmaKernel& widest_fma_kernel() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
  return kSse2;
}

double measure_gflops(const FmaKernel& kernel, int threads, double seconds, int trials) {
  using clock = std::chrono::steady_clock;
  threads = std::max(1, threads);
  // Calibrate the iteration count on one thread (about 1 ms), then scale to `seconds`.
  std::int64_t iters = 1 << 14;
  for (;;) {
    auto t0 = clock::now();
    kernel.run(iters);
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (dt > 1e-3 || iters > (std::int64_t{1} << 34)) {
      iters = std::max<std::int64_t>(1024, static_cast<std::int64_t>(iters * seconds / dt));
      break;
    }
    iters *= 4;
  }
  double best = 0.0;
  for (int t = 0; t < std::max(1, trials); ++t) {
    std::vector<double> flops(threads, 0.0);
    auto t0 = clock::now();
#pragma omp parallel num_threads(threads)
    { flops[omp_get_thread_num()] = kernel.run(iters); }
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / dt * 1e-9);
  }
  return best;
}

double measure_read_gbs(int threads, int trials) {
  using clock = std::chrono::steady_clock;
  threads = std::max(1, threads);
  constexpr std::size_t kWords = (std::size_t{64} << 20) / sizeof(std::uint64_t);
  std::vector<std::uint64_t> buf(kWords);
  for (std::size_t i = 0; i < kWords; ++i) buf[i] = i;  // touched: no page faults while timed
  volatile std::uint64_t sink = 0;
  double best = 0.0;
  for (int t = 0; t < std::max(1, trials); ++t) {
    std::uint64_t total = 0;
    auto t0 = clock::now();
#pragma omp parallel num_threads(threads) reduction(^ : total)
    {
      const std::size_t n = omp_get_num_threads(), k = omp_get_thread_num();
      const std::size_t begin = kWords * k / n, end = kWords * (k + 1) / n;
      // Four independent chains of xor: vectorized, and never the limit before memory is.
      std::uint64_t a = 0, b = 0, c = 0, d = 0;
      std::size_t i = begin;
      for (; i + 4 <= end; i += 4) {
        a ^= buf[i];
        b ^= buf[i + 1];
        c ^= buf[i + 2];
        d ^= buf[i + 3];
      }
      for (; i < end; ++i) a ^= buf[i];
      total ^= a ^ b ^ c ^ d;
    }
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    sink = sink ^ total;
    best = std::max(best, kWords * sizeof(std::uint64_t) / dt * 1e-9);
  }
  return best;
}

}  // namespace kiln::peak
