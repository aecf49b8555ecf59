// export_onnx of int8 graphs (compress::quantize_model's ops) in ONNX's QDQ format, the form
// ONNX Runtime's QDQ transformers fuse into QLinearConv / QGemm / uint8 MaxPool:
//
//   quantize(x, s, z)                 -> QuantizeLinear(x, s, z)
//   dequantize(q, s, z)               -> DequantizeLinear(q, s, z)
//   quantized_conv2d / _matmul        -> DequantizeLinear(x_q, x_s, x_z)
//                                        DequantizeLinear(W int8, w_scale [O], 0, axis = O's)
//                                        DequantizeLinear(bias int32, x_s * w_scale [O], axis 0)
//                                        -> Conv / Gemm -> [Relu] -> [QuantizeLinear(y_s, y_z)]
//   max_pool2d / reshape of uint8     -> DequantizeLinear -> MaxPool / Reshape -> QuantizeLinear
//                                        with the input's parameters (exact: a max and a move)
//
// ONNX Runtime fuses a node group only when every input of the float op comes from a
// DequantizeLinear, so the bias is written as int32 at scale x_s * w_scale[o] (rounded: at most
// half of one accumulator unit off, far below one output step). A ReLU before a uint8 output
// with zero point 0 is left out: clamping at the zero point is the same ReLU, and ONNX Runtime
// then sees Conv -> QuantizeLinear directly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "onnx/export.h"
#include "ops/registry.h"

