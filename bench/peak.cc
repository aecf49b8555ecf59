// bench/peak.cc -- see peak.h.
#include "peak.h"

#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "machine.h"

namespace kiln_bench {

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

// vdpbf16ps: a[i] += x[2i] * y[2i] + x[2i+1] * y[2i+1] over 16 float32 lanes (4 flops a lane).
__attribute__((target("avx512f,avx512bf16"), noinline)) double avx512_bf16_kernel(
    std::int64_t iters) {
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 ~6e-8
  __m512 a[16];
  for (int k = 0; k < 16; ++k) a[k] = _mm512_set1_ps(0.1f * k);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) a[k] = _mm512_dpbf16_ps(a[k], x, y);
  }
  __m512 s = a[0];
  for (int k = 1; k < 16; ++k) s = _mm512_add_ps(s, a[k]);
  g_sink = _mm512_reduce_add_ps(s);
  return static_cast<double>(iters) * 16.0 /*accumulators*/ * 16.0 /*lanes*/ * 4.0 /*flops*/;
}

const FmaKernel kAvx512 = {"avx512f", 16, 16, avx512_kernel};
const FmaKernel kAvx2 = {"avx2+fma", 12, 8, avx2_kernel};
const FmaKernel kSse2 = {"sse2", 8, 4, sse2_kernel};

const FmaKernel& choose_kernel() {
  const char* isa = cpu_isa();
  const bool has512 = std::strcmp(isa, "avx512f") == 0;
  const bool has2 = has512 || std::strcmp(isa, "avx2+fma") == 0;
  const char* want = std::getenv("KILN_BENCH_FMA_KERNEL");
  if (want == nullptr || *want == '\0') return has512 ? kAvx512 : has2 ? kAvx2 : kSse2;
  const std::string w = want;
  if (w == "avx512f" && has512) return kAvx512;
  if ((w == "avx2+fma" || w == "avx2") && has2) return kAvx2;
  if (w == "sse2") return kSse2;
  std::fprintf(stderr,
               "KILN_BENCH_FMA_KERNEL=%s: unknown or not supported by this CPU (%s, widest ISA "
               "%s); use avx512f, avx2+fma or sse2\n",
               want, cpu_model().c_str(), isa);
  std::exit(2);
}

// Every binary linking bench_peak (an OBJECT library, so this always runs) names the machine
// in its console header and JSON context, beside the figures.
const bool g_context_added = [] {
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("cpu_isa", cpu_isa());
  benchmark::AddCustomContext("fp32_peak_kernel", fma_kernel_description());
  return true;
}();

}  // namespace

const FmaKernel& fma_kernel() {
  static const FmaKernel& k = choose_kernel();
  return k;
}

std::string fma_kernel_description() {
  const FmaKernel& k = fma_kernel();
  return std::string(k.name) + ", " + std::to_string(k.accumulators) + " accumulators x " +
         std::to_string(k.lanes) + " lanes";
}

double fma_peak_kernel(std::int64_t iters) { return fma_kernel().run(iters); }

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

bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return has;
}

double bf16_peak_kernel(std::int64_t iters) { return avx512_bf16_kernel(iters); }

double measure_bf16_peak_gflops(int threads, double seconds, int trials) {
  if (!cpu_has_avx512_bf16()) return 0.0;
  using clock = std::chrono::steady_clock;
  threads = std::max(1, threads);
  std::int64_t iters = 1 << 14;
  for (;;) {
    auto t0 = clock::now();
    bf16_peak_kernel(iters);
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
    { flops[omp_get_thread_num()] = bf16_peak_kernel(iters); }
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / dt * 1e-9);
  }
  return best;
}

double cached_bf16_peak_gflops(int threads) {
  static std::mutex mu;
  static std::map<int, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(threads);
  if (it != cache.end()) return it->second;
  double g = measure_bf16_peak_gflops(threads);
  cache.emplace(threads, g);
  return g;
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
