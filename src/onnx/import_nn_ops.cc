// ONNX ops onto kiln ops: convolution, pooling and BatchNormalization. (Pad and Resize:
// import_resample_ops.cc.)
//
// Layout: ONNX is NCHW with OIHW filters; kiln's conv2d and pools are NHWC with HWIO filters.
// Filters that are constants are converted once at import; activations are transposed into
// NHWC at the first conv or pool and held there (OValue::perm) through elementwise ops, global
// pools, BatchNormalization, Resize and further convs, so a conv net transposes at its edges.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/context.h"
#include "graph/scoped_recorders.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"
#include "ops/registry.h"

namespace kiln::onnx_import {
namespace {

const std::vector<int> kToNhwc{0, 2, 3, 1};

// Window parameters past this are refused before any arithmetic on them could overflow.
constexpr int64_t kMaxWindow = int64_t{1} << 24;

const std::vector<int> kToNlc{0, 2, 1};

// 1-D ops ([N, C, L]) run as 2-D ones with H = 1: inputs [N, 1, L, C], filters [1, K, I, O].
bool is_1d(NodeCtx& c) {
  const int r = c.traced_shape(0).rank();
  if (r != 3 && r != 4) {
    c.fail("only 1-D and 2-D (NCL, NCHW) inputs are supported, got rank " + std::to_string(r));
  }
  return r == 3;
}

// The input's dims as NCHW (H = 1 for 1-D) and which of them are unknown.
Shape nchw_shape(NodeCtx& c, bool one_d) {
  const Shape s = c.traced_shape(0);
  return one_d ? Shape{s[0], s[1], 1, s[2]} : s;
}
std::vector<bool> nchw_unknown(NodeCtx& c, bool one_d) {
  const std::vector<bool> u = c.unknown_dims(0);
  return one_d ? std::vector<bool>{u[0], u[1], false, u[2]} : u;
}

// A spatial attribute for 2 dims: a 1-D op's values get the H dim's neutral value in front
// (pads [b, e] -> [0, b, 0, e]).
std::vector<int64_t> spatial_attr(NodeCtx& c, const char* name, bool one_d, int64_t neutral) {
  std::vector<int64_t> v = c.attr_ints(name);
  if (!one_d || v.empty()) return v;
  if (std::string(name) == "pads") {
    if (v.size() != 2) c.fail("pads must hold 2 values for a 1-D op");
    return {0, v[0], 0, v[1]};
  }
  if (v.size() != 1) c.fail(std::string(name) + " must hold 1 value for a 1-D op");
  return {neutral, v[0]};
}

// x in NHWC: the held tensor when it is held so, else transposed.
Tensor nhwc_of(NodeCtx& c, int k, bool one_d) {
  OValue& v = c.value(k);
  if (v.tainted && !c.folding()) c.in(k);
  if (!one_d) return v.perm == kToNhwc ? v.t : transpose(c.in(k), kToNhwc);
  const Tensor nlc = v.perm == kToNlc ? v.t : transpose(c.in(k), kToNlc);
  const std::vector<bool> u = c.unknown_dims(k);
  return reshape_to(c, nlc, Shape{nlc.shape()[0], 1, nlc.shape()[1], nlc.shape()[2]},
                    {u[0], false, u[2], false});
}

// The NHWC result, held so (1-D: [N, L, C] held as NLC).
OValue held_out(NodeCtx& c, Tensor y, bool one_d) {
  if (!one_d) return OValue{std::move(y), kToNhwc};
  const std::vector<bool> u = c.unknown_dims(0);
  Tensor nlc =
      reshape_to(c, y, Shape{y.shape()[0], y.shape()[2], y.shape()[3]}, {u[0], false, false});
  return OValue{nlc, kToNlc};
}

// A filter OIHW -> HWIO ([KH, KW, I, O]); `perm` {2, 3, 1, 0}. ConvTranspose's IOHW filter
// takes the same permutation to [KH, KW, O/g, I]. A 1-D filter [O, I, K] is [O, I, 1, K].
Tensor hwio_of(NodeCtx& c, int k, bool one_d) {
  Tensor w = c.in(k);
  if (w.rank() != (one_d ? 3 : 4))
    c.fail("the filter must be " + std::string(one_d ? "3" : "4") + "-D, got " +
           to_string(w.shape()));
  const bool constant = !is_symbolic(w);
  if (constant) c.charge(w.numel(), w.dtype());
  graph::ScopedRecorders eager(nullptr, constant ? nullptr : detail::thread_context().tracer,
                               detail::thread_context().trace_scope);
  if (one_d) w = reshape(w, Shape{w.shape()[0], w.shape()[1], 1, w.shape()[2]});
  return transpose(w, {2, 3, 1, 0});
}

std::vector<int64_t> ints_or(const std::vector<int64_t>& v, size_t n, int64_t fallback) {
  return v.empty() ? std::vector<int64_t>(n, fallback) : v;
}

struct Window {
  int64_t k[2], s[2], d[2];
  int64_t pad_begin[2], pad_end[2];
  bool same_upper = false;  // kiln's own "same" (TensorFlow's: the odd pixel after)
};

// Kernel, strides, dilations and padding of a 2-D window op; in = spatial input dims.
Window window_of(NodeCtx& c, const int64_t kernel[2], const int64_t in[2], bool allow_dilation,
                 bool one_d) {
  Window w{};
  const std::vector<int64_t> strides = ints_or(spatial_attr(c, "strides", one_d, 1), 2, 1);
  const std::vector<int64_t> dil = ints_or(spatial_attr(c, "dilations", one_d, 1), 2, 1);
  const std::vector<int64_t> pads = ints_or(spatial_attr(c, "pads", one_d, 0), 4, 0);
  if (strides.size() != 2 || dil.size() != 2 || pads.size() != 4) {
    c.fail("strides, dilations and pads must be given for 2 spatial dims");
  }
  for (int i = 0; i < 2; ++i) {
    w.k[i] = kernel[i];
    w.s[i] = strides[i];
    w.d[i] = dil[i];
    if (w.s[i] < 1 || w.d[i] < 1 || w.k[i] < 1)
      c.fail("kernel, strides and dilations must be >= 1");
    if (w.s[i] > kMaxWindow || w.d[i] > kMaxWindow || w.k[i] > kMaxWindow ||
        std::abs(pads[i]) > kMaxWindow || std::abs(pads[i + 2]) > kMaxWindow) {
      c.fail("kernel, strides, dilations and pads must be below 2^24");
    }
    if (!allow_dilation && w.d[i] != 1) c.fail("dilations other than 1 are not supported");
    if (pads[i] < 0 || pads[i + 2] < 0) c.fail("negative pads are not supported");
    w.pad_begin[i] = pads[i];
    w.pad_end[i] = pads[i + 2];
  }
  const std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int i = 0; i < 2; ++i) {
      const int64_t out = (in[i] + w.s[i] - 1) / w.s[i];
      const int64_t eff = (w.k[i] - 1) * w.d[i] + 1;
      const int64_t total = std::max<int64_t>((out - 1) * w.s[i] + eff - in[i], 0);
      const int64_t small = total / 2;
      w.pad_begin[i] = auto_pad == "SAME_UPPER" ? small : total - small;
      w.pad_end[i] = total - w.pad_begin[i];
    }
    w.same_upper = auto_pad == "SAME_UPPER";
  } else if (auto_pad == "VALID") {
    for (int i = 0; i < 2; ++i) w.pad_begin[i] = w.pad_end[i] = 0;
  } else if (auto_pad != "NOTSET") {
    c.fail("auto_pad '" + auto_pad + "' is not supported");
  }
  return w;
}

