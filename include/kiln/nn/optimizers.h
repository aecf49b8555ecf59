// Optimizers with Keras' update rules and defaults:
//
//   kiln::Adam opt(1e-3);
//   auto grads = tape.gradient(loss, values_of(model.trainable_weights()));
//   opt.apply_gradients(model.trainable_weights(), grads);
//
// Updates are stateful ops (sgd_update, adam_update, rmsprop_update: one fused in-place pass
// per variable, OpenMP above a size threshold; by default their *_multi forms, one pass over
// several variables at once, see set_foreach) that bump the variable's version, so
// apply_gradients() inside a kiln::function traces them and every call of the graph applies
// them. The learning rate and the step count are state tensors read by those ops, so changing
// the learning rate or counting steps never retraces. Per-variable state ("slots": momenta,
// moments) lives in non-trainable Variables keyed by the variable's identity, so a variable
// shared by two layers has one set of slots. float32 and float64 variables are supported.
#pragma once

#include <cstdint>
#include <memory>

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/nn/variable.h"
#include "kiln/tensor.h"

namespace kiln {

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Applies one step: grads[i] is the gradient of variables[i]. An undefined grads[i] (a
  // variable the loss does not depend on) is skipped. Throws ValueError when the two lists
  // differ in length or a variable is undefined, ShapeError naming the variable and both
  // shapes when a gradient's shape differs from its variable's, DTypeError naming the
  // variable when dtypes differ or are not float32/float64. Every check runs before any
  // update, so a throwing call changes nothing. Increments iterations() once per call.
  void apply_gradients(const std::vector<Variable>& variables, const std::vector<Tensor>& grads);

  // Number of apply_gradients() calls (or runs of a traced step that calls it) so far
  // (Keras' `optimizer.iterations`).
  int64_t iterations() const;
  void set_iterations(int64_t n);

  double learning_rate() const;
  // Takes effect from the next apply_gradients(); throws ValueError unless lr >= 0.
  void set_learning_rate(double lr);

  // true (the default): apply_gradients updates the variables of one dtype with multi-tensor
  // ops (adam_update_multi, ...: up to 16 inputs each, so a few variables per op), each one
  // pass over all their elements split evenly across the threads, as PyTorch's foreach
  // optimizers do. false: one op per variable. Both give bit-identical results; a variable
  // listed twice in one call is always updated one op at a time, in order.
  void set_foreach(bool on) { foreach_ = on; }
  bool foreach () const { return foreach_; }

  // One variable of a multi-tensor update (see update_many).
  struct UpdateItem {
    const Tensor* value;
    const Tensor* grad;
    const std::vector<Tensor>* slots;  // in slot_names() order
  };

  // "sgd", "adam", "adamw", "rmsprop".
  const std::string& name() const { return name_; }

  // Keras' config: {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, ...} (the
  // hyperparameters; state such as iterations and slots is saved apart).
  virtual nlohmann::json get_config() const;

  // The slot names of this rule, in order ("m", "v" for Adam).
  const std::vector<std::string>& slot_names() const { return slot_names_; }
  // The slot `slot` of `variable`, created (zero) if the variable has not been updated yet: for
  // restoring saved state. ValueError naming the slot when the rule has no such slot.
  Variable slot_for_restore(const Variable& variable, const std::string& slot);

  // Every slot variable created so far, in creation order (for saving and reports). Slot
  // names are "<optimizer>/<variable name>/<slot>", e.g. "adam/dense/kernel/m".
  std::vector<Variable> variables() const;
  // The slot `slot` (e.g. "m", "v", "momentum") of `variable`; undefined when the variable
  // has not been updated yet or the optimizer has no such slot.
  Variable slot(const Variable& variable, const std::string& slot) const;

 protected:
  Optimizer(std::string name, double learning_rate, std::vector<std::string> slot_names);

  // Runs the rule's update op on `value` (the variable's tensor) given `grad` (same shape
  // and dtype) and the variable's slots (zero-initialized, in slot_names order).
  virtual void update(const Tensor& value, const Tensor& grad,
                      const std::vector<Tensor>& slots) = 0;
  // Updates `items` (distinct variables of one dtype, at least 2) with the rule's multi-tensor
  // op; apply_gradients calls it when foreach() holds. The default runs update() on each.
  virtual void update_many(std::span<const UpdateItem> items);
  // State tensors the update ops read: the learning rate (float64 scalar) and the number of
  // steps done before this one (int64 scalar).
  const Tensor& learning_rate_tensor() const { return learning_rate_; }
  const Tensor& iterations_tensor() const { return iterations_; }

 private:
  struct Entry {
    Variable variable;  // keeps the identity alive so the key cannot be reused
    std::vector<Variable> slots;
    std::vector<Tensor> slot_values;
  };
  Entry& entry_for(const Variable& v);

  std::string name_;
  Tensor learning_rate_;  // float64 scalar state
  Tensor iterations_;     // int64 scalar state
  Tensor one_;            // the int64 1 added to iterations_ per step
  std::vector<std::string> slot_names_;
  std::unordered_map<const void*, Entry> entries_;
  std::vector<Variable> slot_order_;
  bool foreach_ = true;
};

// Keras SGD: w -= lr * g; with momentum m = momentum * m - lr * g and w += m, or with
// nesterov w += momentum * m - lr * g. Slot "momentum" only when momentum > 0.
class SGD : public Optimizer {
 public:
  // Throws ValueError unless learning_rate >= 0 and 0 <= momentum <= 1.
  explicit SGD(double learning_rate = 0.01, double momentum = 0.0, bool nesterov = false);
  double momentum() const { return momentum_; }
  bool nesterov() const { return nesterov_; }
  nlohmann::json get_config() const override;

