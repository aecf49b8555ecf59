// State ops: the only way kiln code writes a tensor in place. Each writes its first input
// (a variable's value, an optimizer slot, a random generator's state), has kStateful set so no
// graph pass removes, merges or folds it, and bumps the written tensor's version (a Variable's
// version() reads it). Traced, they are nodes like any other, so a traced train step's
// updates run on every call of its graph.
#include <cstring>
#include <string>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using detail::ptr;

void require_target_like(const char* op, std::span<const Meta> in) {
  if (in[0].shape != in[1].shape || in[0].dtype != in[1].dtype) {
    throw ShapeError(std::string(op) + ": the value (" + to_string(in[1].shape) + " " +
                     std::string(dtype_name(in[1].dtype)) + ") does not match the target (" +
                     to_string(in[0].shape) + " " + std::string(dtype_name(in[0].dtype)) + ")");
  }
}

// ---- assign(target, value): target = value -------------------------------------------------

void assign_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  require_target_like("assign", in);
}

void assign_reference(const KernelArgs& k) {
  const Tensor &t = k.in[0], &v = k.in[1];
  // memmove: a value that is a view of the target itself is allowed.
  if (t.impl()->bytes() != v.impl()->bytes()) {
    std::memmove(t.impl()->bytes(), v.impl()->bytes(), t.numel() * size_of(t.dtype()));
  }
  t.impl()->version.fetch_add(1, std::memory_order_relaxed);
}

// ---- assign_add(target, delta): target += delta --------------------------------------------

void assign_add_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  require_target_like("assign_add", in);
  if (in[0].dtype == DType::kBool) throw DTypeError("assign_add: bool targets cannot be added to");
}

void assign_add_reference(const KernelArgs& k) {
  const Tensor &t = k.in[0], &d = k.in[1];
  detail::visit_dtype(t.dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      T* p = ptr<T>(t);
      const T* q = ptr<T>(d);
      for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<T>(p[i] + q[i]);
    }
  });
  t.impl()->version.fetch_add(1, std::memory_order_relaxed);
}

// ---- next_key(state) -> key: key = state, then state[1] += 1 -------------------------------
// A random generator's state is int64 [2] = {seed, counter}; each key it hands out names one
// draw, so random ops (dropout, random_uniform) are pure functions of their key input.

void next_key_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  if (in[0].dtype != DType::kInt64 || in[0].shape != Shape{2}) {
    throw ShapeError("next_key: the generator state must be int64 [2], got " +
                     to_string(in[0].shape) + " " + std::string(dtype_name(in[0].dtype)));
  }
  out[0] = in[0];
}

void next_key_reference(const KernelArgs& k) {
  int64_t* s = ptr<int64_t>(k.in[0]);
  int64_t* key = ptr<int64_t>(k.out[0]);
  key[0] = s[0];
  key[1] = s[1];
  s[1] += 1;
  k.in[0].impl()->version.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

namespace ops {
const OpDef kAssign{.name = "assign",
                    .num_inputs = 2,
                    .num_outputs = 0,
                    .infer = assign_infer,
                    .reference = assign_reference,
                    .flags = kStateful | kNotDifferentiable,
                    .attrs = &kNoAttrs};
const OpDef kAssignAdd{.name = "assign_add",
                       .num_inputs = 2,
                       .num_outputs = 0,
                       .infer = assign_add_infer,
                       .reference = assign_add_reference,
                       .flags = kStateful | kNotDifferentiable,
                       .attrs = &kNoAttrs};
const OpDef kNextKey{.name = "next_key",
                     .num_inputs = 1,
                     .num_outputs = 1,
                     .infer = next_key_infer,
                     .reference = next_key_reference,
                     .flags = kStateful | kRandom | kNotDifferentiable,
                     .attrs = &kNoAttrs};
}  // namespace ops

void assign(const Tensor& target, const Tensor& value) {
  Tensor none[1];
  Tensor in[2] = {target, value};
  run_op(ops::kAssign, in, {}, std::span<Tensor>(none, 0));
}

void assign_add(const Tensor& target, const Tensor& delta) {
  Tensor none[1];
  Tensor in[2] = {target, delta};
  run_op(ops::kAssignAdd, in, {}, std::span<Tensor>(none, 0));
}

Tensor make_state(const Tensor& initial) {
  if (!initial.defined()) throw ValueError("make_state: the initial value is undefined");
  if (!initial.impl()->storage) {
    throw StateError(
        "make_state: the initial value is symbolic (state must be created outside "
        "a trace, or from a concrete tensor)");
  }
  Tensor s = empty(initial.shape(), initial.dtype());
  s.copy_from(initial);
  s.impl()->is_variable = true;
  return s;
}

SeedGenerator::SeedGenerator(uint64_t seed) {
  Tensor init = empty(Shape{2}, DType::kInt64);
  ptr<int64_t>(init)[0] = static_cast<int64_t>(seed);
  ptr<int64_t>(init)[1] = 0;
  state_ = make_state(init);
}

Tensor SeedGenerator::next() { return run_op(ops::kNextKey, {state_}); }

uint64_t SeedGenerator::seed() const { return static_cast<uint64_t>(ptr<int64_t>(state_)[0]); }
int64_t SeedGenerator::counter() const { return ptr<int64_t>(state_)[1]; }

}  // namespace kiln
