// Variable: a shared state block (name, value tensor, trainable flag, version counter).
#include "kiln/nn/variable.h"

#include <atomic>

#include "core/tensor_impl.h"
#include "kiln/error.h"
#include "kiln/ops.h"

namespace kiln {

struct Variable::State {
  std::string name;
  Tensor value;
  bool trainable;
};

namespace {
template <typename S>
const S* require(const std::shared_ptr<S>& s, const char* what) {
  if (!s) throw StateError(std::string("Variable::") + what + ": the variable is undefined");
  return s.get();
}
}  // namespace

Variable::Variable(std::string name, Tensor initial_value, bool trainable) {
  if (!initial_value.defined()) {
    throw ValueError("Variable '" + name + "': the initial value is an undefined tensor");
  }
  state_ = std::make_shared<State>();
  state_->name = std::move(name);
  // Own the storage: a view of someone else's tensor would change under us. A plain copy, not
  // the copy op: a variable's value is state, never an op's output (tapes and tracers see
  // reads of it, not its creation).
  state_->value = empty(initial_value.shape(), initial_value.dtype());
  state_->value.copy_from(initial_value);
  state_->value.impl()->is_variable = true;
  state_->trainable = trainable;
  // Tapes record ops on trainable variables without watch().
  if (trainable && is_floating(state_->value.dtype())) state_->value.set_requires_grad(true);
}

const std::string& Variable::name() const { return require(state_, "name")->name; }
bool Variable::trainable() const { return require(state_, "trainable")->trainable; }
const Tensor& Variable::value() const { return require(state_, "value")->value; }
// The version lives on the value's TensorImpl: stateful ops (assign, optimizer updates) bump
// it, eager or inside a traced graph.
uint64_t Variable::version() const {
  return require(state_, "version")->value.impl()->version.load(std::memory_order_relaxed);
}

void Variable::assign(const Tensor& v) {
  require(state_, "assign");
  const Tensor& cur = state_->value;
  if (!v.defined() || v.shape() != cur.shape() || v.dtype() != cur.dtype()) {
    std::string got = v.defined() ? to_string(v.shape()) + " " + std::string(dtype_name(v.dtype()))
                                  : std::string("an undefined tensor");
    throw ShapeError("Variable '" + state_->name + "': assign of " + got + " to a variable of " +
                     to_string(cur.shape()) + " " + std::string(dtype_name(cur.dtype())));
  }
  kiln::assign(state_->value, v);  // an op: traced inside a kiln::function, bumps the version
}

void Variable::mark_modified() {
  require(state_, "mark_modified")->value.impl()->version.fetch_add(1);
}

Variable Variable::clone(const std::string& new_name) const {
  require(state_, "clone");
  return Variable(new_name, state_->value, state_->trainable);  // the constructor deep-copies
}

}  // namespace kiln
