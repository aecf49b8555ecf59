// The multi-tensor update ops (adam_update_multi, sgd_update_multi, rmsprop_update_multi) give
// the same bits as their one-variable ops on awkward sizes (single elements, odd lengths, chunk
// edges, variables large enough for the parallel split), bump every tensor they write, and
// refuse malformed groups with messages naming the group.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "kiln/threading.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

uint64_t version_of(const Tensor& t) { return t.impl()->version.load(); }

void run(const OpDef& op, const std::vector<Tensor>& in, const Attrs& a) {
  Tensor none[1];
  run_op(op, in, a, std::span<Tensor>(none, 0));
}

Tensor state_like(const Shape& s, DType dt, uint64_t seed, double low, double high) {
  return make_state(random_tensor(s, dt, seed, low, high));
}

// Bitwise equality (all_close with zero tolerances).
void expect_same(const Tensor& a, const Tensor& b) { EXPECT_TRUE(all_close(a, b, 0, 0)); }

// Per variable: its tensor first, then its slots; every group of one case.
struct Group {
  std::vector<Tensor> one, multi;  // the same initial values, updated by either op
};

// Sizes straddling the kernels' 512-element chunks and the 16 Ki-element parallel threshold.
const std::vector<Shape> kShapes = {{1}, {17}, {3, 171}, {513}, {129, 130}, {7}};

// Makes `width` tensors per shape (the variable, then slots: positive second moments for
// Adam/RMSprop at slot `positive`), copies for both runs.
std::vector<Group> groups(const std::vector<Shape>& shapes, DType dt, int width, int positive) {
  std::vector<Group> gs;
  uint64_t seed = 10;
  for (const Shape& s : shapes) {
    Group g;
    for (int k = 0; k < width; ++k) {
      const double low = k == positive ? 0 : -1;
      g.one.push_back(state_like(s, dt, seed, low, 1));
      g.multi.push_back(state_like(s, dt, seed++, low, 1));
    }
    gs.push_back(g);
  }
  return gs;
}

// Runs `steps` updates both ways: one op per variable (single(group tensors, grad)) and one
// multi op over up to `per_op` variables (multi(inputs)), then compares every tensor bitwise.
void check_multi_matches_single(
    DType dt, int width, int positive, int per_op,
    const std::function<void(const std::vector<Tensor>&, const Tensor&, int64_t)>& single,
    const std::function<void(std::vector<Tensor>, int64_t)>& multi,
    const std::function<void(std::vector<Tensor>&, const Tensor&)>& add_group) {
  std::vector<Group> gs = groups(kShapes, dt, width, positive);
  for (int64_t step = 0; step < 3; ++step) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < gs.size(); ++i) {
      grads.push_back(random_tensor(kShapes[i], dt, 100 + 10 * step + i));
      single(gs[i].one, grads[i], step);
    }
    for (size_t first = 0; first < gs.size(); first += per_op) {
      std::vector<Tensor> in;
      for (size_t i = first; i < std::min(gs.size(), first + per_op); ++i) {
        std::vector<Tensor>& g = gs[i].multi;
        add_group(g, grads[i]);
        for (size_t k = 0; k < g.size(); ++k) in.push_back(g[k]);
        // add_group appended the grad where the op wants it; remove it again for the next step
        g.erase(std::remove_if(g.begin(), g.end(),
                               [&](const Tensor& t) { return t.impl() == grads[i].impl(); }),
                g.end());
      }
      multi(in, step);
    }
  }
  for (const Group& g : gs) {
    for (size_t k = 0; k < g.one.size(); ++k) expect_same(g.multi[k], g.one[k]);
  }
}

class MultiUpdate : public ::testing::TestWithParam<std::tuple<DType, int>> {
 protected:
  void SetUp() override {
    saved_ = num_threads();
    set_num_threads(std::get<1>(GetParam()));
  }
  void TearDown() override { set_num_threads(saved_); }
  DType dt() const { return std::get<0>(GetParam()); }
  int saved_ = 1;
};

Attrs adam_attrs(double decay) {
  return Attrs{}.add_float(0.9).add_float(0.999).add_float(1e-7).add_float(decay);
}

TEST_P(MultiUpdate, AdamMatchesOneOpPerVariableBitForBit) {
  const Tensor lr = make_state(scalar(0.01, float64));
  for (double decay : {0.0, 0.004}) {
    Tensor step_t = make_state(scalar(0, int64));
    check_multi_matches_single(
        dt(), 3, 2, 3,
        [&](const std::vector<Tensor>& t, const Tensor& g, int64_t step) {
          run(ops::kAdamUpdate, {t[0], t[1], t[2], g, lr, scalar(double(step), int64)},
              adam_attrs(decay));
        },
        [&](std::vector<Tensor> in, int64_t step) {
          in.push_back(lr);
          in.push_back(scalar(double(step), int64));
          run(ops::kAdamUpdateMulti, in, adam_attrs(decay));
        },
        [](std::vector<Tensor>& t, const Tensor& g) { t.push_back(g); });  // w, m, v, g
  }
}

