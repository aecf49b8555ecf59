// The profiler's cost (kiln/profile.h), off and on, on the same plans in one process:
//   BM_Run/<work>/<profiled>   one call of a graph function, profiled = 0 (no Profiler: the plan
//                              checks one flag per run) or 1 (a Profiler records every step);
//                              work 0 = one tiny add ([16] floats: the plan's fixed cost
//                              dominates), 1 = mlp inference at batch 1, 2 = mlp training step
//                              at batch 64, 3 = cnn training step at batch 64 (fit's step:
//                              forward, gradients, Adam)
//   BM_FlagCheck/<checked>     the off path's one check (graph::profiling()) against no check,
//                              per plan run: what "off" adds over a build without the profiler
// Run interleaved with repetitions and compare medians (on / off):
//   kiln_profile_bench --benchmark_enable_random_interleaving=true --benchmark_repetitions=10
#include <benchmark/benchmark.h>

#include <memory>
#include <optional>

#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>
#include <kiln/profile.h>

#include "graph/profiler.h"
#include "peak.h"
#include "train_step.h"

namespace {

using kiln_bench::TrainStep;

// A graph function and its arguments for each kind of work.
struct Work {
  std::unique_ptr<TrainStep> step;
  std::shared_ptr<kiln::Sequential> model;
  std::optional<kiln::Function> f;
  std::vector<kiln::Tensor> args;
  bool training = false;

  explicit Work(int kind) {
    if (kind == 0) {
      f.emplace(kiln::function([](const kiln::Tensor& x) { return x + 1.0; }));
      args = {kiln::ones({16})};
    } else if (kind == 1) {
      model = kiln::make_mlp();
      f.emplace(kiln::function([this](const kiln::Tensor& x) { return (*model)(x, false); }));
      args = {kiln::random_uniform({1, 28, 28, 1}, 0, 1, 3)};
    } else {
      step = std::make_unique<TrainStep>(kind == 3);
      f.emplace([this](const std::vector<kiln::Tensor>& a, bool) { return (*step)(a); },
                kiln::FunctionOptions{.name = "train_step"});
      args = kiln_bench::train_batch();
      training = true;
    }
  }
};

void BM_Run(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  const bool profiled = state.range(1) == 1;
  kiln::set_num_threads(1);  // steady on these shared 2-core machines (DESIGN.md, Threads)
  Work w(kind);
  std::vector<kiln::Tensor> outs;
  outs = (*w.f)(w.args, w.training);  // trace and plan outside the timing
  (*w.f).call(w.args, outs, w.training);
  std::optional<kiln::Profiler> p;
  // A fixed peak: stop() then measures nothing.
  if (profiled) p.emplace(kiln::ProfilerOptions{.peak = {.threads = 1, .fp32_gflops = 1}});
  for (auto _ : state) {
    (*w.f).call(w.args, outs, w.training);
    benchmark::DoNotOptimize(outs[0].raw_data());
  }
  if (p) state.counters["recorded_runs"] = static_cast<double>(p->stop().runs.size());
}

// The flag read the executor does once per plan run, against nothing: the off path's cost.
void BM_FlagCheck(benchmark::State& state) {
  const bool checked = state.range(0) == 1;
  int64_t n = 0;
  for (auto _ : state) {
    for (int k = 0; k < 1000; ++k) {
      if (checked && kiln::graph::profiling()) ++n;
      benchmark::ClobberMemory();
    }
  }
  benchmark::DoNotOptimize(n);
  state.SetItemsProcessed(state.iterations() * 1000);
}

}  // namespace

#define KILN_STATS                                   \
  UseRealTime()                                      \
      ->ComputeStatistics("min", kiln_bench::min_of) \
      ->ComputeStatistics("max", kiln_bench::max_of)

BENCHMARK(BM_Run)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->ArgNames({"work", "profiled"})
    ->KILN_STATS->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FlagCheck)->Arg(0)->Arg(1)->ArgName("checked")->KILN_STATS;
BENCHMARK_MAIN();
