// What a kiln::function cache hit costs over running the same ops eagerly (1 thread):
//   BM_EagerSmallMlp      relu(x w1 + b1) w2 + b2 on [1, 16] x [16, 16], eager
//   BM_FunctionHitSmallMlp  the same as a traced Function, every call a cache hit
// The difference is the hit's overhead: signature, lookup, and the graph walk (the kernels
// and the dispatcher are the same in both).
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>

#include "peak.h"

namespace {

struct SmallMlp {
  kiln::Tensor w1 = kiln::random_normal({16, 16}, 0, 0.1, 1);
  kiln::Tensor b1 = kiln::zeros({16});
  kiln::Tensor w2 = kiln::random_normal({16, 16}, 0, 0.1, 2);
  kiln::Tensor b2 = kiln::zeros({16});
  kiln::Tensor operator()(const kiln::Tensor& x) const {
    return kiln::matmul(kiln::relu(kiln::matmul(x, w1) + b1), w2) + b2;
  }
};

void BM_EagerSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::Tensor x = kiln::ones({1, 16});
  for (auto _ : state) {
    kiln::Tensor y = mlp(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void BM_FunctionHitSmallMlp(benchmark::State& state) {
  kiln::set_num_threads(1);
  SmallMlp mlp;
  kiln::Function f = kiln::function([&](const kiln::Tensor& x) { return mlp(x); });
  kiln::Tensor x = kiln::ones({1, 16});
  f(x);  // trace
  for (auto _ : state) {
    kiln::Tensor y = f(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["traces"] = static_cast<double>(f.cache_info().traces);
}

}  // namespace

BENCHMARK(BM_EagerSmallMlp)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FunctionHitSmallMlp)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
