// FLOPs of the ops whose OpDef carries no `.flops` rule (matmul, conv and their fused and
// quantized forms carry theirs): one table beside the registry, so every op's count is stated
// once, and a new op without an entry here or a rule on its OpDef fails tests/ops/flops_test.cc.
//
// The convention (as PyTorch's profiler and TensorFlow's cost model count): arithmetic only.
// Elementwise ops and activations count 1 per output element whatever their inner cost;
// reductions 1 per input element; pooling 1 per window element; data movement (copies,
// reshapes, slicing, gathering, casts, random draws, assignment) 0; optimizer updates their
// per-element arithmetic.
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

int64_t numel_of(std::span<const Meta> metas) {
  int64_t n = 0;
  for (const Meta& m : metas) n += m.shape.numel();
  return n;
}

int64_t zero(std::span<const Meta>, const Attrs&, std::span<const Meta>) { return 0; }

int64_t per_output(std::span<const Meta>, const Attrs&, std::span<const Meta> out) {
  return numel_of(out);
}

int64_t per_input(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return in[0].shape.numel();
}

// Second input's elements: gather_grad adds each gradient row into place.
int64_t per_second_input(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return in[1].shape.numel();
}

// Pooling: one comparison or add per window element of each output ({pool_size[2], ...}).
int64_t pool_window(std::span<const Meta>, const Attrs& a, std::span<const Meta> out) {
  return out[0].shape.numel() * a.i(0) * a.i(1);
}

// A fused elementwise chain: its instructions ({n, program...}) per output element.
int64_t fused_chain(std::span<const Meta>, const Attrs& a, std::span<const Meta> out) {
  return out[0].shape.numel() * a.i(0);
}

// Updates write the variable (input 0) in place: their per-element arithmetic times its size.
// sgd: w -= lr * g (2), with momentum 2 more; adam: m, v, sqrt, divide, step (10);
// rmsprop: the mean square, sqrt, divide, step (8), with momentum 2 more.
int64_t sgd_update(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return in[0].shape.numel() * (in.size() == 4 ? 4 : 2);
}
int64_t adam_update(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return in[0].shape.numel() * 10;
}
int64_t rmsprop_update(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return in[0].shape.numel() * (in.size() == 5 ? 10 : 8);
}

// The multi-tensor forms: the same per-element counts over every group's variable (groups of
// `width` inputs, then the shared trailing inputs).
int64_t over_groups(std::span<const Meta> in, int width, int trailing, int64_t per_element) {
  int64_t n = 0;
  for (size_t k = 0; k + trailing < in.size(); k += width) n += in[k].shape.numel();
  return n * per_element;
}
int64_t adam_update_multi(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  return over_groups(in, 4, 2, 10);
}
int64_t sgd_update_multi(std::span<const Meta> in, const Attrs& a, std::span<const Meta>) {
  return a.i(1) ? over_groups(in, 3, 1, 4) : over_groups(in, 2, 1, 2);
}
int64_t rmsprop_update_multi(std::span<const Meta> in, const Attrs& a, std::span<const Meta>) {
  return a.i(0) ? over_groups(in, 4, 1, 10) : over_groups(in, 3, 1, 8);
}

struct FlopsEntry {
  const OpDef* op;
  FlopsFn flops;
};