namespace kiln::onnx_export {

using graph::Node;

namespace {

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace

bool Exporter::is_quantized_op(const Node& n) {
  if (n.op == &ops::kQuantize || n.op == &ops::kDequantize || n.op == &ops::kQuantizedConv2D ||
      n.op == &ops::kQuantizedMatmul) {
    return true;
  }
  if (n.op == &ops::kReshape) {  // a 0-size target stays a plain uint8 Reshape (allowzero)
    const auto t = n.attrs.ints();
    if (std::find(t.begin(), t.end(), 0) != t.end()) return false;
  } else if (n.op != &ops::kMaxPool2D) {
    return false;
  }
  return qparams_of(n.inputs[0]).first >= 0;
}

std::pair<int, int> Exporter::qparams_of(int v) {
  const int p = g_.values[v].producer;
  if (g_.values[v].kind != graph::ValueKind::kNode || p < 0) return {-1, -1};
  const Node& n = g_.nodes[p];
  if (n.op == &ops::kQuantize) return {n.inputs[1], n.inputs[2]};
  if ((n.op == &ops::kQuantizedConv2D || n.op == &ops::kQuantizedMatmul) && n.inputs.size() == 8) {
    return {n.inputs[6], n.inputs[7]};
  }
  if ((n.op == &ops::kMaxPool2D || n.op == &ops::kReshape) &&
      (meta(v).dtype == DType::kUInt8 || meta(v).dtype == DType::kInt8)) {
    return qparams_of(n.inputs[0]);
  }
  return {-1, -1};
}

std::string Exporter::qdq_node(const char* type, const std::string& x, int scale, int zp,
                               const std::string& out) {
  return node(type, {x, plain(scale), plain(zp)}, {out})->output(0);
}

float Exporter::const_float(int i, int v, const char* what) const {
  if (!is_capture(v)) {
    unsupported(i, std::string(": its ") + what +
                       " is computed; QDQ export needs constant quantization parameters");
  }
  return *static_cast<const float*>(data(v).raw_data());
}

void Exporter::emit_quantized(int i) {
  const Node& n = g_.nodes[i];
  const int x = n.inputs[0];
  if (n.op == &ops::kQuantize || n.op == &ops::kDequantize) {
    const bool in_nchw = only_nchw(x);
    const std::string out = out_name(n, in_nchw);
    const char* type = n.op == &ops::kQuantize ? "QuantizeLinear" : "DequantizeLinear";
    node(type, {in_nchw ? nchw(x) : plain(x), plain(n.inputs[1]), plain(n.inputs[2])}, {out});
    (in_nchw ? nchw_ : plain_)[n.outputs[0]] = out;
    return;
  }
  if (n.op == &ops::kQuantizedConv2D || n.op == &ops::kQuantizedMatmul) return emit_qlinear(i);
  // max_pool2d / reshape of a uint8 value with known parameters: DQ -> op -> Q.
  const auto [scale, zp] = qparams_of(x);
  const bool pool = n.op == &ops::kMaxPool2D;
  const std::string xf = qdq_node("DequantizeLinear", pool ? nchw(x) : plain(x), scale, zp,
                                  unique(value_name(x, pool ? "_nchw_f" : "_f")));
  const std::string yf = unique(value_name(n.outputs[0], "_f"));
  if (pool) {
    const Attrs& a = n.attrs;
    onnx::NodeProto* p = node("MaxPool", {xf}, {yf});
    attr_ints(p, "kernel_shape", {a.i(0), a.i(1)});
    attr_ints(p, "strides", {a.i(2), a.i(3)});
    set_padding(p, a.i(4) == 1, x, a.i(0), a.i(1), a.i(2), a.i(3), 1, 1);
  } else {
    const std::vector<int64_t> shape(n.attrs.ints().begin(), n.attrs.ints().end());
    node("Reshape", {xf, const_i64(shape, "shape")}, {yf});
  }
  finish(n, node("QuantizeLinear", {yf, plain(scale), plain(zp)}, {out_name(n, pool)}), pool);
}

void Exporter::emit_qlinear(int i) {
  const Node& n = g_.nodes[i];
  const bool conv = n.op == &ops::kQuantizedConv2D;
  const int x = n.inputs[0], w = n.inputs[3], ws = n.inputs[4], b = n.inputs[5];
  const bool u8_out = n.inputs.size() == 8;
  const int relu_attr = conv ? 6 : 0;
  const bool relu = n.attrs.i(relu_attr) != 0;
  for (int v : {w, ws, b}) {
    if (!is_capture(v)) {
      unsupported(i, ": its weights, weight scales and bias must be constants for QDQ export");
    }
  }
  const float x_scale = const_float(i, n.inputs[1], "input scale");
  const std::vector<int64_t> wd = dims(w);  // [K, N] or HWIO
  const int64_t channels = wd.back();
  const float* w_scale = static_cast<const float*>(data(ws).raw_data());
  const float* bias = static_cast<const float*>(data(b).raw_data());

  // The weights: int8 initializer (OIHW for Conv, [K, N] for Gemm) + per-channel DQ.
  std::string& wq = conv ? oihw_init_[w] : plain_[w];
  if (wq.empty()) {
    wq = conv ? initializer("weight_" + std::to_string(w), DType::kInt8,
                            {wd[3], wd[2], wd[0], wd[1]},
                            permute_bytes(static_cast<const char*>(data(w).raw_data()), wd,
                                          {kHwioToOihw, kHwioToOihw + 4}, 1))
              : initializer("weight_" + std::to_string(w), DType::kInt8, wd, bytes(w));
  }
  const std::string scales =
      initializer("w_scale_" + std::to_string(ws), DType::kFloat32, {channels}, bytes(ws));
  const std::string zeros = initializer("w_zero_point_" + std::to_string(w), DType::kInt8,
                                        {channels}, std::string(channels, '\0'));
  const std::string wf = unique(value_name(w, "_f"));
  attr_int(node("DequantizeLinear", {wq, scales, zeros}, {wf}), "axis", conv ? 0 : 1);

  // The bias: int32 at scale x_scale * w_scale[o] when every value fits, else float (correct,
  // though ONNX Runtime then leaves the group unfused).
  std::vector<int32_t> bq(channels);
  std::vector<float> bscale(channels);
  bool fits = true;
  for (int64_t o = 0; o < channels; ++o) {
    bscale[o] = x_scale * w_scale[o];
    const double q = std::nearbyint(double(bias[o]) / bscale[o]);
    fits &= std::abs(q) <= double(std::numeric_limits<int32_t>::max());
    bq[o] = fits ? static_cast<int32_t>(q) : 0;
  }
  std::string bf;
  if (fits) {
    bf = unique("bias_" + std::to_string(b) + "_f");
    const std::string bqn =
        initializer("bias_" + std::to_string(b) + "_int32", DType::kInt32, {channels}, raw(bq));
    const std::string bsn =
        initializer("bias_scale_" + std::to_string(b), DType::kFloat32, {channels}, raw(bscale));
    attr_int(node("DequantizeLinear", {bqn, bsn}, {bf}), "axis", 0);
  } else {
    bf = initializer("bias_" + std::to_string(b), DType::kFloat32, {channels}, bytes(b));
  }

  // The activation, the float op, ReLU, the output's QuantizeLinear.
  const std::string xf = qdq_node("DequantizeLinear", conv ? nchw(x) : plain(x), n.inputs[1],
                                  n.inputs[2], unique(value_name(x, conv ? "_nchw_f" : "_f")));
  const bool relu_in_q = u8_out && relu && is_capture(n.inputs[7]) &&
                         *static_cast<const uint8_t*>(data(n.inputs[7]).raw_data()) == 0;
  const bool last_is_op = !relu || relu_in_q;
  std::string y =
      u8_out || !last_is_op ? unique(value_name(n.outputs[0], "_f")) : out_name(n, conv);
  onnx::NodeProto* p = node(conv ? "Conv" : "Gemm", {xf, wf, bf}, {y});
  if (conv) {
    const Attrs& a = n.attrs;
    attr_ints(p, "kernel_shape", {wd[0], wd[1]});
    attr_ints(p, "strides", {a.i(0), a.i(1)});
    attr_ints(p, "dilations", {a.i(3), a.i(4)});
    attr_int(p, "group", a.i(5));
    set_padding(p, a.i(2) == 1, x, wd[0], wd[1], a.i(0), a.i(1), a.i(3), a.i(4));
  } else {
    attr_float(p, "alpha", 1.0);  // ONNX Runtime's QDQ Gemm check reads beta
    attr_float(p, "beta", 1.0);
  }
  if (!last_is_op) {
    const std::string r = u8_out ? unique(value_name(n.outputs[0], "_relu")) : out_name(n, conv);
    y = node("Relu", {y}, {r})->output(0);
  }
  if (u8_out) y = qdq_node("QuantizeLinear", y, n.inputs[6], n.inputs[7], out_name(n, conv));
  (conv ? nchw_ : plain_)[n.outputs[0]] = y;
}

}  // namespace kiln::onnx_export
