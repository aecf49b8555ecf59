// Dynamic-range quantized Dense: int8 weights (symmetric per output channel, constants), float32
// activations quantized per call from their own range.
//
//   dynamic_quantized_matmul (x f32 [M, K], w s8 [K, N], w_scale f32 [N], bias f32 [N])
//                            -> f32 [M, N]                                  attrs = {relu}
//
// Per call: lo = min(min(x), 0), hi = max(max(x), 0); x_scale = (hi - lo) / 255 (1 when the
// range is empty), x_zero_point = clamp(round_half_even(-lo / x_scale), 0, 255) (the parameters
// compress::quantize_model gives a calibrated range), xq = clamp(round_half_even(x / x_scale) +
// x_zero_point, 0, 255) (the quantize op's rule), then quantized_matmul's arithmetic:
//   v = float(sum_k (xq - x_zero_point) * w) * (x_scale * w_scale[n]) + bias[n], ReLU'd if relu.
// The fast kernel hands xq to quantized_matmul's oneDNN kernel (ops/quantized.cc); the
// reference is plain loops. A non-finite input is a ValueError (its range is meaningless).
// Not differentiable (inference only).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr const char* kOp = "dynamic_quantized_matmul";

struct ActivationParams {
  float scale = 1.f;
  int32_t zero_point = 0;
};

// The batch's range, as quantize_model's qparams() turns a calibrated one into parameters.
ActivationParams batch_params(const Tensor& x) {
  const float* p = detail::ptr<float>(x);
  float lo = 0.f, hi = 0.f;
  bool finite = true;
  for (int64_t i = 0, n = x.numel(); i < n; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
    finite = finite && std::isfinite(p[i]);
  }
  if (!finite) throw ValueError(std::string(kOp) + ": the input holds a non-finite value");
  ActivationParams a;
  a.scale = (hi - lo) / 255.f;
  if (!(a.scale > 0.f) || !std::isfinite(a.scale)) a.scale = 1.f;
  a.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / a.scale), 0.f, 255.f));
  return a;
}

// The quantize op's rounding (ops/quantized.cc): half to even by the 1.5 * 2^23 trick.
inline uint8_t quantize_one(float v, float inv, int32_t zp) {
  constexpr float kMagic = 12582912.f;
  v = std::min(std::max(v * inv, -1024.f), 1024.f);
  const int32_t q = static_cast<int32_t>((v + kMagic) - kMagic) + zp;
  return static_cast<uint8_t>(std::min(std::max(q, 0), 255));
}

Tensor quantize_input(const Tensor& x, const ActivationParams& a) {
  Tensor q = empty(x.shape(), DType::kUInt8);
  const float* p = detail::ptr<float>(x);
  uint8_t* out = detail::ptr<uint8_t>(q);
  const float inv = 1.f / a.scale;
  for (int64_t i = 0, n = x.numel(); i < n; ++i) out[i] = quantize_one(p[i], inv, a.zero_point);
  return q;
}

void check_weight_scales(const Tensor& ws) {
  const float* s = detail::ptr<float>(ws);
  for (int64_t j = 0, n = ws.numel(); j < n; ++j) {
    if (!(s[j] > 0.f) || !std::isfinite(s[j])) {
      throw ValueError(std::string(kOp) + ": weight scale " + std::to_string(j) +
                       " must be positive and finite, got " + std::to_string(s[j]));
    }
  }
}

void dqmm_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  const auto need = [&](int k, const char* what, DType t) {
    if (in[k].dtype != t) {
      throw DTypeError(std::string(kOp) + ": " + what + " must be " + std::string(dtype_name(t)) +
                       ", got " + std::string(dtype_name(in[k].dtype)));
    }
  };
  need(0, "the input", DType::kFloat32);
  need(1, "the weights", DType::kInt8);
  need(2, "the weight scales", DType::kFloat32);
  need(3, "the bias", DType::kFloat32);
  const Shape &x = in[0].shape, &w = in[1].shape;
  if (x.rank() != 2 || w.rank() != 2 || x[1] != w[0]) {
    throw ShapeError(std::string(kOp) + ": shapes " + shapes_str(in) +
                     ": the input must be [M, K] and the weights [K, N]");
  }
  for (int k : {2, 3}) {
    if (in[k].shape != Shape{w[1]}) {
      throw ShapeError(std::string(kOp) + ": shapes " + shapes_str(in) + ": the " +
                       (k == 2 ? "weight scales" : "bias") + " must be [" + std::to_string(w[1]) +
                       "], one per output channel");
    }
  }
  out[0] = {Shape{x[0], w[1]}, DType::kFloat32};
}

void dqmm_reference(const KernelArgs& k) {
  check_weight_scales(k.in[2]);
  const ActivationParams a = batch_params(k.in[0]);
  const Tensor xq = quantize_input(k.in[0], a);
  const int64_t m = k.in[0].shape()[0], kk = k.in[0].shape()[1], n = k.in[1].shape()[1];
  const uint8_t* xp = detail::ptr<uint8_t>(xq);
  const int8_t* w = detail::ptr<int8_t>(k.in[1]);
  const float *ws = detail::ptr<float>(k.in[2]), *bias = detail::ptr<float>(k.in[3]);
  float* y = detail::ptr<float>(k.out[0]);
  const bool relu = k.attrs.i(0) != 0;
  std::vector<int32_t> acc(n);
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0);
    for (int64_t p = 0; p < kk; ++p) {
      const int32_t xv = int32_t(xp[i * kk + p]) - a.zero_point;
      for (int64_t j = 0; j < n; ++j) acc[j] += xv * int32_t(w[p * n + j]);
    }
    for (int64_t j = 0; j < n; ++j) {
      const float mult = a.scale * ws[j];
      const float v = static_cast<float>(acc[j]) * mult + bias[j];
      y[i * n + j] = relu ? std::max(v, 0.f) : v;
    }
  }
}

// quantized_matmul's fast kernel on the quantized input (it declines what oneDNN cannot run
// exactly, and the reference then runs).
bool dqmm_fast(const KernelArgs& k) {
  check_weight_scales(k.in[2]);
  const ActivationParams a = batch_params(k.in[0]);
  const Tensor in[6] = {quantize_input(k.in[0], a),
                        scalar(a.scale),
                        scalar(a.zero_point, DType::kUInt8),
                        k.in[1],
                        k.in[2],
                        k.in[3]};
  const Attrs attrs{k.attrs.i(0)};
  return ops::kQuantizedMatmul.fast(KernelArgs{in, k.out, attrs});
}

int64_t dqmm_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta> out) {
  return 2 * out[0].shape.numel() * in[0].shape[1];
}

constexpr AttrField kDqmmFields[] = {{"relu", AttrType::kBool}};
constexpr AttrSchema kDqmmSchema{kDqmmFields};

}  // namespace

namespace ops {
const OpDef kDynamicQuantizedMatmul{.name = "dynamic_quantized_matmul",
                                    .num_inputs = 4,
                                    .num_outputs = 1,
                                    .infer = dqmm_infer,
                                    .reference = dqmm_reference,
                                    .fast = dqmm_fast,
                                    .flags = kNotDifferentiable,
                                    .attrs = &kDqmmSchema,
                                    .flops = dqmm_flops};
}  // namespace ops

Tensor dynamic_quantized_matmul(const Tensor& x, const Tensor& weights, const Tensor& weight_scales,
                                const Tensor& bias, bool relu) {
  return run_op(ops::kDynamicQuantizedMatmul, {x, weights, weight_scales, bias},
                Attrs{relu ? 1 : 0});
}

}  // namespace kiln