bool no_padding(const Window& w) {
  return w.pad_begin[0] == 0 && w.pad_begin[1] == 0 && w.pad_end[0] == 0 && w.pad_end[1] == 0;
}

// Whether the explicit pads equal kiln's "same" for these sizes.
bool is_tf_same(const Window& w, const int64_t in[2]) {
  for (int i = 0; i < 2; ++i) {
    const int64_t out = (in[i] + w.s[i] - 1) / w.s[i];
    const int64_t eff = (w.k[i] - 1) * w.d[i] + 1;
    const int64_t total = std::max<int64_t>((out - 1) * w.s[i] + eff - in[i], 0);
    if (w.pad_begin[i] != total / 2 || w.pad_end[i] != total - total / 2) return false;
  }
  return true;
}

Tensor pad_spatial(const Tensor& x_nhwc, const Window& w, double value) {
  return pad(x_nhwc,
             {{0, 0}, {w.pad_begin[0], w.pad_end[0]}, {w.pad_begin[1], w.pad_end[1]}, {0, 0}},
             value);
}

// ---- Conv ------------------------------------------------------------------------------------

void map_conv(NodeCtx& c) {
  const bool one_d = is_1d(c);
  const Shape xs = nchw_shape(c, one_d);  // N, C, H, W
  const std::vector<bool> u = nchw_unknown(c, one_d);
  Tensor f = hwio_of(c, 1, one_d);  // KH, KW, C/g, O
  const int64_t kernel[2] = {f.shape()[0], f.shape()[1]};
  const std::vector<int64_t> ks = spatial_attr(c, "kernel_shape", one_d, 1);
  if (!ks.empty() && (ks.size() != 2 || ks[0] != kernel[0] || ks[1] != kernel[1])) {
    c.fail("kernel_shape does not match the filter");
  }
  const int64_t in[2] = {xs[2], xs[3]};
  Window w = window_of(c, kernel, in, true, one_d);
  if ((u[2] || u[3]) && !no_padding(w) && !w.same_upper) {
    c.fail("explicit padding of a symbolic spatial dim is not supported");
  }
  Conv2DOptions o;
  o.strides = {w.s[0], w.s[1]};
  o.dilation = {w.d[0], w.d[1]};
  o.groups = c.attr_int("group", 1);
  if (o.groups < 1) c.fail("group must be >= 1");
  Tensor x = nhwc_of(c, 0, one_d);
  if (w.same_upper || (!no_padding(w) && is_tf_same(w, in))) {
    o.padding = Padding::kSame;
  } else if (!no_padding(w)) {
    x = pad_spatial(x, w, 0.0);
  }
  if (f.dtype() != x.dtype()) c.fail("X and W must have the same dtype");
  Tensor y = conv2d(x, f, o);
  if (c.has_input(2)) {
    Tensor b = c.in(2);
    if (b.rank() != 1 || b.shape()[0] != y.shape()[3]) c.fail("B must be [M]");
    y = add(y, b);
  }
  c.set_out(0, held_out(c, y, one_d));
}

