// Per-instance caching and the conv filter cache (1 thread):
//   BM_UnorderedMapHit         a plain std::unordered_map<uint64_t, int> find (no lock): the floor
//   BM_CachedPerInstanceHit    CachedPerInstance<int>::get on a ready entry (lock, find, LRU touch)
//   BM_CachedPerInstanceHit/64 the same, cycling over 64 live objects
//   BM_ConvForwardBackward/1/B conv2d forward + both gradients at the cnn's second layer shape
//                              ([B, 14, 14, 32] x [3, 3, 32, 64]), the filter reorder cached
//   BM_ConvForwardBackward/0/B the same, the filter reordered on every forward and backward call
//   BM_ConvWideFilter/1, /0    the same at [1, 7, 7, 256] x [3, 3, 256, 256] (2.4 MB of filter,
//                              little activation: the reorder is a large part of the work)
#include <benchmark/benchmark.h>

#include <kiln/cache.h>
#include <kiln/kiln.h>
#include <kiln/nn/variable.h>

#include <unordered_map>
#include <vector>

#include "peak.h"

namespace {

struct Obj {
  kiln::InstanceToken token;
};

void BM_UnorderedMapHit(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<Obj> objs(n);
  std::unordered_map<uint64_t, int> map;
  for (int i = 0; i < n; ++i) map[objs[i].token.id()] = i;
  int i = 0;
  for (auto _ : state) {
    auto it = map.find(objs[i].token.id());
    benchmark::DoNotOptimize(it->second);
    if (++i == n) i = 0;
  }
}

void BM_CachedPerInstanceHit(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<Obj> objs(n);
  kiln::CachedPerInstance<int> cache("bench");
  for (int i = 0; i < n; ++i) cache.get(objs[i].token, [i] { return i; });
  int i = 0;
  for (auto _ : state) {
    int v = cache.get(objs[i].token, [] { return -1; });
    benchmark::DoNotOptimize(v);
    if (++i == n) i = 0;
  }
  state.counters["misses"] = static_cast<double>(cache.stats().misses);
}

void conv_steps(benchmark::State& state, const kiln::Shape& xs, const kiln::Shape& ws) {
  kiln::set_num_threads(1);
  kiln::set_conv_filter_cache_enabled(state.range(0) != 0);
  kiln::Tensor x = kiln::random_uniform(xs, 0, 1, 1);
  kiln::Variable w("bench/conv/kernel", kiln::random_normal(ws, 0, 0.05, 2));
  kiln::Conv2DOptions o;
  o.padding = kiln::Padding::kSame;
  auto step = [&] {
    kiln::GradientTape tape;
    tape.watch(x);
    kiln::Tensor loss = kiln::sum(kiln::conv2d(x, w.value(), o));
    auto g = tape.gradient(loss, {x, w.value()});
    benchmark::DoNotOptimize(g[0].raw_data());
  };
  step();  // primitives created, filter cached
  for (auto _ : state) step();
  kiln::set_conv_filter_cache_enabled(true);
}

void BM_ConvForwardBackward(benchmark::State& state) {
  conv_steps(state, {state.range(1), 14, 14, 32}, {3, 3, 32, 64});
}

void BM_ConvWideFilter(benchmark::State& state) {
  conv_steps(state, {1, 7, 7, 256}, {3, 3, 256, 256});
}

}  // namespace

BENCHMARK(BM_UnorderedMapHit)
    ->Arg(1)
    ->Arg(64)
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kNanosecond);
BENCHMARK(BM_CachedPerInstanceHit)
    ->Arg(1)
    ->Arg(64)
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kNanosecond);
BENCHMARK(BM_ConvForwardBackward)
    ->ArgsProduct({{1, 0}, {1, 8, 64}})
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ConvWideFilter)
    ->Arg(1)
    ->Arg(0)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
