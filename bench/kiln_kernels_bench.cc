// kiln's own vectorized loops (not oneDNN) on large float32 tensors, 1 thread: what a build
// without -march=native (KILN_NATIVE=OFF, baseline x86-64 SSE2) costs against a native one.
//   BM_Unary/<op>      relu, exp, tanh, sigmoid, gelu on 1M elements
//   BM_Add             a + b, both [1024, 1024]
//   BM_AddRow          a + b, a [1024, 1024], b [1024] (broadcast along rows)
//   BM_Sum             sum over all 1M elements
//   BM_Softmax         softmax over rows of [1024, 1000]
//   BM_MaxPool/AvgPool 2x2 pooling of [64, 28, 28, 32] (the cnn's first pool)
//   BM_FusedChain/<c>  an elementwise chain traced by kiln::function, so one fused_elementwise
//                      runs it: 0 relu(x * 2 + y) on [1024, 1024]; 1 batch norm at inference,
//                      (x - m) / s * g + b with [16] rows over [64, 28, 28, 16]; 2 exp, tanh,
//                      sigmoid, sqrt, abs, log, maximum, minimum on 256K elements
// Counter: GB/s of input read plus output written.
#include <benchmark/benchmark.h>

#include <kiln/function.h>
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

// The traced function of chain c, its inputs and the bytes it reads and writes.
kiln::Function fused_chain(int c, std::vector<kiln::Tensor>& in, double& bytes) {
  using V = std::vector<kiln::Tensor>;
  if (c == 0) {
    in = {input({1024, 1024}), input({1024, 1024})};
    bytes = 12.0 * kN;
    return kiln::function([](const V& a, bool) { return V{kiln::relu(a[0] * 2.0 + a[1])}; });
  }
  if (c == 1) {
    const kiln::Shape row{16};
    in = {input({64, 28, 28, 16}), input(row), kiln::random_uniform(row, 0.5, 2.0, 2), input(row),
          input(row)};
    bytes = 8.0 * 64 * 28 * 28 * 16;
    return kiln::function([](const V& a, bool) { return V{(a[0] - a[1]) / a[2] * a[3] + a[4]}; });
  }
  in = {kiln::random_uniform({1 << 18}, 0.1, 2.0, 1), kiln::random_uniform({1 << 18}, 0.1, 2.0, 2)};
  bytes = 12.0 * (1 << 18);
  return kiln::function([](const V& a, bool) {
    const kiln::Tensor &x = a[0], &y = a[1];
    kiln::Tensor p = kiln::tanh(kiln::exp(x * 0.5)) * kiln::sigmoid(y) + kiln::sqrt(kiln::abs(x));
    return V{kiln::minimum(kiln::maximum(p, y), x) - kiln::log(y)};
  });
}

void BM_FusedChain(benchmark::State& state) {
  kiln::set_num_threads(1);
  const int c = static_cast<int>(state.range(0));
  const char* names[] = {"relu(x*2+y)", "batch norm rows", "transcendental"};
  std::vector<kiln::Tensor> in;
  double bytes = 0;
  kiln::Function f = fused_chain(c, in, bytes);
  f(in);  // trace outside the timing
  for (auto _ : state) {
    std::vector<kiln::Tensor> y = f(in);
    benchmark::DoNotOptimize(y[0].raw_data());
  }
  state.SetLabel(names[c]);
  set_bytes(state, bytes);
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
KILN_KERNEL_BENCH(BM_FusedChain)->ArgName("chain")->DenseRange(0, 2);

BENCHMARK_MAIN();
