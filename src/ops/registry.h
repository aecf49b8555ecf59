// Every OpDef, by family. Defined in src/ops/<family>.cc; find_op() looks them up by name
// (graphs and deployment files refer to ops by name).
#pragma once

#include <span>
#include <string_view>

#include "ops/op_def.h"

namespace kiln::ops {

// elementwise.cc
extern const OpDef kAdd, kSub, kMul, kDiv, kPow, kMaximum, kMinimum;
extern const OpDef kNeg, kExp, kLog, kSqrt, kAbs, kSquare;
extern const OpDef kEqual, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual;
extern const OpDef kWhere, kCast, kBroadcastTo, kSumTo, kBroadcastLike, kSumToLike, kCopy;
// activation.cc
extern const OpDef kRelu, kReluGrad, kLeakyRelu, kLeakyReluGrad, kGelu, kGeluGrad, kSigmoid, kTanh,
    kSoftmax, kLogSoftmax;
// reduce.cc
extern const OpDef kSum, kMean, kMax, kSumGrad, kMeanGrad, kArgmax;
// matmul.cc
extern const OpDef kMatmul;
// shape.cc
extern const OpDef kReshape, kReshapeLike, kRows, kTranspose, kConcat, kSlice, kSliceGrad, kGather,
    kGatherGrad, kOneHot, kPad;
// conv.cc, pool.cc
extern const OpDef kConv2D, kConv2DBackwardInput, kConv2DBackwardFilter;
extern const OpDef kMaxPool2D, kMaxPool2DGrad, kMaxPool2DSelect, kFusedMaxPool2DGrad, kAvgPool2D,
    kAvgPool2DGrad;
// conv_pool.cc (conv -> bias -> relu -> max_pool and its filter gradient; graph fusion only)
extern const OpDef kFusedConv2DPool, kFusedConv2DPoolGrad;
// nn.cc
extern const OpDef kDropout, kSoftmaxCrossEntropy, kSoftmaxCrossEntropyGrad, kStopGradient;
// state.cc, updates.cc (stateful: write their first input)
extern const OpDef kAssign, kAssignAdd, kNextKey;
extern const OpDef kSgdUpdate, kAdamUpdate, kRmspropUpdate;
extern const OpDef kSgdUpdateMulti, kAdamUpdateMulti, kRmspropUpdateMulti;  // write every group
// random.cc (pure functions of a key input)
extern const OpDef kRandomUniform, kRandomNormal;

// quantized.cc (int8 inference; not differentiable)
extern const OpDef kQuantize, kDequantize, kQuantizedMatmul, kQuantizedConv2D;
// quantized_dynamic.cc (int8 weights, activations quantized per call; not differentiable)
extern const OpDef kDynamicQuantizedMatmul;
// fake_quant.cc (quantization-aware training: straight-through gradients)
extern const OpDef kFakeQuant, kFakeQuantGrad, kFakeQuantRangeGrad;

// fused.cc, fused_elementwise.cc: emitted by graph/fusion.cc only
extern const OpDef kFusedMatmul, kFusedConv2D, kFusedElementwise;

// For gradient rules: broadcast_to / sum_to / reshape with the target shape read from `like`
// (its shape only; its data is never read), so a graph traced with an unknown dim does not
// bake that dim's size into attrs. They return x itself when the shapes already match.
// Defined in elementwise.cc and shape.cc.
Tensor broadcast_like(const Tensor& x, const Tensor& like);
Tensor sum_to_like(const Tensor& x, const Tensor& like);
Tensor reshape_like(const Tensor& x, const Tensor& like);

// All registered ops.
std::span<const OpDef* const> all_ops();
// The op called `name`, or nullptr.
const OpDef* find_op(std::string_view name);

}  // namespace kiln::ops
