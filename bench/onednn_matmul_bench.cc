// bench/onednn_matmul_bench.cc -- oneDNN's f32 matmul primitive called directly: the ceiling a
// "fast" matmul kernel in kiln can reach on this machine.
//
// C[M,N] = A[M,K] * B[K,N], all row-major plain (format_tag::ab). The primitive is created once per
// benchmark (after omp_set_num_threads, since oneDNN sizes its work split at creation) and reused
// in the timed loop. Counters:
//   GFLOPS         2*M*K*N per iteration, over wall time
//   peak_fraction  GFLOPS / measured FMA peak (peak.h) at the same thread count, same process
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"
#include "matmul_shapes.h"
#include "peak.h"

namespace {

void fill_random(std::vector<float>& v, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : v) x = dist(gen);
}

void BM_OneDNNMatmul(benchmark::State& state) {
  const dnnl::memory::dim M = state.range(0), K = state.range(1), N = state.range(2);
  const int threads = static_cast<int>(state.range(3));

  omp_set_num_threads(threads);
  const double peak = kiln_bench::cached_fp32_peak_gflops(threads);

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::memory::desc a_md({M, K}, dt::f32, tag::ab);
  dnnl::memory::desc b_md({K, N}, dt::f32, tag::ab);
  dnnl::memory::desc c_md({M, N}, dt::f32, tag::ab);

  std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N)),
      c(static_cast<size_t>(M * N), 0.0f);
  fill_random(a, 1);
  fill_random(b, 2);
  dnnl::memory a_mem(a_md, eng, a.data()), b_mem(b_md, eng, b.data()), c_mem(c_md, eng, c.data());

  dnnl::matmul::desc desc(a_md, b_md, c_md);
  dnnl::matmul::primitive_desc pd(desc, eng);
  dnnl::matmul prim(pd);
  const std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};

  // Warm-up: JIT, first-touch of C, the OpenMP team.
  for (int i = 0; i < 2; ++i) prim.execute(strm, args);
  strm.wait();

  for (auto _ : state) {
    prim.execute(strm, args);
    strm.wait();
  }
  benchmark::DoNotOptimize(c.data());

  kiln_bench::set_matmul_counters(state, M, K, N, peak);
  state.SetLabel(pd.impl_info_str());
}

}  // namespace

BENCHMARK(BM_OneDNNMatmul)
    ->Apply(kiln_bench::matmul_shapes)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
