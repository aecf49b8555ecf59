// bench/peak.cc -- see peak.h.
#include "peak.h"

#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "machine.h"

namespace kiln_bench {

namespace {
using kiln::peak::kAvx2;
using kiln::peak::kAvx512;
using kiln::peak::kSse2;
volatile float g_sink = 0.0f;  // keeps the accumulators observable

// vdpbf16ps: a[i] += x[2i] * y[2i] + x[2i+1] * y[2i+1] over 16 float32 lanes (4 flops a lane).
// Compiled for its ISA (target attribute) and only called after CPUID said the CPU has it.
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
// 4 flops a lane: counted as 2 "lanes" of FMA in FmaKernel's terms.
const kiln::peak::FmaKernel kAvx512Bf16 = {"avx512bf16", 16, 32, avx512_bf16_kernel};

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
  return kiln::peak::measure_gflops(fma_kernel(), threads, seconds, trials);
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
  return kiln::peak::measure_gflops(kAvx512Bf16, threads, seconds, trials);
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