// ConvTranspose: the gradient of a conv with respect to its input (conv2d_backward_input).
void map_conv_transpose(NodeCtx& c) {
  const bool one_d = is_1d(c);
  const Shape xs = nchw_shape(c, one_d);  // N, Cin, H, W
  const std::vector<bool> u = nchw_unknown(c, one_d);
  if (u[2] || u[3]) c.fail("symbolic spatial dims are not supported");
  const int64_t groups = c.attr_int("group", 1);
  if (groups < 1) c.fail("group must be >= 1");
  Tensor f = hwio_of(c, 1, one_d);  // KH, KW, Cout/g, Cin
  if (f.shape()[3] != xs[1]) c.fail("W's first dim must be X's channels");
  const int64_t cout = f.shape()[2] * groups;
  const int64_t kernel[2] = {f.shape()[0], f.shape()[1]};
  const std::vector<int64_t> ks = spatial_attr(c, "kernel_shape", one_d, 1);
  if (!ks.empty() && (ks.size() != 2 || ks[0] != kernel[0] || ks[1] != kernel[1])) {
    c.fail("kernel_shape does not match the filter");
  }
  const std::vector<int64_t> strides = ints_or(spatial_attr(c, "strides", one_d, 1), 2, 1);
  const std::vector<int64_t> dil = ints_or(spatial_attr(c, "dilations", one_d, 1), 2, 1);
  const std::vector<int64_t> out_pad = ints_or(spatial_attr(c, "output_padding", one_d, 0), 2, 0);
  std::vector<int64_t> pads = ints_or(spatial_attr(c, "pads", one_d, 0), 4, 0);
  std::vector<int64_t> out_shape = c.attr_ints("output_shape");
  if (one_d && (out_shape.size() == 1 || out_shape.size() == 3))
    out_shape.insert(out_shape.end() - 1, 1);
  const std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  if (strides.size() != 2 || dil.size() != 2 || out_pad.size() != 2 || pads.size() != 4) {
    c.fail("strides, dilations, output_padding and pads must be given for 2 spatial dims");
  }
  for (const std::vector<int64_t>* v : std::initializer_list<const std::vector<int64_t>*>{
           &strides, &dil, &out_pad, &pads, &out_shape}) {
    for (int64_t x : *v) {
      if (std::abs(x) > kMaxWindow)
        c.fail("strides, dilations, pads and shapes must be below 2^24");
    }
  }
  int64_t full[2];
  for (int i = 0; i < 2; ++i) {
    if (strides[i] < 1 || dil[i] < 1) c.fail("strides and dilations must be >= 1");
    if (out_pad[i] < 0 || out_pad[i] >= std::max(strides[i], dil[i])) {
      c.fail("output_padding must be in [0, max(stride, dilation))");
    }
    full[i] = (xs[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 + out_pad[i];
  }
  if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int i = 0; i < 2; ++i) {
      int64_t want = xs[2 + i] * strides[i];
      if (!out_shape.empty()) {
        if (out_shape.size() != 2 && out_shape.size() != 4) c.fail("output_shape must list 2 dims");
        want = out_shape[out_shape.size() - 2 + i];
      }
      // As the spec: SAME_UPPER puts the odd pixel at the end, otherwise at the start. A
      // negative total (output_shape past the full result) pads with zeros instead.
      const int64_t total = full[i] - want;
      const bool upper = auto_pad == "SAME_UPPER";
      pads[i] = total < 0 ? 0 : upper ? total / 2 : total - total / 2;
      pads[i + 2] = total - pads[i];
    }
  } else if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad != "NOTSET") {
    c.fail("auto_pad '" + auto_pad + "' is not supported");
  }
  if (out_shape.empty() && auto_pad == "NOTSET") {
    for (int64_t p : pads) {
      if (p < 0) c.fail("negative pads are not supported");
    }
  }
  Tensor x = nhwc_of(c, 0, one_d);
  if (f.dtype() != x.dtype()) c.fail("X and W must have the same dtype");
  // The shape-only "forward input" of the conv this is the gradient of: [N, full, full, Cout].
  const Shape like_shape{1, full[0], full[1], cout};
  c.charge(like_shape.numel(), x.dtype());
  Tensor like = zeros(like_shape, x.dtype());
  if (u[0]) {
    // A symbolic batch: broadcast against one element per example of x, so the shape follows it.
    Tensor one = slice(x, {0, 0, 0, 0}, {std::numeric_limits<int64_t>::max(), 1, 1, 1});
    like = mul(like, one);
  } else if (xs[0] != 1) {
    c.charge(like_shape.numel() * xs[0], x.dtype());
    like = zeros(Shape{xs[0], full[0], full[1], cout}, x.dtype());
  }
  Attrs a{strides[0], strides[1], 0, dil[0], dil[1], groups};
  Tensor y = run_op(ops::kConv2DBackwardInput, {x, f, like}, a);
  auto crop = [](int64_t p) { return std::max<int64_t>(p, 0); };
  if (crop(pads[0]) || crop(pads[1]) || crop(pads[2]) || crop(pads[3])) {
    y = slice(y, {0, crop(pads[0]), crop(pads[1]), 0},
              {std::numeric_limits<int64_t>::max(), full[0] - crop(pads[2]),
               full[1] - crop(pads[3]), std::numeric_limits<int64_t>::max()});
  }
  auto grow = [](int64_t p) { return std::max<int64_t>(-p, 0); };
  if (grow(pads[0]) || grow(pads[1]) || grow(pads[2]) || grow(pads[3])) {
    y = pad(y, {{0, 0}, {grow(pads[0]), grow(pads[2])}, {grow(pads[1]), grow(pads[3])}, {0, 0}});
  }
  if (c.has_input(2)) {
    Tensor b = c.in(2);
    if (b.rank() != 1 || b.shape()[0] != cout) c.fail("B must be [C_out]");
    y = add(y, b);
  }
  c.set_out(0, held_out(c, y, one_d));
}

