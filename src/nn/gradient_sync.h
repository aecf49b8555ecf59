// The seam fit() uses for data-parallel training (FitOptions::distributed). nn owns this
// interface and src/distributed implements it: kiln::distributed::init() installs a factory
// here, so nn never includes the layer above it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/nn/variable.h"
#include "kiln/tensor.h"

namespace kiln::detail {

// One training step across ranks, in call order: begin_step(), gradient_ready() once per
// variable (as each local gradient becomes final), finish_step(). Every rank must make the
// same calls in the same order (they are collective). Not thread-safe: one training loop.
class GradientSync {
 public:
  virtual ~GradientSync() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Makes every rank's `variables` equal to rank 0's (before the first step).
  virtual void broadcast(const std::vector<Variable>& variables) = 0;

  // Starts a step over `variables` on a local batch of `examples` rows (0 for an empty part of
  // the global batch) with this rank's batch-mean loss and count of correct predictions.
  virtual void begin_step(const std::vector<Variable>& variables, int64_t examples, double loss,
                          double correct) = 0;
  // The local gradient of variables[k] is final; undefined when the loss does not depend on
  // it (then it must be undefined on every rank). The tensor is read before this returns or
  // kept alive until finish_step().
  virtual void gradient_ready(size_t k, const Tensor& grad) = 0;

  struct Totals {
    double examples = 0, loss = 0, correct = 0;  // loss: the global batch's mean loss
  };
  // Waits for every reduction and returns the gradients of the mean loss over the global
  // batch (grads[k] undefined where the local one was), and the global batch's totals.
  virtual std::vector<Tensor> finish_step(Totals* totals) = 0;

  // True on every rank when `flag` is true on any (to stop training everywhere at once).
  virtual bool any(bool flag) = 0;
};

using GradientSyncFactory = std::unique_ptr<GradientSync> (*)();

// Installed by kiln::distributed::init(); null until then.
void set_gradient_sync_factory(GradientSyncFactory factory);
GradientSyncFactory gradient_sync_factory();

}  // namespace kiln::detail
