// ONNX's QuantizeLinear / DequantizeLinear onto kiln's quantize / dequantize (ops/quantized.cc),
// so QDQ models (export_onnx of kiln's int8 graphs, ONNX Runtime's quantizer's) import: the
// activations' Q -> DQ pairs become kiln's uint8/int8 round trips and per-channel weights are
// dequantized once at import (a constant in, a constant out), leaving float Conv/Gemm.
//
//   QuantizeLinear(x, scale [], zero_point uint8|int8 [] (default uint8 0))    -> quantize
//   DequantizeLinear(q uint8|int8, scale [], zero_point [])                     -> dequantize
//   DequantizeLinear(q uint8|int8|int32, scale [C] or [], zero_point, axis)    -> the float
//     formula (q - zero_point) * scale, broadcast along `axis`
// kiln's quantize multiplies by 1 / scale where ONNX divides: a result may differ by one step
// where x / scale falls within a rounding error of a half.
#include <string>
#include <vector>

#include "kiln/ops.h"
#include "onnx/import_context.h"

namespace kiln::onnx_import {

namespace {

bool is_8bit(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

// scale (and zero point) reshaped to broadcast along `axis` of a rank-`rank` tensor.
Tensor along_axis(const Tensor& t, int axis, int rank) {
  if (t.rank() == 0) return t;
  std::vector<int64_t> shape(rank, 1);
  shape[axis] = t.shape()[0];
  return reshape(t, Shape(shape));
}

void check_params(NodeCtx& c, const Tensor& scale, const Tensor* zp, int64_t channels) {
  if (scale.dtype() != DType::kFloat32) {
    c.fail("the scale must be float32, got " + std::string(dtype_name(scale.dtype())));
  }
  const bool per_tensor = scale.rank() == 0 || (scale.rank() == 1 && scale.shape()[0] == 1);
  if (!per_tensor && (scale.rank() != 1 || scale.shape()[0] != channels)) {
    c.fail("the scale must be a scalar or have one value per channel of the axis (" +
           std::to_string(channels) + "), got " + to_string(scale.shape()));
  }
  if (zp && zp->shape() != scale.shape()) {
    c.fail("the zero point's shape " + to_string(zp->shape()) + " differs from the scale's " +
           to_string(scale.shape()));
  }
}

void map_quantize_linear(NodeCtx& c) {
  require_input_count(c, 2, 3);
  OValue& x = c.value(0);
  const Tensor scale = c.const_in(1, "the scale");
  const Tensor zp = c.has_input(2) ? c.const_in(2, "the zero point") : scalar(0, DType::kUInt8);
  if (scale.rank() != 0 && scale.numel() != 1) {
    c.fail("per-axis QuantizeLinear (a " + to_string(scale.shape()) +
           " scale) is not supported; kiln quantizes activations per tensor");
  }
  if (!is_8bit(zp.dtype())) {
    c.fail("the zero point must be uint8 or int8, got " + std::string(dtype_name(zp.dtype())));
  }
  check_params(c, scale, &zp, 1);
  if (x.t.dtype() != DType::kFloat32) {
    c.fail("the input must be float32, got " + std::string(dtype_name(x.t.dtype())));
  }
  c.set_out(0, OValue{quantize(x.t, reshape(scale, Shape{}), reshape(zp, Shape{})), x.perm});
}

void map_dequantize_linear(NodeCtx& c) {
  require_input_count(c, 2, 3);
  OValue& q = c.value(0);
  const DType dt = q.t.dtype();
  if (!is_8bit(dt) && dt != DType::kInt32) {
    c.fail("the input must be uint8, int8 or int32, got " + std::string(dtype_name(dt)));
  }
  const Tensor scale = c.const_in(1, "the scale");
  const Tensor zp = c.has_input(2) ? c.const_in(2, "the zero point") : Tensor();
  if (zp.defined() && zp.dtype() != dt) {
    c.fail("the zero point's dtype " + std::string(dtype_name(zp.dtype())) +
           " differs from the input's " + std::string(dtype_name(dt)));
  }
  const bool per_tensor = scale.rank() == 0 || (scale.rank() == 1 && scale.numel() == 1);
  if (per_tensor && is_8bit(dt)) {
    check_params(c, scale, zp.defined() ? &zp : nullptr, 1);
    const Tensor z = zp.defined() ? reshape(zp, Shape{}) : scalar(0, dt);
    c.set_out(0, OValue{dequantize(q.t, reshape(scale, Shape{}), z), q.perm});
    return;
  }
  // Per axis (weights, biases) or int32: the formula, in the ONNX layout.
  const Tensor x = c.in(0);
  const int axis = per_tensor ? 0 : normalize_axis(c, c.attr_int("axis", 1), x.rank());
  check_params(c, scale, zp.defined() ? &zp : nullptr, per_tensor ? 1 : x.shape()[axis]);
  auto param = [&](const Tensor& t) {
    const Tensor f = cast(t, DType::kFloat32);
    return per_tensor ? reshape(f, Shape{}) : along_axis(f, axis, x.rank());
  };
  Tensor y = cast(x, DType::kFloat32);
  if (zp.defined()) y = sub(y, param(zp));
  c.set_out(0, mul(y, param(scale)));
}

}  // namespace

std::vector<Mapping> quantize_mappings() {
  return {
      {"QuantizeLinear", map_quantize_linear},
      {"DequantizeLinear", map_dequantize_linear},
  };
}

}  // namespace kiln::onnx_import
