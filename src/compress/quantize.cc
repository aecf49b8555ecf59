// Post-training static int8 quantization of a frozen graph, with the per-layer check and the
// whole-model accuracy budget (kiln/compress.h).
//
// 1. Find the layers: matmul/conv2d with a constant float32 weight, then (each read by nothing
//    else) an add of a constant [N] bias and a relu.
// 2. Run the float graph once on the calibration sample with every layer's input and output
//    as extra outputs; calibrate a uint8 range for each.
// 3. Check each layer alone: its int8 output (from its quantized float input) against float,
//    and the time of its int8 op against the fused float op. Failing layers stay float.
// 4. Rewrite: int8 layers become quantized ops; max_pool2d/reshape run in uint8 where their
//    input is uint8 only; quantize/dequantize where float and uint8 meet.
// 5. With validation data, revert the int8 layers with the largest errors until the accuracy
//    drop is within the budget.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "compress/graph_copy.h"
#include "compress/quantize_graph.h"
#include "core/tensor_impl.h"
#include "graph/graph.h"
#include "kiln/compress.h"
#include "kiln/ops.h"
#include "ops/fused.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using graph::Graph;
using graph::ValueKind;

struct LinearLayer {          // a quantizable layer of the graph (not kiln::Layer)
  int first = -1, last = -1;  // node indices: the matmul/conv2d and the last of its chain
  std::vector<int> nodes;
  int x = -1, y = -1;  // value ids: input and final output
  bool conv = false, relu = false;
  Attrs conv_attrs;  // conv2d's six
  Tensor w, bias;    // float32 weights ([K, N] or HWIO) and bias [N] (zeros when absent)
  // The int8 parameters
  Tensor wq, w_scales;
  bool int8 = false;
  QuantizedLayerReport report;
};

// Activation quantization parameters: float32 scale, uint8 zero point (scalars).
struct QParams {
  Tensor scale, zero_point;
};

QParams qparams(ActivationRange r) {
  float scale = (r.hi - r.lo) / 255.f;
  if (!(scale > 0.f) || !std::isfinite(scale)) scale = 1.f;
  const float zp = std::clamp(std::nearbyint(-r.lo / scale), 0.f, 255.f);
  return {scalar(scale), scalar(zp, DType::kUInt8)};
}

bool is_const(const Graph& g, int v, DType t) {
  return g.values[v].kind == ValueKind::kConstant && g.values[v].meta.dtype == t;
}

std::vector<std::vector<int>> users_of(const Graph& g) {
  std::vector<std::vector<int>> users(g.values.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].inputs) users[v].push_back(static_cast<int>(i));
  return users;
}

bool is_output(const Graph& g, int v) {
  return std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end();
}

// The single reader of v when it has exactly one and v is not a graph output, else -1.
int sole_user(const Graph& g, const std::vector<std::vector<int>>& users, int v) {
  return users[v].size() == 1 && !is_output(g, v) ? users[v][0] : -1;
}