// ---- pooling ---------------------------------------------------------------------------------

// Extra end padding so that ceil_mode's last window (starting inside the input or its begin
// padding) exists.
void apply_ceil_mode(NodeCtx& c, Window& w, const int64_t in[2], int64_t extra[2]) {
  for (int i = 0; i < 2; ++i) {
    extra[i] = 0;
    if (c.attr_int("ceil_mode", 0) == 0) continue;
    const int64_t span = in[i] + w.pad_begin[i] + w.pad_end[i];
    const int64_t eff = (w.k[i] - 1) * w.d[i] + 1;
    if (span < eff) continue;
    int64_t out = (span - eff + w.s[i] - 1) / w.s[i] + 1;
    if ((out - 1) * w.s[i] >= in[i] + w.pad_begin[i]) --out;
    extra[i] = std::max<int64_t>((out - 1) * w.s[i] + eff - span, 0);
  }
}

std::array<int64_t, 2> kernel_attr(NodeCtx& c, bool one_d) {
  const std::vector<int64_t> ks = spatial_attr(c, "kernel_shape", one_d, 1);
  if (ks.size() != 2) c.fail("kernel_shape must list one value per spatial dim");
  return {ks[0], ks[1]};
}

void map_max_pool(NodeCtx& c) {
  const bool one_d = is_1d(c);
  if (c.attr_int("storage_order", 0) != 0) c.fail("storage_order=1 is not supported");
  const Shape xs = nchw_shape(c, one_d);
  const std::vector<bool> u = nchw_unknown(c, one_d);
  const auto ks = kernel_attr(c, one_d);
  const int64_t in[2] = {xs[2], xs[3]};
  Window w = window_of(c, ks.data(), in, false, one_d);
  int64_t extra[2];
  apply_ceil_mode(c, w, in, extra);
  Tensor x = nhwc_of(c, 0, one_d);
  if (!is_floating(x.dtype())) c.fail("only float and double inputs are supported");
  Pool2DOptions o;
  o.pool_size = {w.k[0], w.k[1]};
  o.strides = {w.s[0], w.s[1]};
  const bool padded = !no_padding(w) || extra[0] || extra[1];
  if (padded && (u[2] || u[3]) && !w.same_upper) {
    c.fail("explicit padding of a symbolic spatial dim is not supported");
  }
  if (w.same_upper && !extra[0] && !extra[1]) {
    o.padding = Padding::kSame;  // kiln's same max pool ignores the padding, as ONNX's
  } else if (padded) {
    w.pad_end[0] += extra[0];
    w.pad_end[1] += extra[1];
    x = pad_spatial(x, w, -std::numeric_limits<double>::infinity());
  }
  c.set_out(0, held_out(c, max_pool2d(x, o), one_d));
}

