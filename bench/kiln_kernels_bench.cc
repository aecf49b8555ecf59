// kiln's own vectorized loops (not oneDNN) on large float32 tensors, 1 thread: what a build
// without -march=native (KILN_NATIVE=OFF, baseline x86-64 SSE2) costs against a native one.
//   BM_Unary/<op>      relu, exp, tanh, sigmoid, gelu on 1M elements
//   BM_Add             a + b, both [1024, 1024]
//   BM_AddRow          a + b, a [1024, 1024], b [1024] (broadcast along rows)
//   BM_Sum             sum over all 1M elements
//   BM_Softmax         softmax over rows of [1024, 1000]
//   BM_MaxPool/AvgPool 2x2 pooling of [64, 28, 28, 32] (the cnn's first pool)
// Counter: GB/s of input read plus output written.
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>

#include "peak.h"

namespace {

constexpr int64_t kN = 1 << 20;

kiln::Tensor input(const kiln::Shape& s) { return kiln::random_normal(s, 0.0, 1.0, 1); }

void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GBps"] =
      benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Unary(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor x = input({kN});
  const int op = static_cast<int>(state.range(0));
  const char* names[] = {"relu", "exp", "tanh", "sigmoid", "gelu"};
  for (auto _ : state) {
    kiln::Tensor y = op == 0   ? kiln::relu(x)
                     : op == 1 ? kiln::exp(x)
                     : op == 2 ? kiln::tanh(x)
                     : op == 3 ? kiln::sigmoid(x)
                               : kiln::gelu(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.SetLabel(names[op]);
  set_bytes(state, 8.0 * kN);
}

void BM_Add(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor a = input({1024, 1024}), b = input({1024, 1024});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_bytes(state, 12.0 * kN);
}

void BM_AddRow(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor a = input({1024, 1024}), b = input({1024});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_bytes(state, 8.0 * kN);
}

void BM_Sum(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor x = input({kN});
  for (auto _ : state) {
    kiln::Tensor s = kiln::sum(x);
    benchmark::DoNotOptimize(s.raw_data());
  }
  set_bytes(state, 4.0 * kN);
}

void BM_Softmax(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor x = input({1024, 1000});
  for (auto _ : state) {
    kiln::Tensor y = kiln::softmax(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, 8.0 * 1024 * 1000);
}

void BM_MaxPool(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor x = input({64, 28, 28, 32});
  for (auto _ : state) {
    kiln::Tensor y = kiln::max_pool2d(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, 4.0 * 64 * 28 * 28 * 32 * 1.25);
}

void BM_AvgPool(benchmark::State& state) {
  kiln::set_num_threads(1);
  kiln::Tensor x = input({64, 28, 28, 32});
  for (auto _ : state) {
    kiln::Tensor y = kiln::avg_pool2d(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, 4.0 * 64 * 28 * 28 * 32 * 1.25);
}

}  // namespace

#define KILN_KERNEL_BENCH(fn)                        \
  BENCHMARK(fn)                                      \
      ->UseRealTime()                                \
      ->ComputeStatistics("min", kiln_bench::min_of) \
      ->ComputeStatistics("max", kiln_bench::max_of) \
      ->Unit(benchmark::kMicrosecond)

KILN_KERNEL_BENCH(BM_Unary)->ArgName("op")->DenseRange(0, 4);
KILN_KERNEL_BENCH(BM_Add);
KILN_KERNEL_BENCH(BM_AddRow);
KILN_KERNEL_BENCH(BM_Sum);
KILN_KERNEL_BENCH(BM_Softmax);
KILN_KERNEL_BENCH(BM_MaxPool);
KILN_KERNEL_BENCH(BM_AvgPool);

BENCHMARK_MAIN();