 protected:
  void update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) override;
  void update_many(std::span<const UpdateItem> items) override;

 private:
  double momentum_;
  bool nesterov_;
};

// Keras Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon). Slots "m", "v".
class Adam : public Optimizer {
 public:
  // Throws ValueError unless learning_rate >= 0, 0 <= beta < 1 and epsilon >= 0.
  explicit Adam(double learning_rate = 0.001, double beta_1 = 0.9, double beta_2 = 0.999,
                double epsilon = 1e-7);
  nlohmann::json get_config() const override;

 protected:
  Adam(std::string name, double learning_rate, double beta_1, double beta_2, double epsilon);
  void update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) override;
  void update_many(std::span<const UpdateItem> items) override;
  void adam_step(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots,
                 double decay);
  void adam_step_many(std::span<const UpdateItem> items, double decay);

  double beta_1_, beta_2_, epsilon_;
};

// Keras AdamW: decoupled weight decay w -= w * weight_decay * lr, then the Adam step (fused
// into the same pass). Slots "m", "v".
class AdamW : public Adam {
 public:
  // Throws ValueError as Adam does, and unless weight_decay >= 0.
  explicit AdamW(double learning_rate = 0.001, double weight_decay = 0.004, double beta_1 = 0.9,
                 double beta_2 = 0.999, double epsilon = 1e-7);
  double weight_decay() const { return weight_decay_; }
  nlohmann::json get_config() const override;

 protected:
  void update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) override;
  void update_many(std::span<const UpdateItem> items) override;

 private:
  double weight_decay_;
};

// Keras RMSprop: v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + epsilon); with momentum
// m = momentum m + inc and w -= m, else w -= inc. Slots "velocity" (+ "momentum").
class RMSprop : public Optimizer {
 public:
  // Throws ValueError unless learning_rate >= 0, 0 <= rho < 1, 0 <= momentum <= 1 and
  // epsilon >= 0.
  explicit RMSprop(double learning_rate = 0.001, double rho = 0.9, double momentum = 0.0,
                   double epsilon = 1e-7);
  nlohmann::json get_config() const override;

 protected:
  void update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) override;
  void update_many(std::span<const UpdateItem> items) override;

 private:
  double rho_, momentum_, epsilon_;
};

// {"class_name": "Adam", "config": get_config()}, and back: ValueError naming the field for an
// unknown class, a missing or ill-typed hyperparameter, or a value the constructor refuses.
nlohmann::json serialize_optimizer(const Optimizer& optimizer);
std::unique_ptr<Optimizer> deserialize_optimizer(const nlohmann::json& j);

}  // namespace kiln