void map_average_pool(NodeCtx& c) {
  const bool one_d = is_1d(c);
  const Shape xs = nchw_shape(c, one_d);
  const std::vector<bool> u = nchw_unknown(c, one_d);
  const auto ks = kernel_attr(c, one_d);
  const int64_t in[2] = {xs[2], xs[3]};
  Window w = window_of(c, ks.data(), in, false, one_d);
  int64_t extra[2];
  apply_ceil_mode(c, w, in, extra);
  const bool count_pad = c.attr_int("count_include_pad", 0) != 0;
  Tensor x = nhwc_of(c, 0, one_d);
  if (!is_floating(x.dtype())) c.fail("only float and double inputs are supported");
  Pool2DOptions o;
  o.pool_size = {w.k[0], w.k[1]};
  o.strides = {w.s[0], w.s[1]};
  const bool padded = !no_padding(w) || extra[0] || extra[1];
  if (!padded) {
    c.set_out(0, held_out(c, avg_pool2d(x, o), one_d));
    return;
  }
  if (w.same_upper && !count_pad && !extra[0] && !extra[1]) {
    o.padding = Padding::kSame;  // kiln averages over in-bounds elements: ONNX's default
    c.set_out(0, held_out(c, avg_pool2d(x, o), one_d));
    return;
  }
  if (u[2] || u[3]) c.fail("explicit padding of a symbolic spatial dim is not supported");
  // Average of the zero-padded input, rescaled by the share of each window that counts
  // (padding counts with count_include_pad, ceil_mode's extra end never does).
  Window all = w;
  all.pad_end[0] += extra[0];
  all.pad_end[1] += extra[1];
  Tensor y = avg_pool2d(pad_spatial(x, all, 0.0), o);
  c.charge(
      4 * (in[0] + all.pad_begin[0] + all.pad_end[0]) * (in[1] + all.pad_begin[1] + all.pad_end[1]),
      float64);
  Tensor share;
  {
    graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
    Tensor ones_in = ones(Shape{1, in[0], in[1], 1}, x.dtype());
    Tensor weight = pad_spatial(ones_in, w, count_pad ? 1.0 : 0.0);
    Window tail{};
    for (int i = 0; i < 2; ++i) tail.pad_end[i] = extra[i];
    weight = pad_spatial(weight, tail, 0.0);
    share = avg_pool2d(weight, o);
  }
  c.set_out(0, held_out(c, div(y, share), one_d));
}