std::vector<LinearLayer> find_layers(const Graph& g) {
  const auto users = users_of(g);
  std::vector<LinearLayer> layers;
  int dense = 0, convs = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const graph::Node& n = g.nodes[i];
    const bool mm = n.op == &ops::kMatmul, conv = n.op == &ops::kConv2D;
    if (!mm && !conv) continue;
    if (!is_const(g, n.inputs[1], float32) || g.values[n.inputs[0]].meta.dtype != float32) {
      continue;
    }
    if (mm && (n.attrs.i(0) || n.attrs.i(1) || g.values[n.inputs[0]].meta.shape.rank() != 2 ||
               g.values[n.inputs[1]].meta.shape.rank() != 2)) {
      continue;
    }
    LinearLayer L;
    L.first = L.last = static_cast<int>(i);
    L.nodes = {L.first};
    L.conv = conv;
    L.x = n.inputs[0];
    L.y = n.outputs[0];
    L.w = g.values[n.inputs[1]].captured;
    const int64_t channels = L.w.shape()[L.w.shape().rank() - 1];
    if (conv) {
      for (int k = 0; k < 6; ++k) L.conv_attrs.add_int(n.attrs.i(k));
    }
    // + bias
    int u = sole_user(g, users, L.y);
    if (u >= 0 && g.nodes[u].op == &ops::kAdd) {
      const graph::Node& a = g.nodes[u];
      const int other = a.inputs[0] == L.y ? a.inputs[1] : a.inputs[0];
      if (is_const(g, other, float32) && g.values[other].meta.shape == Shape{channels} &&
          g.values[a.outputs[0]].meta.shape == g.values[L.y].meta.shape) {
        L.bias = g.values[other].captured;
        L.y = a.outputs[0];
        L.last = u;
        L.nodes.push_back(u);
        u = sole_user(g, users, L.y);
      }
    }
    if (!L.bias.defined()) L.bias = zeros({channels});
    if (u >= 0 && g.nodes[u].op == &ops::kRelu) {
      L.relu = true;
      L.y = g.nodes[u].outputs[0];
      L.last = u;
      L.nodes.push_back(u);
    }
    L.report.name =
        (conv ? "conv2d " + std::to_string(convs++) : "dense " + std::to_string(dense++)) + " " +
        to_string(L.w.shape());
    layers.push_back(std::move(L));
  }
  return layers;
}

void quantize_weights(LinearLayer& L, int qmax) {
  compress::quantize_weights_per_channel(L.w, qmax, L.wq, L.w_scales);
}

QuantizedLinear linear_params(const LinearLayer& L, const QParams& in) {
  QuantizedLinear p;
  p.x_scale = in.scale;
  p.x_zero_point = in.zero_point;
  p.weights = L.wq;
  p.weight_scales = L.w_scales;
  p.bias = L.bias;
  p.relu = L.relu;
  return p;
}

Conv2DOptions conv_options(const Attrs& a) {
  Conv2DOptions o;
  o.strides = {a.i(0), a.i(1)};
  o.padding = a.i(2) ? Padding::kSame : Padding::kValid;
  o.dilation = {a.i(3), a.i(4)};
  o.groups = a.i(5);
  return o;
}

Tensor run_int8(const LinearLayer& L, const Tensor& xq, const QuantizedLinear& p) {
  return L.conv ? quantized_conv2d(xq, p, conv_options(L.conv_attrs)) : quantized_matmul(xq, p);
}

// The float layer as the executor runs it: one fused op.
Tensor run_float(const LinearLayer& L, const Tensor& x) {
  const int64_t act = L.relu ? kActRelu : kActNone;
  if (L.conv) {
    Attrs a = L.conv_attrs;
    a.add_int(1).add_int(act).add_int(0);
    return run_op(ops::kFusedConv2D, {x, L.w, L.bias}, a);
  }
  return run_op(ops::kFusedMatmul, {x, L.w, L.bias}, Attrs{0, 0, 1, act, 0});
}

double rms(const Tensor& t) {
  const float* p = detail::ptr<float>(t);
  double s = 0;
  for (int64_t i = 0, n = t.numel(); i < n; ++i) s += double(p[i]) * p[i];
  return std::sqrt(s / std::max<int64_t>(t.numel(), 1));
}

