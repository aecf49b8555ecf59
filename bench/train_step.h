// The Fashion-MNIST training step the kiln benchmarks time (kiln_graph_bench, kiln_bf16_bench,
// kiln_profile_bench, kiln_step_ab_bench): the step fit() runs (src/nn/training.cc), eager or
// traced, on the mlp or the cnn, with Adam 1e-3 at batch 64, and its FLOPs for floors.
#pragma once

#include <memory>
#include <vector>

#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

namespace kiln_bench {

inline constexpr int64_t kBatch = 64;

// FLOPs of one training step at batch 64. mlp: 2 * (2 * 234,752 MACs forward + weight
// gradients) + 2 * 34,048 MACs of input gradients (all layers but the first) per example.
// cnn: forward MACs per example conv1 28*28*9*32 = 225,792, conv2 14*14*9*32*64 = 3,612,672,
// dense 3136*128 + 128*10 = 402,688; input gradients skip conv1.
inline double train_flops(bool cnn) {
  if (!cnn) return kBatch * 2.0 * (2 * 234752.0 + 34048.0);
  const double fwd = 225792.0 + 3612672.0 + 402688.0;
  const double input_grads = 3612672.0 + 402688.0;
  return kBatch * 2.0 * (2 * fwd + input_grads);
}

// A batch of Fashion-MNIST's shape: images [64, 28, 28, 1] in [0, 1), int32 labels [64].
inline std::vector<kiln::Tensor> train_batch() {
  return {kiln::random_uniform({kBatch, 28, 28, 1}, 0, 1, 1),
          kiln::cast(kiln::random_uniform({kBatch}, 0, 9.999, 2), kiln::int32)};
}

// Forward, loss, gradients and the Adam update; returns {loss, logits}. `foreach`: Adam's
// multi-tensor updates (the default) or one update op per variable.
struct TrainStep {
  std::shared_ptr<kiln::Sequential> model;
  kiln::Adam opt{1e-3};
  kiln::SparseCategoricalCrossentropy loss;
  std::vector<kiln::Variable> vars;
  std::vector<kiln::Tensor> sources;
  explicit TrainStep(bool cnn, bool foreach = true)
      : model(cnn ? kiln::make_cnn() : kiln::make_mlp()) {
    opt.set_foreach(foreach);
    vars = model->trainable_weights();
    for (const kiln::Variable& v : vars) sources.push_back(v.value());
  }
  std::vector<kiln::Tensor> operator()(const std::vector<kiln::Tensor>& a) {
    kiln::GradientTape tape;
    kiln::Tensor logits = (*model)(a[0], /*training=*/true);
    kiln::Tensor l = loss(a[1], logits);
    tape.stop_recording();
    opt.apply_gradients(vars, tape.gradient(l, sources));
    return {l, logits};
  }
  // The same step as a graph function (this object must outlive it).
  kiln::Function traced() {
    return kiln::Function([this](const std::vector<kiln::Tensor>& a, bool) { return (*this)(a); },
                          {.name = "train_step"});
  }
};

}  // namespace kiln_bench
