// bench/peak.cc -- see peak.h.
#include "peak.h"

#include <benchmark/benchmark.h>
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