double median_us(const std::function<void()>& fn, int repeats) {
  fn();  // warm up: primitive creation, caches
  std::vector<double> t;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor first_rows(const Tensor& x, int64_t n) { return x.shape()[0] <= n ? x : x.rows(0, n); }

// ---- the rewrite ------------------------------------------------------------------------------

class Rewriter : public compress::GraphBuilder {
 public:
  Rewriter(const Graph& g, const std::vector<LinearLayer>& layers,
           const std::map<int, QParams>& ranges)
      : g_(g),
        layers_(layers),
        ranges_(ranges),
        fmap_(g.values.size(), -1),
        qmap_(g.values.size(), -1),
        qp_(g.values.size()),
        users_(users_of(g)) {
    layer_at_.assign(g.nodes.size(), -1);
    for (size_t l = 0; l < layers.size(); ++l)
      for (int n : layers[l].nodes) layer_at_[n] = static_cast<int>(l);
  }

  Graph run() {
    for (int v : g_.inputs) {
      graph::Value nv = g_.values[v];
      nv.input_index = static_cast<int32_t>(out_.inputs.size());
      fmap_[v] = add_value(nv);
      out_.inputs.push_back(fmap_[v]);
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const int l = layer_at_[i];
      if (l >= 0) {
        if (layers_[l].first == static_cast<int>(i)) emit_layer(layers_[l]);
        continue;
      }
      const graph::Node& n = g_.nodes[i];
      const bool passes_u8 = (n.op == &ops::kMaxPool2D || n.op == &ops::kReshape) &&
                             qmap_[n.inputs[0]] >= 0 && fmap_[n.inputs[0]] < 0;
      if (passes_u8) {
        const int out = emit(*n.op, {qmap_[n.inputs[0]]}, n.attrs);
        qmap_[n.outputs[0]] = out;
        qp_[n.outputs[0]] = qp_[n.inputs[0]];
        continue;
      }
      std::vector<int> in;
      for (int v : n.inputs) in.push_back(float_of(v));
      emit_outputs(n, in);
    }
    for (int v : g_.outputs) out_.outputs.push_back(float_of(v));
    return std::move(out_);
  }

 private:
  void emit_outputs(const graph::Node& n, const std::vector<int>& in) {
    emit(*n.op, in, n.attrs);
    const graph::Node& made = out_.nodes.back();
    for (size_t k = 0; k < n.outputs.size(); ++k) fmap_[n.outputs[k]] = made.outputs[k];
  }

  int float_of(int v) {
    if (fmap_[v] >= 0) return fmap_[v];
    if (qmap_[v] >= 0) {
      const int s = constant(qp_[v].scale), z = constant(qp_[v].zero_point);
      return fmap_[v] = emit(ops::kDequantize, {qmap_[v], s, z}, Attrs());
    }
    return fmap_[v] = constant(g_.values[v].captured);  // a constant of the old graph
  }
  int u8_of(int v) {
    if (qmap_[v] >= 0) return qmap_[v];
    qp_[v] = ranges_.at(v);
    const int s = constant(qp_[v].scale), z = constant(qp_[v].zero_point);
    return qmap_[v] = emit(ops::kQuantize, {float_of(v), s, z}, Attrs());
  }

  // Whether every reader of v takes uint8: an int8 layer, or max_pool2d/reshape whose outputs
  // are read that way in turn.
  bool wants_u8(int v) {
    if (is_output(g_, v) || users_[v].empty()) return false;
    for (int u : users_[v]) {
      const int l = layer_at_[u];
      if (l >= 0 && layers_[l].int8 && layers_[l].first == u && layers_[l].x == v) continue;
      const graph::Node& n = g_.nodes[u];
      if (l < 0 && (n.op == &ops::kMaxPool2D || n.op == &ops::kReshape) && n.inputs[0] == v &&
          wants_u8(n.outputs[0])) {
        continue;
      }
      return false;
    }
    return true;
  }

  void emit_layer(const LinearLayer& L) {
    if (!L.int8) {
      for (int i : L.nodes) {
        const graph::Node& n = g_.nodes[i];
        std::vector<int> in;
        for (int v : n.inputs) in.push_back(float_of(v));
        emit_outputs(n, in);
      }
      return;
    }
    const int xq = u8_of(L.x);
    const QParams& in = qp_[L.x];
    std::vector<int> args{xq,
                          constant(in.scale),
                          constant(in.zero_point),
                          constant(L.wq),
                          constant(L.w_scales),
                          constant(L.bias)};
    const bool u8_out = wants_u8(L.y);
    if (u8_out) {
      qp_[L.y] = ranges_.at(L.y);
      args.push_back(constant(qp_[L.y].scale));
      args.push_back(constant(qp_[L.y].zero_point));
    }
    Attrs a;
    if (L.conv) a = L.conv_attrs;
    a.add_int(L.relu ? 1 : 0);
    const int out = emit(L.conv ? ops::kQuantizedConv2D : ops::kQuantizedMatmul, args, a);
    (u8_out ? qmap_ : fmap_)[L.y] = out;
  }

  const Graph& g_;
  const std::vector<LinearLayer>& layers_;
  const std::map<int, QParams>& ranges_;
  std::vector<int> fmap_, qmap_;  // old value -> new value holding it in float32 / uint8
  std::vector<QParams> qp_;       // the parameters of qmap_'s uint8 values
  std::vector<std::vector<int>> users_;
  std::vector<int> layer_at_;
};

double accuracy(const GraphModel& m, const Tensor& images, const Tensor& labels) {
  const int64_t n = images.shape()[0];
  int64_t right = 0;
  const Tensor want = cast(labels, DType::kInt64);
  for (int64_t b = 0; b < n; b += 256) {
    const int64_t e = std::min(n, b + 256);
    Tensor pred = argmax(m(images.rows(b, e)), -1);
    right += sum(cast(equal(pred, want.rows(b, e)), DType::kInt64)).item<int64_t>();
  }
  return 100.0 * double(right) / double(std::max<int64_t>(n, 1));
}

std::string calibration_name(const QuantizeOptions& o) {
  switch (o.calibration) {
    case Calibration::kMinMax:
      return "minmax";
    case Calibration::kPercentile: {
      char buf[48];
      std::snprintf(buf, sizeof buf, "percentile %g", o.percentile);
      return buf;
    }
    case Calibration::kMse:
      return "mse";
  }
  return "?";
}

}  // namespace

