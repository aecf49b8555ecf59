// Prediction from a model file against the in-process graph (the model-files issue's target:
// the same speed). Each benchmark uses the allocation-free call form of both:
//   BM_Predict/<model>/<batch>/<source>  model 0 = mlp, 1 = cnn; source 0 = kiln::function over
//                                        the live model (in-process graph), 1 = GraphModel
//                                        loaded from a .kiln file written by save_model
// Run with --benchmark_repetitions and --benchmark_enable_random_interleaving so both sources
// see the same machine state; threads = 1 at batch 1, 2 at batch 64 (as kiln predict would).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>

#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/model_file.h>
#include <kiln/nn.h>

#include "peak.h"

namespace {

void BM_Predict(benchmark::State& state) {
  const bool cnn = state.range(0) == 1;
  const int64_t batch = state.range(1);
  const bool from_file = state.range(2) == 1;
  kiln::set_num_threads(batch == 1 ? 1 : 2);
  auto model = cnn ? kiln::make_cnn() : kiln::make_mlp();
  kiln::Tensor x = kiln::random_uniform({batch, 28, 28, 1}, 0, 1, 3);
  std::vector<kiln::Tensor> out(1);
  std::vector<kiln::Tensor> args{x};
  if (from_file) {
    const std::string path = "/tmp/kiln_model_bench_" + std::to_string(cnn) + ".kiln";
    kiln::save_model(*model, path);
    kiln::GraphModel g = kiln::load_model(path).graph;
    std::remove(path.c_str());
    g.call(args, out);
    for (auto _ : state) {
      g.call(args, out);
      benchmark::DoNotOptimize(out[0].raw_data());
    }
  } else {
    kiln::Function f = kiln::function(
        [&](const kiln::Tensor& in) { return (*model)(in, false); },
        {.input_signature = std::vector<kiln::TensorSpec>{{{kiln::kUnknownDim, 28, 28, 1}}}});
    f.call(args, out);
    for (auto _ : state) {
      f.call(args, out);
      benchmark::DoNotOptimize(out[0].raw_data());
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

BENCHMARK(BM_Predict)
    ->ArgNames({"cnn", "batch", "file"})
    ->ArgsProduct({{0, 1}, {1, 64}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
