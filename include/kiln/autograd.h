// Eager reverse-mode autograd, TensorFlow-style:
//
//   kiln::GradientTape tape;
//   tape.watch(x);                       // trainable variables are watched without this
//   Tensor y = kiln::sum(w * x);
//   auto grads = tape.gradient(y, {w, x});
//
// While a tape is alive on this thread it records every op that reads a watched tensor (or a
// tensor with requires_grad(), or the output of a recorded op). gradient() walks the records
// backwards applying each op's gradient rule, which is written with kiln ops: while it runs,
// enclosing tapes record those ops, so nesting tapes gives higher-order gradients.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {

class GradientTape {
 public:
  // A persistent tape allows several gradient() calls; otherwise the first call releases it.
  explicit GradientTape(bool persistent = false);
  ~GradientTape();
  GradientTape(const GradientTape&) = delete;
  GradientTape& operator=(const GradientTape&) = delete;

  // Records ops that read `t` from now on.
  void watch(const Tensor& t);

  // d(target)/d(source) for each source, each of the source's shape. `output_gradient`
  // (default: ones) seeds target's gradient. A source the target does not depend on, or an
  // integer tensor, gets an undefined Tensor. Throws StateError on a used non-persistent tape.
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<Tensor>& sources,
                               const Tensor& output_gradient = {});

  // Called with (k, gradient of sources[k]) as soon as that gradient is final, i.e. right
  // after the backward walk has processed the last (earliest recorded) op reading the source;
  // sources the target does not depend on are reported, undefined, at the end of the walk.
  // Each source is reported exactly once, before gradient() returns. Data-parallel training
  // uses it to start communicating early gradients while later ones are still computed.
  using GradientReady = std::function<void(size_t, const Tensor&)>;
  // gradient() that also calls on_ready (when non-empty) as each source's gradient is final.
  // Same results and errors; an exception thrown by on_ready ends the walk and propagates.
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<Tensor>& sources,
                               const GradientReady& on_ready, const Tensor& output_gradient = {});

  // Stops / resumes recording on this tape (e.g. for metrics computed inside the step).
  void stop_recording();
  void start_recording();

  // Number of ops recorded so far.
  size_t size() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// The same values as x; tapes treat the result as a constant.
Tensor stop_gradient(const Tensor& x);

}  // namespace kiln