const FlopsEntry kTable[] = {
    // elementwise and activations: 1 per output element
    {&ops::kAdd, per_output},
    {&ops::kSub, per_output},
    {&ops::kMul, per_output},
    {&ops::kDiv, per_output},
    {&ops::kPow, per_output},
    {&ops::kMaximum, per_output},
    {&ops::kMinimum, per_output},
    {&ops::kNeg, per_output},
    {&ops::kExp, per_output},
    {&ops::kLog, per_output},
    {&ops::kSqrt, per_output},
    {&ops::kAbs, per_output},
    {&ops::kSquare, per_output},
    {&ops::kEqual, per_output},
    {&ops::kNotEqual, per_output},
    {&ops::kLess, per_output},
    {&ops::kLessEqual, per_output},
    {&ops::kGreater, per_output},
    {&ops::kGreaterEqual, per_output},
    {&ops::kWhere, per_output},
    {&ops::kRelu, per_output},
    {&ops::kReluGrad, per_output},
    {&ops::kLeakyRelu, per_output},
    {&ops::kLeakyReluGrad, per_output},
    {&ops::kGelu, per_output},
    {&ops::kGeluGrad, per_output},
    {&ops::kSigmoid, per_output},
    {&ops::kTanh, per_output},
    {&ops::kSoftmax, per_output},
    {&ops::kLogSoftmax, per_output},
    {&ops::kMeanGrad, per_output},
    {&ops::kDropout, per_output},
    {&ops::kSoftmaxCrossEntropyGrad, per_output},
    {&ops::kMaxPool2DGrad, per_output},
    {&ops::kMaxPool2DSelect, per_output},
    {&ops::kFusedMaxPool2DGrad, per_output},
    {&ops::kAvgPool2DGrad, per_output},
    {&ops::kQuantize, per_output},
    {&ops::kDequantize, per_output},
    {&ops::kFakeQuant, per_output},
    {&ops::kFakeQuantGrad, per_output},
    {&ops::kFusedElementwise, fused_chain},
    // reductions: 1 per input element
    {&ops::kSum, per_input},
    {&ops::kMean, per_input},
    {&ops::kMax, per_input},
    {&ops::kArgmax, per_input},
    {&ops::kSumTo, per_input},
    {&ops::kSumToLike, per_input},
    {&ops::kSoftmaxCrossEntropy, per_input},
    {&ops::kAssignAdd, per_second_input},
    {&ops::kGatherGrad, per_second_input},
    {&ops::kFakeQuantRangeGrad, per_input},
    // pooling
    {&ops::kMaxPool2D, pool_window},
    {&ops::kAvgPool2D, pool_window},
    // data movement: no arithmetic
    {&ops::kCast, zero},
    {&ops::kCopy, zero},
    {&ops::kStopGradient, zero},
    {&ops::kBroadcastTo, zero},
    {&ops::kBroadcastLike, zero},
    {&ops::kSumGrad, zero},
    {&ops::kReshape, zero},
    {&ops::kReshapeLike, zero},
    {&ops::kRows, zero},
    {&ops::kTranspose, zero},
    {&ops::kConcat, zero},
    {&ops::kSlice, zero},
    {&ops::kSliceGrad, zero},
    {&ops::kGather, zero},
    {&ops::kOneHot, zero},
    {&ops::kPad, zero},
    {&ops::kAssign, zero},
    {&ops::kNextKey, zero},
    {&ops::kRandomUniform, zero},
    {&ops::kRandomNormal, zero},
    // optimizer updates
    {&ops::kSgdUpdate, sgd_update},
    {&ops::kAdamUpdate, adam_update},
    {&ops::kRmspropUpdate, rmsprop_update},
    {&ops::kAdamUpdateMulti, adam_update_multi},
    {&ops::kSgdUpdateMulti, sgd_update_multi},
    {&ops::kRmspropUpdateMulti, rmsprop_update_multi},
};

FlopsFn table_rule(const OpDef& op) {
  for (const FlopsEntry& e : kTable) {
    if (e.op == &op) return e.flops;
  }
  return nullptr;
}

}  // namespace

int64_t op_flops(const OpDef& op, std::span<const Meta> in, const Attrs& attrs,
                 std::span<const Meta> out) {
  if (op.flops) return op.flops(in, attrs, out);
  if (FlopsFn f = table_rule(op)) return f(in, attrs, out);
  return numel_of(out);
}

bool has_flops_rule(const OpDef& op) { return op.flops != nullptr || table_rule(op) != nullptr; }

}  // namespace kiln
