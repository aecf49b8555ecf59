// export_onnx's op mappings: one emitter per kiln op (or family), onto ONNX opset 13..17 ops.
// The layouts and names they use are export.h's.
#include <algorithm>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "onnx/export.h"
#include "ops/registry.h"

namespace kiln::onnx_export {

using graph::Node;

void Exporter::unsupported(int i, const std::string& why) const {
  throw ValueError("export_onnx: op '" + std::string(g_.nodes[i].op->name) + "' (node " +
                   std::to_string(i) + ") has no ONNX mapping" + why);
}

void Exporter::set_padding(onnx::NodeProto* p, bool same, int x, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t dh, int64_t dw) {
  if (!same) return;  // valid: no padding, floor rounding (ONNX's defaults)
  if (!spatial_known_) {
    attr_string(p, "auto_pad", "SAME_UPPER");  // TensorFlow's same: the odd pixel after
    return;
  }
  auto pad = [](int64_t in, int64_t k, int64_t s, int64_t d) {
    const int64_t out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>((out - 1) * s + (k - 1) * d + 1 - in, 0);
    return std::pair<int64_t, int64_t>{total / 2, total - total / 2};
  };
  auto [t, b] = pad(meta(x).shape[1], kh, sh, dh);
  auto [l, r] = pad(meta(x).shape[2], kw, sw, dw);
  attr_ints(p, "pads", {t, l, b, r});
}

std::string Exporter::absorb_bias(int v, int64_t channels) {
  if (readers_[v].size() != 1 || !port_of_[v].empty()) return "";
  for (int32_t o : g_.outputs) {
    if (o == v) return "";
  }
  const int r = readers_[v][0];
  const Node& add = g_.nodes[r];
  if (add.op != &ops::kAdd) return "";
  const int32_t b = add.inputs[0] == v ? add.inputs[1] : add.inputs[0];
  if (b == v || !is_capture(b) || meta(b).dtype != meta(v).dtype) return "";
  const Shape& bs = meta(b).shape;
  if (bs.rank() == 0 || bs.rank() > rank(v) || bs.numel() != channels || bs.dim(-1) != channels) {
    return "";
  }
  absorbed_[r] = true;
  bias_out_ = add.outputs[0];
  std::string& name = bias_init_[b];  // a shared bias is stored once
  if (name.empty())
    name = initializer("bias_" + std::to_string(b), meta(b).dtype, {channels}, bytes(b));
  return name;
}

void Exporter::emit_conv(int i) {
  const Node& n = g_.nodes[i];
  const Attrs& a = n.attrs;
  const int x = n.inputs[0], f = n.inputs[1];
  const std::vector<int64_t> fd = dims(f);  // [KH, KW, C/groups, O]
  std::string w;
  if (is_capture(f) && !oihw_init_[f].empty()) {
    w = oihw_init_[f];  // a shared filter is stored once
  } else if (is_capture(f)) {
    w = oihw_init_[f] =
        initializer("weight_" + std::to_string(f), meta(f).dtype, {fd[3], fd[2], fd[0], fd[1]},
                    permute_bytes(static_cast<const char*>(data(f).raw_data()), fd,
                                  {kHwioToOihw, kHwioToOihw + 4}, size_of(meta(f).dtype)));
  } else {
    onnx::NodeProto* t = node("Transpose", {plain(f)}, {unique(value_name(f, "_oihw"))});
    attr_ints(t, "perm", {kHwioToOihw, kHwioToOihw + 4});
    w = t->output(0);
  }
  std::vector<std::string> in{nchw(x), w};
  bias_out_ = -1;
  const std::string bias = absorb_bias(n.outputs[0], fd[3]);
  if (!bias.empty()) in.push_back(bias);
  const int out = bias_out_ >= 0 ? bias_out_ : n.outputs[0];
  onnx::NodeProto* p = node("Conv", in, {unique(value_name(out, "_nchw"))});
  attr_ints(p, "kernel_shape", {fd[0], fd[1]});
  attr_ints(p, "strides", {a.i(0), a.i(1)});
  attr_ints(p, "dilations", {a.i(3), a.i(4)});
  attr_int(p, "group", a.i(5));
  set_padding(p, a.i(2) == 1, x, fd[0], fd[1], a.i(0), a.i(1), a.i(3), a.i(4));
  nchw_[out] = p->output(0);
  if (out != n.outputs[0]) nchw_[n.outputs[0]] = p->output(0);  // read by nothing else
}

void Exporter::emit_pool(int i, const char* type) {
  const Node& n = g_.nodes[i];
  const Attrs& a = n.attrs;  // pool_h, pool_w, stride_h, stride_w, padding
  onnx::NodeProto* p = node(type, {nchw(n.inputs[0])}, {out_name(n, true)});
  attr_ints(p, "kernel_shape", {a.i(0), a.i(1)});
  attr_ints(p, "strides", {a.i(2), a.i(3)});
  if (n.op == &ops::kAvgPool2D) attr_int(p, "count_include_pad", 0);  // kiln averages in-bounds
  set_padding(p, a.i(4) == 1, n.inputs[0], a.i(0), a.i(1), a.i(2), a.i(3), 1, 1);
  finish(n, p, true);
}

void Exporter::emit_matmul(int i) {
  const Node& n = g_.nodes[i];
  const bool ta = n.attrs.i(0) != 0, tb = n.attrs.i(1) != 0;
  const int a = n.inputs[0], b = n.inputs[1];
  if (meta(a).dtype == DType::kInt8 || meta(a).dtype == DType::kUInt8) {
    unsupported(i, " for " + std::string(dtype_name(meta(a).dtype)) +
                       ": ONNX's MatMul takes no 8-bit integers (MatMulInteger widens to int32)");
  }
  // Gemm (float types only): transposes are attributes, the bias an input.
  if (rank(a) == 2 && rank(b) == 2 && is_floating(meta(a).dtype)) {
    std::vector<std::string> in{plain(a), plain(b)};
    bias_out_ = -1;
    const std::string bias = absorb_bias(n.outputs[0], meta(n.outputs[0]).shape[1]);
    if (!bias.empty()) in.push_back(bias);
    const int out = bias_out_ >= 0 ? bias_out_ : n.outputs[0];
    onnx::NodeProto* p = node("Gemm", in, {plain_target(out)});
    if (ta) attr_int(p, "transA", 1);
    if (tb) attr_int(p, "transB", 1);
    plain_[out] = p->output(0);
    if (out != n.outputs[0]) plain_[n.outputs[0]] = p->output(0);
    return;
  }
  auto operand = [&](int v, bool t) {
    if (!t) return plain(v);
    std::vector<int> perm(rank(v));
    for (int d = 0; d < rank(v); ++d) perm[d] = d;
    std::swap(perm[rank(v) - 1], perm[rank(v) - 2]);
    if (is_capture(v)) {
      std::vector<int64_t> d = dims(v), td = d;
      std::swap(td[td.size() - 1], td[td.size() - 2]);
      return initializer("const_" + std::to_string(v) + "_t", meta(v).dtype, td,
                         permute_bytes(static_cast<const char*>(data(v).raw_data()), d, perm,
                                       size_of(meta(v).dtype)));
    }
    onnx::NodeProto* p = node("Transpose", {plain(v)}, {unique(value_name(v, "_t"))});
    attr_ints(p, "perm", {perm.begin(), perm.end()});
    return p->output(0);
  };
  finish(n, node("MatMul", {operand(a, ta), operand(b, tb)}, {out_name(n, false)}), false);
}

void Exporter::emit_reduce(int i, const char* type) {
  const Node& n = g_.nodes[i];
  const int x = n.inputs[0], r = rank(x);
  const bool keep = n.attrs.i(0) != 0;
  std::vector<int64_t> axes;
  for (int k = 1; k < n.attrs.num_ints(); ++k) axes.push_back((n.attrs.i(k) % r + r) % r);
  // In NCHW when x is: kept as NCHW (keepdims), or plain when the dims left keep their order
  // (C gone, or both H and W gone: global pooling's [N, C]).
  bool in_nchw = false, out_nchw = false;
  if (r == 4 && only_nchw(x)) {
    if (axes.empty()) axes = {0, 1, 2, 3};  // all: the same in either layout
    auto gone = [&](int d) { return std::find(axes.begin(), axes.end(), d) != axes.end(); };
    const bool order_kept = gone(3) || (gone(1) && gone(2));
    in_nchw = keep || order_kept;
    out_nchw = keep;
    if (in_nchw) {
      for (int64_t& ax : axes) ax = kAxisInNchw[ax];
      std::sort(axes.begin(), axes.end());
    }
  }
  std::vector<std::string> in{in_nchw ? nchw(x) : plain(x)};
  if (n.op == &ops::kSum && !axes.empty()) in.push_back(const_i64(axes, "axes"));  // an input
  onnx::NodeProto* p = node(type, in, {out_name(n, out_nchw)});
  if (n.op != &ops::kSum && !axes.empty()) attr_ints(p, "axes", axes);  // an attribute (< 18)
  attr_int(p, "keepdims", keep ? 1 : 0);
  finish(n, p, out_nchw);
}

// gelu(x) = x/2 (1 + erf(x / sqrt 2)), or with approximate: x/2 (1 + tanh(sqrt(2/pi) (x +
// 0.044715 x^3))) (opset 20 has Gelu; 13..17 need the formula).
void Exporter::emit_gelu(const Node& n) {
  const int x = n.inputs[0];
  const DType dt = meta(x).dtype;
  const bool in_nchw = only_nchw(x);
  const std::string xs = in_nchw ? nchw(x) : plain(x);
  auto tmp = [&] { return unique("gelu_" + std::to_string(x)); };
  std::string inner;
  if (n.attrs.i(0) != 0) {
    const std::string x3 =
        node("Mul", {xs, node("Mul", {xs, xs}, {tmp()})->output(0)}, {tmp()})->output(0);
    const std::string s =
        node("Add", {xs, node("Mul", {x3, const_scalar(0.044715, dt)}, {tmp()})->output(0)},
             {tmp()})
            ->output(0);
    const std::string z =
        node("Mul", {s, const_scalar(0.7978845608028654, dt)}, {tmp()})->output(0);
    inner = node("Tanh", {z}, {tmp()})->output(0);
  } else {
    const std::string z =
        node("Mul", {xs, const_scalar(0.7071067811865476, dt)}, {tmp()})->output(0);
    inner = node("Erf", {z}, {tmp()})->output(0);
  }
  const std::string one_plus = node("Add", {inner, const_scalar(1.0, dt)}, {tmp()})->output(0);
  const std::string half_x = node("Mul", {xs, const_scalar(0.5, dt)}, {tmp()})->output(0);
  finish(n, node("Mul", {half_x, one_plus}, {out_name(n, in_nchw)}), in_nchw);
}

namespace {

struct SimpleOp {
  const OpDef* op;
  const char* onnx;
};
// Elementwise ops mapped one to one (layout-free).
const SimpleOp kElementwise[] = {
    {&ops::kAdd, "Add"},
    {&ops::kSub, "Sub"},
    {&ops::kMul, "Mul"},
    {&ops::kDiv, "Div"},
    {&ops::kPow, "Pow"},
    {&ops::kMaximum, "Max"},
    {&ops::kMinimum, "Min"},
    {&ops::kEqual, "Equal"},
    {&ops::kLess, "Less"},
    {&ops::kLessEqual, "LessOrEqual"},
    {&ops::kGreater, "Greater"},
    {&ops::kGreaterEqual, "GreaterOrEqual"},
    {&ops::kWhere, "Where"},
    {&ops::kRelu, "Relu"},
    {&ops::kSigmoid, "Sigmoid"},
    {&ops::kTanh, "Tanh"},
    {&ops::kNeg, "Neg"},
    {&ops::kExp, "Exp"},
    {&ops::kLog, "Log"},
    {&ops::kSqrt, "Sqrt"},
    {&ops::kAbs, "Abs"},
    {&ops::kCopy, "Identity"},
    {&ops::kStopGradient, "Identity"},
};

}  // namespace

void Exporter::emit(int i) {
  const Node& n = g_.nodes[i];
  const OpDef* op = n.op;
  const Attrs& a = n.attrs;
  for (const SimpleOp& s : kElementwise) {
    if (s.op == op) return elementwise(n, s.onnx);
  }
  const int x = n.inputs.empty() ? -1 : n.inputs[0];
  if (is_quantized_op(n)) return emit_quantized(i);
  if (op == &ops::kConv2D) return emit_conv(i);
  if (op == &ops::kMaxPool2D) return emit_pool(i, "MaxPool");
  if (op == &ops::kAvgPool2D) return emit_pool(i, "AveragePool");
  if (op == &ops::kMatmul) return emit_matmul(i);
  if (op == &ops::kSum) return emit_reduce(i, "ReduceSum");
  if (op == &ops::kMean) return emit_reduce(i, "ReduceMean");
  if (op == &ops::kMax) return emit_reduce(i, "ReduceMax");
  if (op == &ops::kGelu) return emit_gelu(n);
  if (op == &ops::kDropout) return alias(n, x);  // inference: the identity (ONNX's too)
  if (op == &ops::kLeakyRelu || op == &ops::kCast || op == &ops::kSquare) {
    const bool in_nchw = only_nchw(x);
    const std::string xs = in_nchw ? nchw(x) : plain(x);
    onnx::NodeProto* p;
    if (op == &ops::kSquare) {
      p = node("Mul", {xs, xs}, {out_name(n, in_nchw)});
    } else if (op == &ops::kCast) {
      p = node("Cast", {xs}, {out_name(n, in_nchw)});
      attr_int(p, "to", onnx_type(static_cast<DType>(a.i(0))));
    } else {
      p = node("LeakyRelu", {xs}, {out_name(n, in_nchw)});
      attr_float(p, "alpha", a.f(0));
    }
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kNotEqual) {
    const bool in_nchw = elementwise_in_nchw(n);
    auto in = [&](int v) { return in_nchw ? nchw(v) : plain(v); };
    const std::string eq =
        node("Equal", {in(n.inputs[0]), in(n.inputs[1])}, {unique("ne_" + std::to_string(i))})
            ->output(0);
    return finish(n, node("Not", {eq}, {out_name(n, in_nchw)}), in_nchw);
  }
  if (op == &ops::kSoftmax || op == &ops::kLogSoftmax) {
    const int r = rank(x);
    int64_t axis = (a.i(0) % r + r) % r;
    const bool in_nchw = r == 4 && only_nchw(x);
    if (in_nchw) axis = kAxisInNchw[axis];
    onnx::NodeProto* p = node(op == &ops::kSoftmax ? "Softmax" : "LogSoftmax",
                              {in_nchw ? nchw(x) : plain(x)}, {out_name(n, in_nchw)});
    attr_int(p, "axis", axis);
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kConcat) {
    const int r = rank(n.outputs[0]);
    bool in_nchw = false;
    if (r == 4) {
      in_nchw = true;
      bool any = false;
      for (int32_t v : n.inputs) any |= only_nchw(v);
      for (int32_t v : n.inputs) in_nchw &= is_capture(v) || rank(v) == 4;
      in_nchw &= any;
    }
    std::vector<std::string> in;
    for (int32_t v : n.inputs) in.push_back(in_nchw ? nchw(v) : plain(v));
    int64_t axis = (a.i(0) % r + r) % r;
    onnx::NodeProto* p = node("Concat", in, {out_name(n, in_nchw)});
    attr_int(p, "axis", in_nchw ? kAxisInNchw[axis] : axis);
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kTranspose) {
    std::vector<int64_t> perm(a.ints().begin(), a.ints().end());
    std::string in;
    if (rank(x) == 4 && only_nchw(x)) {  // one Transpose from NCHW straight to the result
      for (int64_t& p : perm) p = kAxisInNchw[p];
      in = nchw(x);
    } else {
      in = plain(x);
    }
    bool identity = true;
    for (size_t d = 0; d < perm.size(); ++d) identity &= perm[d] == static_cast<int64_t>(d);
    if (identity) {  // NHWC -> NCHW of a value already held as NCHW
      plain_[n.outputs[0]] = in;
      return;
    }
    onnx::NodeProto* p = node("Transpose", {in}, {out_name(n, false)});
    attr_ints(p, "perm", perm);
    return finish(n, p, false);
  }
  if (op == &ops::kReshape) {
    std::vector<int64_t> shape(a.ints().begin(), a.ints().end());
    const bool zero = std::find(shape.begin(), shape.end(), 0) != shape.end();
    if (zero && opset_ < 14) {
      unsupported(i, " at opset " + std::to_string(opset_) +
                         ": a 0-size target dim needs Reshape's allowzero (opset 14 and later)");
    }
    onnx::NodeProto* p =
        node("Reshape", {plain(x), const_i64(shape, "shape")}, {out_name(n, false)});
    if (zero) attr_int(p, "allowzero", 1);
    return finish(n, p, false);
  }
  if (op == &ops::kReshapeLike || op == &ops::kBroadcastLike) {
    const std::string shape =
        node("Shape", {plain(n.inputs[1])}, {unique("shape_" + std::to_string(i))})->output(0);
    return finish(n,
                  node(op == &ops::kReshapeLike ? "Reshape" : "Expand", {plain(x), shape},
                       {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kBroadcastTo) {
    std::vector<int64_t> shape(a.ints().begin(), a.ints().end());
    return finish(n, node("Expand", {plain(x), const_i64(shape, "shape")}, {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kGather) {
    onnx::NodeProto* p = node("Gather", {plain(x), plain(n.inputs[1])}, {out_name(n, false)});
    attr_int(p, "axis", a.i(0));
    return finish(n, p, false);
  }
  if (op == &ops::kRows || op == &ops::kSlice) {
    std::vector<int64_t> starts, ends, axes, steps;
    if (op == &ops::kRows) {
      starts = {a.i(0)}, ends = {a.i(1)}, axes = {0}, steps = {1};
    } else {
      for (int d = 0; 3 * d + 2 < a.num_ints(); ++d) {
        starts.push_back(a.i(3 * d)), ends.push_back(a.i(3 * d + 1));
        axes.push_back(d), steps.push_back(a.i(3 * d + 2));
      }
    }
    if (axes.empty()) return alias(n, x);
    return finish(n,
                  node("Slice",
                       {plain(x), const_i64(starts, "starts"), const_i64(ends, "ends"),
                        const_i64(axes, "axes"), const_i64(steps, "steps")},
                       {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kPad) {
    const int r = rank(x), pairs = a.num_ints() / 2;
    std::vector<int64_t> pads(2 * r, 0);
    for (int d = 0; d < pairs; ++d) pads[d] = a.i(2 * d), pads[r + d] = a.i(2 * d + 1);
    return finish(
        n,
        node("Pad", {plain(x), const_i64(pads, "pads"), const_scalar(a.f(0), meta(x).dtype)},
             {out_name(n, false)}),
        false);
  }
  if (op == &ops::kArgmax) {
    onnx::NodeProto* p = node("ArgMax", {plain(x)}, {out_name(n, false)});
    attr_int(p, "axis", a.i(0));
    attr_int(p, "keepdims", a.i(1));
    return finish(n, p, false);
  }
  if (op == &ops::kFusedMatmul || op == &ops::kFusedConv2D || op == &ops::kFusedElementwise) {
    unsupported(i, ": fused ops appear only in the graph that runs; export the stored graph");
  }
  unsupported(i, "");
}

}  // namespace kiln::onnx_export