namespace compress {

void quantize_weights_per_channel(const Tensor& w, int qmax, Tensor& wq, Tensor& scales) {
  const int64_t n = w.shape()[w.shape().rank() - 1], total = w.numel();
  const float* p = detail::ptr<float>(w);
  std::vector<float> amax(n, 0.f);
  for (int64_t i = 0; i < total; ++i) amax[i % n] = std::max(amax[i % n], std::abs(p[i]));
  scales = empty({n});
  float* s = detail::ptr<float>(scales);
  for (int64_t j = 0; j < n; ++j) s[j] = amax[j] > 0 ? amax[j] / float(qmax) : 1.f;
  wq = empty(w.shape(), DType::kInt8);
  int8_t* q = detail::ptr<int8_t>(wq);
  for (int64_t i = 0; i < total; ++i) {
    const float v = std::nearbyint(p[i] / s[i % n]);
    q[i] = static_cast<int8_t>(std::clamp(v, float(-qmax), float(qmax)));
  }
}

int weight_qmax(const char* fn, int weight_bits) {
  if (weight_bits != 0 && weight_bits != 7 && weight_bits != 8) {
    throw ValueError(std::string(fn) + ": weight_bits must be 0 (by CPU), 7 or 8, got " +
                     std::to_string(weight_bits));
  }
  const int bits = weight_bits ? weight_bits : (int8_has_vnni() ? 8 : 7);
  return bits == 8 ? 127 : 63;
}

}  // namespace compress

