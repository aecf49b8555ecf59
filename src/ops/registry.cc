#include "ops/registry.h"

#include <iterator>

#include "ops/fused.h"

namespace kiln::ops {

namespace {
const OpDef* const kAll[] = {
    &kAdd,
    &kSub,
    &kMul,
    &kDiv,
    &kPow,
    &kMaximum,
    &kMinimum,
    &kNeg,
    &kExp,
    &kLog,
    &kSqrt,
    &kAbs,
    &kSquare,
    &kEqual,
    &kNotEqual,
    &kLess,
    &kLessEqual,
    &kGreater,
    &kGreaterEqual,
    &kWhere,
    &kCast,
    &kBroadcastTo,
    &kSumTo,
    &kBroadcastLike,
    &kSumToLike,
    &kRelu,
    &kReluGrad,
    &kLeakyRelu,
    &kLeakyReluGrad,
    &kGelu,
    &kGeluGrad,
    &kSigmoid,
    &kTanh,
    &kSoftmax,
    &kLogSoftmax,
    &kSum,
    &kMean,
    &kMax,
    &kSumGrad,
    &kMeanGrad,
    &kArgmax,
    &kMatmul,
    &kReshape,
    &kReshapeLike,
    &kTranspose,
    &kConcat,
    &kSlice,
    &kSliceGrad,
    &kGather,
    &kGatherGrad,
    &kOneHot,
    &kPad,
    &kConv2D,
    &kConv2DBackwardInput,
    &kConv2DBackwardFilter,
    &kMaxPool2D,
    &kMaxPool2DGrad,
    &kAvgPool2D,
    &kAvgPool2DGrad,
    &kDropout,
    &kSoftmaxCrossEntropy,
    &kSoftmaxCrossEntropyGrad,
    &kStopGradient,
    &kCopy,
    &kRows,
    &kMaxPool2DSelect,
    &kAssign,
    &kAssignAdd,
    &kNextKey,
    &kSgdUpdate,
    &kAdamUpdate,
    &kRmspropUpdate,
    &kSgdUpdateMulti,
    &kAdamUpdateMulti,
    &kRmspropUpdateMulti,
    &kRandomUniform,
    &kRandomNormal,
    &kFusedMatmul,
    &kFusedConv2D,
    &kFusedElementwise,
    &kQuantize,
    &kDequantize,
    &kQuantizedMatmul,
    &kQuantizedConv2D,
    &kDynamicQuantizedMatmul,
    &kFakeQuant,
    &kFakeQuantGrad,
    &kFakeQuantRangeGrad,
    &kFusedMaxPool2DGrad,
    &kFusedConv2DPool,
    &kFusedConv2DPoolGrad,
};
// fused_elementwise names an op by its index here (ops/fused.h): every index must fit.
static_assert(std::size(kAll) <= kFeOpcodeLimit, "fused_elementwise opcodes cannot name every op");
}  // namespace

std::span<const OpDef* const> all_ops() { return kAll; }

const OpDef* find_op(std::string_view name) {
  for (const OpDef* op : kAll) {
    if (name == op->name) return op;
  }
  return nullptr;
}

}  // namespace kiln::ops
