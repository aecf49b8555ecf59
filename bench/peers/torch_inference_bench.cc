// bench/peers/torch_inference_bench.cc -- LibTorch peer of kiln_graph_bench's BM_Inference:
//   BM_TorchInference/<cnn>   batch-1 forward of the mlp (0) or cnn (1) of torch_train_bench,
//                             under NoGradGuard and eval(), 1 thread; inputs NCHW [1, 1, 28, 28].
// Run through run_peers.sh (OpenBLAS at its best).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "peak.h"

namespace {

torch::nn::Sequential make_model(bool cnn) {
  namespace nn = torch::nn;
  if (!cnn) {
    return nn::Sequential(nn::Flatten(), nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128),
                          nn::ReLU(), nn::Linear(128, 10));
  }
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                        nn::Linear(3136, 128), nn::ReLU(), nn::Linear(128, 10));
}

void BM_TorchInference(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::NoGradGuard no_grad;
  torch::nn::Sequential model = make_model(state.range(0) == 1);
  model->eval();
  torch::Tensor x = torch::rand({1, 1, 28, 28});
  for (auto _ : state) {
    torch::Tensor y = model->forward(x);
    benchmark::DoNotOptimize(y.data_ptr());
  }
}

}  // namespace

BENCHMARK(BM_TorchInference)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("cnn")
    ->UseRealTime()
    ->ComputeStatistics("min", kiln_bench::min_of)
    ->ComputeStatistics("max", kiln_bench::max_of)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