TEST_P(MultiUpdate, SgdMatchesOneOpPerVariableBitForBit) {
  const Tensor lr = make_state(scalar(0.05, float64));
  for (int nesterov : {0, 1}) {
    for (bool slot : {false, true}) {
      check_multi_matches_single(
          dt(), slot ? 2 : 1, -1, slot ? 5 : 7,
          [&](const std::vector<Tensor>& t, const Tensor& g, int64_t) {
            if (slot) {
              run(ops::kSgdUpdate, {t[0], g, lr, t[1]}, Attrs{nesterov}.add_float(0.9));
            } else {
              run(ops::kSgdUpdate, {t[0], g, lr}, Attrs{nesterov}.add_float(0.0));
            }
          },
          [&](std::vector<Tensor> in, int64_t) {
            in.push_back(lr);
            run(ops::kSgdUpdateMulti, in, Attrs{nesterov, slot}.add_float(slot ? 0.9 : 0.0));
          },
          [](std::vector<Tensor>& t, const Tensor& g) { t.insert(t.begin() + 1, g); });
    }
  }
}

TEST_P(MultiUpdate, RmspropMatchesOneOpPerVariableBitForBit) {
  const Tensor lr = make_state(scalar(0.01, float64));
  for (bool slot : {false, true}) {
    const Attrs single_attrs = Attrs{}.add_float(0.9).add_float(slot ? 0.5 : 0).add_float(1e-7);
    check_multi_matches_single(
        dt(), slot ? 3 : 2, 1, slot ? 3 : 5,
        [&](const std::vector<Tensor>& t, const Tensor& g, int64_t) {
          if (slot) {
            run(ops::kRmspropUpdate, {t[0], t[1], g, lr, t[2]}, single_attrs);
          } else {
            run(ops::kRmspropUpdate, {t[0], t[1], g, lr}, single_attrs);
          }
        },
        [&](std::vector<Tensor> in, int64_t) {
          in.push_back(lr);
          run(ops::kRmspropUpdateMulti, in,
              Attrs{slot}.add_float(0.9).add_float(slot ? 0.5 : 0).add_float(1e-7));
        },
        [](std::vector<Tensor>& t, const Tensor& g) { t.insert(t.begin() + 2, g); });
  }
}

INSTANTIATE_TEST_SUITE_P(DTypesAndThreads, MultiUpdate,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat64),
                                            ::testing::Values(1, 2)));

TEST(MultiUpdateOps, BumpEveryTensorTheyWrite) {
  Tensor w0 = make_state(ones({3})), m0 = make_state(zeros({3})), v0 = make_state(zeros({3}));
  Tensor w1 = make_state(ones({2})), m1 = make_state(zeros({2})), v1 = make_state(zeros({2}));
  const Tensor g0 = ones({3}), g1 = ones({2});
  run(ops::kAdamUpdateMulti,
      {w0, m0, v0, g0, w1, m1, v1, g1, scalar(0.1, float64), scalar(0, int64)}, adam_attrs(0));
  for (const Tensor& t : {w0, m0, v0, w1, m1, v1}) EXPECT_EQ(version_of(t), 1u);
  EXPECT_EQ(version_of(g0), 0u);
  Tensor mom = make_state(zeros({3}));
  run(ops::kSgdUpdateMulti, {w0, g0, mom, w1, g1, make_state(zeros({2})), scalar(0.1, float64)},
      Attrs{0, 1}.add_float(0.9));
  EXPECT_EQ(version_of(w0), 2u);
  EXPECT_EQ(version_of(mom), 1u);
  EXPECT_TRUE(all_close(w0, full({3}, 0.9 - 0.1), 1e-6, 0));  // adam's first step, then sgd's
}

TEST(MultiUpdateOps, RefuseMalformedGroupsNamingThem) {
  const Tensor lr = scalar(0.1, float64), step = scalar(0, int64);
  Tensor w = make_state(zeros({4})), g = zeros({4});
  expect_error<ValueError>(
      [&] {
        run(ops::kAdamUpdateMulti, {w, zeros({4}), zeros({4}), lr, step}, adam_attrs(0));
      },
      {"adam_update_multi", "groups of 4", "got 5 inputs"});
  expect_error<ShapeError>(
      [&] {
        run(ops::kAdamUpdateMulti,
            {w, zeros({4}), zeros({4}), g, w, zeros({4}), zeros({3}), g, lr, step}, adam_attrs(0));
      },
      {"adam_update_multi", "group 1 (inputs 4..7)", "[3] float32", "the variable [4] float32"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kSgdUpdateMulti, {w, g, make_state(zeros({4}, float64)), zeros({4}, float64), lr},
            Attrs{0, 0}.add_float(0));
      },
      {"sgd_update_multi", "group 1", "float64", "one dtype per op"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kSgdUpdateMulti, {w, g, scalar(0.1)}, Attrs{0, 0}.add_float(0));
      },
      {"sgd_update_multi", "group 0", "learning rate", "float64 scalar"});
  expect_error<DTypeError>(
      [&] {
        run(ops::kRmspropUpdateMulti,
            {make_state(zeros({4}, int32)), zeros({4}, int32), zeros({4}, int32), lr},
            Attrs{0}.add_float(0.9).add_float(0).add_float(1e-7));
      },
      {"rmsprop_update_multi", "group 0", "int32", "only float32/float64 train"});
  expect_error<ValueError>(
      [&] {
        run(ops::kRmspropUpdateMulti, {w, g, lr},
            Attrs{0}.add_float(0.9).add_float(0).add_float(1e-7));
      },
      {"rmsprop_update_multi", "groups of 3"});
  // Nothing was written by the refused calls.
  EXPECT_EQ(version_of(w), 0u);
}

}  // namespace
}  // namespace kiln
