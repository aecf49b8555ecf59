// bf16 mixed precision (the mixed_bfloat16 dtype policy) against float32, both in graph mode:
//   BM_TrainStep/model:M/bf16:B/threads:T  one traced Adam step at batch 64 (forward,
//                                gradients, update); counters: floor_ms = training FLOPs / the
//                                peak measured in this run for that precision (bf16:
//                                vdpbf16ps, fp32: FMA) at T threads, x_floor = time / floor
//   BM_Epoch/model:M/bf16:B/threads:T  one fit() epoch on Fashion-MNIST (938 steps of 64), graph
//                                mode, a fresh model each time; counter val_accuracy
// T = 1 as well as 2: on a loaded machine each OpenMP region may wait milliseconds for its
// second thread, which then dominates 2-thread times whatever the arithmetic costs.
// model 0 = mlp, 1 = cnn. Run interleaved with repetitions (the machine is shared; compare
// ratios of medians):
//   kiln_bf16_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//                   --benchmark_format=json
// Accuracy over seeds: kiln_train_bench --graph 1 --precision bf16|fp32 --seed S.
#include <benchmark/benchmark.h>

#include <memory>

#include <kiln/data.h>
#include <kiln/dtype_policy.h>
#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "peak.h"
#include "train_step.h"

namespace {

using kiln_bench::train_flops;
using Step = kiln_bench::TrainStep;

// Sets the policy for a scope (ValueError, naming the missing feature, without bf16).
struct PolicyScope {
  explicit PolicyScope(bool bf16) { kiln::set_dtype_policy(bf16 ? "mixed_bfloat16" : "float32"); }
  ~PolicyScope() { kiln::set_dtype_policy("float32"); }
};

bool skip_without_bf16(benchmark::State& state, bool bf16) {
  if (!bf16 || kiln::bf16_unsupported_reason().empty()) return false;
  state.SkipWithError(kiln::bf16_unsupported_reason().c_str());
  return true;
}

void BM_TrainStep(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, bf16 = state.range(1) == 1;
  const int threads = static_cast<int>(state.range(2));
  if (skip_without_bf16(state, bf16)) return;
  kiln::set_num_threads(threads);
  PolicyScope policy(bf16);
  Step step(cnn);
  kiln::Function f = step.traced();
  std::vector<kiln::Tensor> in = kiln_bench::train_batch();
  f(in, true);  // trace outside the timing
  for (auto _ : state) {
    std::vector<kiln::Tensor> out = f(in, true);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  const double peak = bf16 ? kiln_bench::cached_bf16_peak_gflops(threads)
                           : kiln_bench::cached_fp32_peak_gflops(threads);
  const double floor_ms = train_flops(cnn) / (peak * 1e9) * 1e3;
  state.counters["floor_ms"] = floor_ms;
  state.counters["peak_gflops"] = peak;
  state.counters["x_floor"] = benchmark::Counter(
      floor_ms * 1e-3, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const kiln::FashionMnist& data() {
  static const kiln::FashionMnist d = kiln::load_fashion_mnist("");
  return d;
}

void BM_Epoch(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, bf16 = state.range(1) == 1;
  const int threads = static_cast<int>(state.range(2));
  if (skip_without_bf16(state, bf16)) return;
  kiln::set_num_threads(threads);
  PolicyScope policy(bf16);
  const kiln::FashionMnist& d = data();
  double accuracy = 0;
  for (auto _ : state) {
    state.PauseTiming();
    kiln::set_global_seed(0);
    auto model = cnn ? kiln::make_cnn() : kiln::make_mlp();
    kiln::Adam opt(1e-3);
    kiln::SparseCategoricalCrossentropy loss;
    kiln::Dataset train = kiln::Dataset(d.train_images, d.train_labels).shuffle(0).batch(64);
    kiln::FitOptions o;
    o.verbose = 0;
    o.graph = true;
    state.ResumeTiming();
    kiln::fit(*model, opt, loss, train, o);
    state.PauseTiming();
    accuracy = kiln::evaluate(*model, loss, kiln::Dataset(d.test_images, d.test_labels).batch(500),
                              true, true)
                   .at("accuracy");
    state.ResumeTiming();
  }
  state.counters["val_accuracy"] = accuracy;
}

}  // namespace

BENCHMARK(BM_TrainStep)
    ->ArgNames({"model", "bf16", "threads"})
    ->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of);
BENCHMARK(BM_Epoch)
    ->ArgNames({"model", "bf16", "threads"})
    ->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of);

BENCHMARK_MAIN();
