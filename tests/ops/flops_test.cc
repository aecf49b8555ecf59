// op_flops (src/ops/flops.cc and the OpDefs' rules): every registered op has a count, and the
// counts of the ops that dominate a step are the textbook ones.
#include <gtest/gtest.h>

#include <vector>

#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

int64_t flops(const OpDef& op, std::vector<Meta> in, const Attrs& a, std::vector<Meta> out) {
  return op_flops(op, in, a, out);
}

Meta f32(Shape s) { return {std::move(s), DType::kFloat32}; }

TEST(Flops, EveryRegisteredOpHasARuleOrATableEntry) {
  for (const OpDef* op : ops::all_ops()) EXPECT_TRUE(has_flops_rule(*op)) << op->name;
}

TEST(Flops, MatmulIsTwoMNK) {
  EXPECT_EQ(flops(ops::kMatmul, {f32({5, 7}), f32({7, 3})}, Attrs{0, 0}, {f32({5, 3})}),
            2 * 5 * 3 * 7);
  // transpose_a: K is a's first dim; batched: the batch multiplies.
  EXPECT_EQ(flops(ops::kMatmul, {f32({7, 5}), f32({7, 3})}, Attrs{1, 0}, {f32({5, 3})}),
            2 * 5 * 3 * 7);
  EXPECT_EQ(flops(ops::kMatmul, {f32({4, 5, 7}), f32({4, 7, 3})}, Attrs{0, 0}, {f32({4, 5, 3})}),
            4 * 2 * 5 * 3 * 7);
}

TEST(Flops, ConvGradientsCountAsTheForward) {
  // x [2, 8, 8, 3], filter [3, 3, 3, 4], same padding: y [2, 8, 8, 4].
  const Attrs conv{1, 1, 1, 1, 1, 1};  // strides, padding=same, dilation, groups
  const int64_t fwd = 2 * (2 * 8 * 8 * 4) * 3 * 3 * 3;
  EXPECT_EQ(flops(ops::kConv2D, {f32({2, 8, 8, 3}), f32({3, 3, 3, 4})}, conv, {f32({2, 8, 8, 4})}),
            fwd);
  EXPECT_EQ(
      flops(ops::kConv2DBackwardInput, {f32({2, 8, 8, 4}), f32({3, 3, 3, 4}), f32({2, 8, 8, 3})},
            conv, {f32({2, 8, 8, 3})}),
      fwd);
  Attrs filter_grad = conv;
  for (int64_t d : {3, 3, 3, 4}) filter_grad.add_int(d);
  EXPECT_EQ(flops(ops::kConv2DBackwardFilter, {f32({2, 8, 8, 3}), f32({2, 8, 8, 4})}, filter_grad,
                  {f32({3, 3, 3, 4})}),
            fwd);
}

TEST(Flops, ElementwiseReductionsDataMovementAndUpdates) {
  EXPECT_EQ(flops(ops::kAdd, {f32({4, 5}), f32({5})}, {}, {f32({4, 5})}), 20);
  EXPECT_EQ(flops(ops::kRelu, {f32({4, 5})}, {}, {f32({4, 5})}), 20);
  EXPECT_EQ(flops(ops::kSum, {f32({4, 5})}, Attrs{1, 0}, {f32({4})}), 20);
  EXPECT_EQ(flops(ops::kReshape, {f32({4, 5})}, Attrs{20}, {f32({20})}), 0);
  EXPECT_EQ(flops(ops::kTranspose, {f32({4, 5})}, Attrs{1, 0}, {f32({5, 4})}), 0);
  EXPECT_EQ(flops(ops::kCast, {f32({4, 5})}, Attrs{static_cast<int64_t>(DType::kFloat64)},
                  {{Shape{4, 5}, DType::kFloat64}}),
            0);
  // max_pool2d 2x2 over [1, 4, 4, 2] -> [1, 2, 2, 2]: 4 comparisons per output.
  EXPECT_EQ(flops(ops::kMaxPool2D, {f32({1, 4, 4, 2})}, Attrs{2, 2, 2, 2, 0}, {f32({1, 2, 2, 2})}),
            8 * 4);
  // A fused chain of 3 instructions over 10 elements.
  Attrs chain{3, 0, 0, 0};
  EXPECT_EQ(flops(ops::kFusedElementwise, {f32({10})}, chain, {f32({10})}), 30);
  const Meta scalar64{Shape{}, DType::kFloat64}, step{Shape{}, DType::kInt64};
  EXPECT_EQ(
      flops(ops::kAdamUpdate, {f32({6}), f32({6}), f32({6}), f32({6}), scalar64, step}, {}, {}),
      60);
}

}  // namespace
}  // namespace kiln
