// bench/peak.cc -- see peak.h.
#include "peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

namespace kiln_bench {

namespace {
volatile float g_sink = 0.0f;  // keeps the accumulators observable
}

__attribute__((target("avx512f"), noinline)) double fma_peak_kernel(std::int64_t iters) {
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

double measure_fp32_peak_gflops(int threads, double seconds, int trials) {
  using clock = std::chrono::steady_clock;
  threads = std::max(1, threads);
  // Calibrate the iteration count on one thread (about 1 ms), then scale to `seconds`.
  std::int64_t iters = 1 << 14;
  for (;;) {
    auto t0 = clock::now();
    fma_peak_kernel(iters);
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
    { flops[omp_get_thread_num()] = fma_peak_kernel(iters); }
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / dt * 1e-9);
  }
  return best;
}

double cached_fp32_peak_gflops(int threads) {
  static std::mutex mu;
  static std::map<int, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(threads);
  if (it != cache.end()) return it->second;
  double g = measure_fp32_peak_gflops(threads);
  cache.emplace(threads, g);
  return g;
}

}  // namespace kiln_bench
