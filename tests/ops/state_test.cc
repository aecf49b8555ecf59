// State ops: assign, assign_add, next_key and the optimizer updates write their first input in
// place, bump its version, and refuse mismatched tensors with a message naming both.
#include <gtest/gtest.h>

#include "core/tensor_impl.h"
#include "kiln/function.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;

uint64_t version_of(const Tensor& t) { return t.impl()->version.load(); }

TEST(StateOps, AssignAndAssignAddWriteInPlaceAndBumpTheVersion) {
  Tensor t = make_state(zeros({2, 3}));
  const Tensor alias = t;  // the same tensor: sees the writes
  assign(t, full({2, 3}, 2));
  EXPECT_TRUE(all_close(alias, full({2, 3}, 2), 0, 0));
  assign_add(t, ones({2, 3}));
  EXPECT_TRUE(all_close(alias, full({2, 3}, 3), 0, 0));
  EXPECT_EQ(version_of(t), 2u);
  Tensor i = make_state(scalar(5, int64));
  assign_add(i, scalar(2, int64));
  EXPECT_EQ(i.item<int64_t>(), 7);
  for (const OpDef* op : {&ops::kAssign, &ops::kAssignAdd, &ops::kNextKey, &ops::kSgdUpdate,
                          &ops::kAdamUpdate, &ops::kRmspropUpdate}) {
    EXPECT_TRUE(is_stateful(*op)) << op->name;
  }
}

TEST(StateOps, MakeStateCopiesAndIsCapturedByReference) {
  Tensor init = ones({3});
  Tensor s = make_state(init);
  assign(s, zeros({3}));
  EXPECT_TRUE(all_close(init, ones({3}), 0, 0));
  EXPECT_TRUE(s.impl()->is_variable);
  expect_error<ValueError>([] { make_state(Tensor()); }, {"make_state", "undefined"});
  // Inside a trace the argument is symbolic: state must come from a concrete tensor.
  Function f = function([](const Tensor& x) {
    make_state(x);
    return x;
  });
  expect_error<StateError>([&] { f(ones({1})); }, {"make_state", "symbolic"});
}

TEST(StateOps, MismatchesNameBothTensors) {
  Tensor t = make_state(zeros({2, 3}));
  expect_error<ShapeError>(
      [&] {
        assign(t, zeros({3, 2}));
      },
      {"assign", "[3, 2] float32", "target", "[2, 3] float32"});
  expect_error<ShapeError>(
      [&] {
        assign_add(t, zeros({2, 3}, float64));
      },
      {"assign_add", "float64", "[2, 3] float32"});
  expect_error<DTypeError>(
      [] { assign_add(make_state(full({2}, 1, DType::kBool)), full({2}, 1, DType::kBool)); },
      {"assign_add", "bool"});
}

TEST(StateOps, UpdateOpsCheckTheirInputs) {
  Tensor w = make_state(zeros({4})), g = zeros({4}), lr = scalar(0.1, float64);
  Tensor none[1];
  auto run = [&](const OpDef& op, std::vector<Tensor> in, Attrs a = {}) {
    run_op(op, in, a, std::span<Tensor>(none, 0));
  };
  expect_error<ShapeError>(
      [&] {
        run(ops::kSgdUpdate, {w, zeros({5}), lr}, Attrs{0}.add_float(0));
      },
      {"sgd_update", "input 1", "[5] float32", "the variable [4] float32"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kSgdUpdate, {w, g, scalar(0.1)}, Attrs{0}.add_float(0));
      },
      {"sgd_update", "learning rate", "float64 scalar"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kAdamUpdate, {w, zeros({4}), zeros({4}), g, lr, scalar(0, int32)},
            Attrs{}.add_float(0.9).add_float(0.999).add_float(1e-7).add_float(0));
      },
      {"adam_update", "step count", "int64 scalar"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kSgdUpdate, {make_state(zeros({4}, int32)), zeros({4}, int32), lr},
            Attrs{0}.add_float(0));
      },
      {"sgd_update", "int32", "only float32/float64 train"});
  expect_error<ValueError>(
      [&] {
        run(ops::kRmspropUpdate, {w, g, lr}, Attrs{}.add_float(0.9).add_float(0).add_float(1e-7));
      },
      {"rmsprop_update", "needs 4 or 5 inputs"});
  // A good update writes the variable and bumps its version.
  run(ops::kSgdUpdate, {w, ones({4}), lr}, Attrs{0}.add_float(0));
  EXPECT_TRUE(all_close(w, full({4}, -0.1), 1e-7, 0));
  EXPECT_EQ(version_of(w), 1u);
}

}  // namespace
}  // namespace kiln