// GlobalAveragePool / GlobalMaxPool: over every spatial dim, kept as size 1.
template <bool Max>
void map_global_pool(NodeCtx& c) {
  OValue& v = c.value(0);
  if (v.tainted && !c.folding()) c.in(0);
  const int r = v.t.rank();
  if (r < 3) c.fail("the input must have spatial dims");
  if (!is_floating(v.t.dtype())) c.fail("only float and double inputs are supported");
  // Over the spatial dims wherever the held layout keeps them.
  const std::vector<int> inv = v.perm.empty() ? std::vector<int>() : inverse_perm(v.perm);
  std::vector<int> axes;
  for (int d = 2; d < r; ++d) axes.push_back(inv.empty() ? d : inv[d]);
  Tensor y = Max ? max(v.t, axes, true) : mean(v.t, axes, true);
  c.set_out(0, OValue{y, v.perm});
}

// ---- normalization ---------------------------------------------------------------------------

void map_batch_norm(NodeCtx& c) {
  if (c.attr_int("training_mode", 0) != 0) c.fail("training_mode=1 is not supported");
  if (c.attr_int("spatial", 1) != 1) c.fail("spatial=0 is not supported");
  for (int k = 1; k < c.num_outputs(); ++k) {
    if (!c.node().output(k).empty())
      c.fail("the running statistics outputs (training) are not supported");
  }
  for (int k = 0; k < 5; ++k) {
    if (!c.has_input(k)) c.fail("takes 5 inputs (X, scale, B, mean, var)");
  }
  const Shape xs = c.traced_shape(0);
  if (xs.rank() < 2) c.fail("X must have a channel dim");
  if (!is_floating(c.value(0).t.dtype())) c.fail("only float and double inputs are supported");
  const double eps = c.attr_float("epsilon", 1e-5);
  // y = x * s + (B - mean * s), s = scale / sqrt(var + eps); computed at import for constant
  // parameters. Parameters are shaped [C, 1, ...] to broadcast along ONNX's channel dim.
  Shape ps{xs[1]};
  for (int d = 2; d < xs.rank(); ++d) ps.push_back(1);
  Tensor params[4];
  for (int k = 0; k < 4; ++k) {
    params[k] = c.in(k + 1);
    if (params[k].rank() != 1 || params[k].shape()[0] != xs[1])
      c.fail("scale, B, mean and var must be [C]");
  }
  auto compute = [&] {
    Tensor s = div(params[0], sqrt(add(params[3], scalar(eps, params[3].dtype()))));
    Tensor shift = sub(params[1], mul(params[2], s));
    return std::pair{reshape(s, ps), reshape(shift, ps)};
  };
  bool all_const = true;
  for (const Tensor& p : params) all_const = all_const && !is_symbolic(p);
  std::pair<Tensor, Tensor> st;
  if (all_const) {
    graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
    st = compute();
  } else {
    st = compute();
  }
  OValue s{st.first, {}}, shift{st.second, {}};
  OValue y = binary(c, c.value(0), s, mul);
  c.set_out(0, binary(c, y, shift, add));
}

}  // namespace

std::vector<Mapping> nn_mappings() {
  return {
      {"Conv", map_conv},
      {"ConvTranspose", map_conv_transpose},
      {"MaxPool", map_max_pool},
      {"AveragePool", map_average_pool},
      {"GlobalAveragePool", map_global_pool<false>},
      {"GlobalMaxPool", map_global_pool<true>},
      {"BatchNormalization", map_batch_norm},
  };
}

}  // namespace kiln::onnx_import
