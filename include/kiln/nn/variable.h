// Variable: a named tensor that persists across steps. A handle: copies refer to the same
// variable (that is how layers share weights). Trainable variables are watched by tapes
// without watch(); every assignment bumps version(), which caches use to spot stale entries.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kiln/tensor.h"

namespace kiln {

class Variable {
 public:
  Variable() = default;  // undefined
  Variable(std::string name, Tensor initial_value, bool trainable = true);

  bool defined() const { return state_ != nullptr; }
  const std::string& name() const;
  bool trainable() const;
  // The current value. Ops read it directly; it is updated in place by assign(), so a handle
  // taken earlier sees later values.
  const Tensor& value() const;
  const Shape& shape() const { return value().shape(); }
  DType dtype() const { return value().dtype(); }
  uint64_t version() const;

  // Copies `v` (same shape and dtype, else ShapeError naming the variable) into the variable,
  // with the assign op: inside a kiln::function it is traced and runs on every call.
  void assign(const Tensor& v);
  // For optimizers that update value() in place through raw pointers: bump the version after.
  void mark_modified();

  // An independent deep copy under `new_name` (not shared).
  Variable clone(const std::string& new_name) const;

  // Identity: two handles of one variable compare equal.
  bool operator==(const Variable& o) const { return state_ == o.state_; }
  bool operator!=(const Variable& o) const { return state_ != o.state_; }
  const void* id() const { return state_.get(); }

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace kiln
