// Keras-style training loops: fit / evaluate / predict over a kiln::Dataset.
//
//   auto model = kiln::make_mlp();
//   kiln::Adam opt(1e-3);
//   kiln::SparseCategoricalCrossentropy loss;
//   kiln::Dataset train = kiln::Dataset(x, y).shuffle(0).batch(64);
//   kiln::FitOptions o;
//   o.epochs = 5;
//   o.validation = kiln::Dataset(x_test, y_test).batch(256);
//   kiln::History h = kiln::fit(*model, opt, loss, train, o);
//
// One training step: under a GradientTape, logits = model(x, true); l = loss(y, logits);
// grads = tape.gradient(l, trainable weights); opt.apply_gradients(...). The loss and accuracy
// metrics read the results directly (no ops, nothing recorded). fit() adds no randomness of
// its own: with the same weight seed (VariableStore / global_seed), the same dataset shuffle
// seed and the same thread count, two runs give the same loss curve.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "kiln/data.h"
#include "kiln/nn/callbacks.h"
#include "kiln/nn/losses.h"
#include "kiln/nn/optimizers.h"
#include "kiln/tensor.h"

namespace kiln {

class Layer;

struct FitOptions {
  int epochs = 1;
  // Epoch to start from (for resuming): epochs run are [initial_epoch, epochs).
  int initial_epoch = 0;
  // Only for fit(x, y): examples per batch, and the shuffle seed (nullopt: no shuffling).
  int64_t batch_size = 32;
  std::optional<uint64_t> shuffle_seed = 0;
  // Evaluated after each epoch's training (not counted in "seconds"): val_loss, val_accuracy.
  std::optional<Dataset> validation;
  std::vector<std::shared_ptr<Callback>> callbacks;
  // Track sparse categorical accuracy ("accuracy"); turn off for non-classification outputs.
  bool accuracy = true;
  // 0: silent; 1: a progress bar redrawn in place on a terminal, else one line per epoch;
  // 2: one line per epoch.
  int verbose = 1;
  // Where progress goes (default std::cout). progress_bar overrides the terminal test.
  std::ostream* out = nullptr;
  std::optional<bool> progress_bar;
  // Data-parallel training over the ranks of kiln::distributed::init() (kiln/distributed.h;
  // StateError when it has not been called). Every rank calls fit() with the same model code,
  // dataset, options and seeds: rank 0's weights are broadcast first; each rank trains on its
  // shard of every (global) batch (Dataset::shard) and gradients of the loss, which must be a
  // batch mean as every kiln Loss is, are averaged over the global batch, so the variables stay
  // identical on all ranks. The logs are the global batch's; validation runs on every rank;
  // only rank 0 prints progress and runs callbacks (their stop_training stops every rank;
  // weights they change, as EarlyStopping's restore_best_weights, change on rank 0 only).
  bool distributed = false;
  // Graph mode: each step runs a traced train step (kiln::function): forward, the gradients
  // (emitted by the same gradient rules as eager mode) and the optimizer's updates, one graph
  // per batch shape (usually two: full batches and the last one). The model is built before
  // the first trace, so no variable is created inside it; a change of the trainable set
  // between epochs traces again. Validation runs in graph mode too. Results match eager
  // training from the same seed (the same kernels run in the same order). With `distributed`,
  // the traced step stops at the gradients; the all-reduce and the update run after it.
  bool graph = false;
};

// Per-epoch logs, Keras' History.history: history["loss"][i] is epoch epochs[i]'s loss.
struct History {
  std::vector<int> epochs;
  std::map<std::string, std::vector<double>> history;

  // The values of `key`; ValueError naming it (and the keys present) when absent.
  const std::vector<double>& operator[](const std::string& key) const;
  size_t size() const { return epochs.size(); }
};

// Trains `model` on `train` (batched; labels in Batch::y) for options.epochs epochs and
// returns the logs of each epoch run: "loss" and "accuracy" (running means over the epoch's
// batches, weighted by batch size), "val_loss" and "val_accuracy" when options.validation is
// set, "seconds" (training time of the epoch, validation excluded). Throws ValueError when
// epochs < initial_epoch or initial_epoch < 0, or when `train` yields no batch.
History fit(Layer& model, Optimizer& optimizer, const Loss& loss, const Dataset& train,
            const FitOptions& options = {});
// Builds Dataset(x, y).shuffle(*shuffle_seed).batch(batch_size) and trains on it.
History fit(Layer& model, Optimizer& optimizer, const Loss& loss, const Tensor& x, const Tensor& y,
            const FitOptions& options = {});

// The mean loss (weighted by batch size) and, if `accuracy`, the accuracy over `data`, with
// model(x, training = false): {"loss", ...}, {"accuracy", ...}. ValueError when data is empty.
// graph = true runs model and loss as one traced function (traced again by every call of
// evaluate: keep a kiln::function yourself to reuse the trace across calls).
Logs evaluate(Layer& model, const Loss& loss, const Dataset& data, bool accuracy = true,
              bool graph = false);

// Model outputs for every example, in order, concatenated along dim 0: [N, ...]. Batches of
// `batch_size` rows of x (views, not copies); ValueError unless batch_size >= 1.
// graph = true runs the model as a traced function: one per live model (a per-instance cache,
// in kiln::cache_report()), traced once per batch shape and reused by later calls.
Tensor predict(Layer& model, const Tensor& x, int64_t batch_size = 32, bool graph = false);
// The same over a dataset's batches (Batch::x), in the dataset's order.
Tensor predict(Layer& model, const Dataset& data, bool graph = false);

}  // namespace kiln