std::string QuantizeReport::to_text() const {
  std::string s = "int8 quantization: calibration " + calibration + ", weights " +
                  std::to_string(weight_bits) + "-bit per output channel\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-24s %-5s %9s %10s %10s  %s\n", "layer", "dtype", "error",
                "float us", "int8 us", "reason");
  s += line;
  for (const QuantizedLayerReport& l : layers) {
    std::snprintf(line, sizeof line, "  %-24s %-5s %9.4f %10.1f %10.1f  %s\n", l.name.c_str(),
                  l.int8 ? "int8" : "float", l.error, l.float_us, l.int8_us, l.reason.c_str());
    s += line;
  }
  if (has_accuracy) {
    std::snprintf(line, sizeof line,
                  "  accuracy: float %.2f%%, int8 %.2f%% (drop %.2f points; %d layer(s) reverted "
                  "for it)\n",
                  float_accuracy, int8_accuracy, float_accuracy - int8_accuracy,
                  reverted_for_accuracy);
    s += line;
  }
  return s;
}

GraphModel quantize_model(const GraphModel& model, const Tensor& calibration_inputs,
                          const QuantizeOptions& o, QuantizeReport* report_out) {
  return compress::quantize_graph(model, calibration_inputs, o, report_out, {});
}

GraphModel compress::quantize_graph(const GraphModel& model, const Tensor& calibration_inputs,
                                    const QuantizeOptions& o, QuantizeReport* report_out,
                                    const std::map<int, ActivationRange>& fixed_ranges) {
  const char* op = "quantize_model";
  if (model.inputs().size() != 1 || model.outputs().size() != 1) {
    throw ValueError(std::string(op) + ": the model must have one input and one output, '" +
                     model.name() + "' has " + std::to_string(model.inputs().size()) + " and " +
                     std::to_string(model.outputs().size()));
  }
  if (calibration_inputs.shape().rank() == 0 || calibration_inputs.shape()[0] == 0) {
    throw ValueError(std::string(op) + ": the calibration batch is empty");
  }
  const TensorSpec& spec = model.inputs()[0].spec;
  bool fits = calibration_inputs.shape().rank() == static_cast<int>(spec.dims.size());
  for (size_t d = 0; fits && d < spec.dims.size(); ++d) {
    fits = spec.dims[d] == kUnknownDim || spec.dims[d] == calibration_inputs.shape()[int(d)];
  }
  if (!fits || calibration_inputs.dtype() != spec.dtype) {
    throw ShapeError(std::string(op) + ": the calibration inputs " +
                     to_string(calibration_inputs.shape()) + " " +
                     std::string(dtype_name(calibration_inputs.dtype())) + " do not fit input '" +
                     model.inputs()[0].name + "' of '" + model.name() + "'");
  }
  if (o.weight_bits != 0 && o.weight_bits != 7 && o.weight_bits != 8) {
    throw ValueError(std::string(op) + ": weight_bits must be 0 (by CPU), 7 or 8, got " +
                     std::to_string(o.weight_bits));
  }
  if (o.calibration == Calibration::kPercentile && !(o.percentile > 50 && o.percentile <= 100)) {
    throw ValueError(std::string(op) + ": the percentile must be in (50, 100], got " +
                     std::to_string(o.percentile));
  }
  const bool check_accuracy = o.validation_images.defined() && o.validation_labels.defined();
  if (check_accuracy && o.validation_images.shape()[0] != o.validation_labels.shape()[0]) {
    throw ValueError(std::string(op) + ": " + std::to_string(o.validation_images.shape()[0]) +
                     " validation images but " + std::to_string(o.validation_labels.shape()[0]) +
                     " labels");
  }
  QuantizeReport report;
  report.calibration = calibration_name(o);
  report.weight_bits = o.weight_bits ? o.weight_bits : (int8_has_vnni() ? 8 : 7);
  const int qmax = report.weight_bits == 8 ? 127 : 63;

  const Graph& g = model.graph();
  std::vector<LinearLayer> layers = find_layers(g);

  // Calibration: every layer's input and output as extra outputs of one float run.
  Graph probe = g;
  std::vector<int> watched;
  for (const LinearLayer& L : layers) {
    for (int v : {L.x, L.y}) {
      if (std::find(watched.begin(), watched.end(), v) == watched.end()) watched.push_back(v);
    }
  }
  for (int v : watched) probe.outputs.push_back(v);
  probe.plan_lifetimes();  // keep the watched values alive to the end
  std::vector<Tensor> seen = graph::execute(probe, {calibration_inputs});
  std::map<int, Tensor> value_of;
  std::map<int, QParams> ranges;
  for (size_t k = 0; k < watched.size(); ++k) {
    const Tensor& t = seen[g.outputs.size() + k];
    value_of[watched[k]] = t;
    const auto fixed = fixed_ranges.find(watched[k]);
    ranges[watched[k]] =
        qparams(fixed != fixed_ranges.end() ? fixed->second
                                            : calibrate_range(t, o.calibration, o.percentile));
  }

  // The per-layer check.
  for (LinearLayer& L : layers) {
    quantize_weights(L, qmax);
    const QParams& in = ranges.at(L.x);
    const Tensor& xf = value_of.at(L.x);
    const Tensor& yf = value_of.at(L.y);
    const QuantizedLinear p = linear_params(L, in);
    Tensor yq = run_int8(L, quantize(xf, in.scale, in.zero_point), p);
    if (!is_output(g, L.y)) {  // the next layer reads it quantized
      const QParams& out = ranges.at(L.y);
      yq = dequantize(quantize(yq, out.scale, out.zero_point), out.scale, out.zero_point);
    }
    const double denom = std::max(rms(yf), 1e-12);
    L.report.error = rms(sub(yq, yf)) / denom;
    // Timing at timing_batch: the fused float op against the int8 op with uint8 in and out.
    const Tensor xt = first_rows(xf, o.timing_batch);
    const Tensor xtq = quantize(xt, in.scale, in.zero_point);
    QuantizedLinear pt = p;
    pt.y_scale = scalar(0.05);
    pt.y_zero_point = scalar(0, DType::kUInt8);
    L.report.float_us = median_us([&] { run_float(L, xt); }, o.timing_repeats);
    L.report.int8_us = median_us([&] { run_int8(L, xtq, pt); }, o.timing_repeats);
    char why[160] = "";
    if (!(L.report.error <= o.layer_tolerance)) {
      std::snprintf(why, sizeof why, "error %.4f > tolerance %.4f", L.report.error,
                    o.layer_tolerance);
    } else if (o.keep_slower_float && L.report.int8_us >= L.report.float_us) {
      std::snprintf(why, sizeof why, "not faster: int8 %.1f us >= float %.1f us", L.report.int8_us,
                    L.report.float_us);
    }
    L.report.reason = why;
    L.int8 = L.report.reason.empty();
  }

  auto build = [&] {
    Graph q = Rewriter(g, layers, ranges).run();
    return GraphModel(std::move(q), model.inputs(), model.outputs(), model.name() + "_int8");
  };
  GraphModel result = build();
  if (check_accuracy) {
    report.has_accuracy = true;
    report.float_accuracy = accuracy(model, o.validation_images, o.validation_labels);
    report.int8_accuracy = accuracy(result, o.validation_images, o.validation_labels);
    while (report.float_accuracy - report.int8_accuracy > o.max_drop) {
      LinearLayer* worst = nullptr;
      for (LinearLayer& L : layers) {
        if (L.int8 && (!worst || L.report.error > worst->report.error)) worst = &L;
      }
      if (!worst) break;
      worst->int8 = false;
      char why[160];
      std::snprintf(why, sizeof why, "reverted: model accuracy drop %.2f > max_drop %.2f",
                    report.float_accuracy - report.int8_accuracy, o.max_drop);
      worst->report.reason = why;
      ++report.reverted_for_accuracy;
      result = build();
      report.int8_accuracy = accuracy(result, o.validation_images, o.validation_labels);
    }
  }
  for (LinearLayer& L : layers) {
    L.report.int8 = L.int8;
    report.layers.push_back(L.report);
  }
  if (report_out) *report_out = std::move(report);
  return result;
}

}  // namespace kiln
