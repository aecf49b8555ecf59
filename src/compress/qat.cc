// Quantization-aware training (kiln/compress.h): the QuantizeAware wrapper (fake-quantized
// weights and activations, EMA-tracked activation ranges), quantize_aware on a Sequential, and
// the conversion of a trained QAT model to int8 through quantize_model's machinery with the
// learned ranges in place of calibration.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/graph_copy.h"
#include "compress/quantize_graph.h"
#include "graph/graph.h"
#include "kiln/autograd.h"
#include "kiln/compress.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/config.h"
#include "ops/registry.h"

namespace kiln {
namespace {

bool quantizable(const Layer& l) {
  return dynamic_cast<const Dense*>(&l) != nullptr || dynamic_cast<const Conv2D*>(&l) != nullptr;
}

Variable kernel_of(const Layer& l) {
  if (auto* d = dynamic_cast<const Dense*>(&l)) return d->kernel();
  return dynamic_cast<const Conv2D&>(l).kernel();
}

Variable bias_of(const Layer& l) {
  if (auto* d = dynamic_cast<const Dense*>(&l)) return d->bias();
  return dynamic_cast<const Conv2D&>(l).bias();
}

void collect(Layer& l, std::vector<QuantizeAware*>& out) {
  if (auto* q = dynamic_cast<QuantizeAware*>(&l)) {
    out.push_back(q);
    return;
  }
  for (const auto& s : l.layers()) collect(*s, out);
}

// [lo, hi] widened to contain 0, as fake_quant and calibrate_range do.
ActivationRange range_of(const Variable& lo, const Variable& hi) {
  return {std::min(lo.value().item<float>(), 0.f), std::max(hi.value().item<float>(), 0.f)};
}

}  // namespace

void QatOptions::validate() const {
  if (!(ema_decay >= 0 && ema_decay < 1)) {
    throw ValueError("QatOptions: ema_decay must be in [0, 1), got " + std::to_string(ema_decay));
  }
  compress::weight_qmax("QatOptions", weight_bits);
}

// ---- QuantizeAware ----------------------------------------------------------------------------

QuantizeAware::QuantizeAware(std::shared_ptr<Layer> layer, bool quantize_input,
                             bool quantize_output, QatOptions options, std::string name)
    : Layer(std::move(name), "quant_" + (layer ? layer->name() : std::string("layer"))),
      layer_(std::move(layer)),
      quantize_input_(quantize_input),
      quantize_output_(quantize_output),
      options_(options) {
  if (!layer_) throw ValueError("QuantizeAware: the layer to wrap is null");
  if (!quantizable(*layer_)) {
    throw ValueError("QuantizeAware: layer '" + layer_->name() + "' is a " + layer_->type_name() +
                     "; only Dense and Conv2D are quantized");
  }
  options_.validate();
  const nlohmann::json c = layer_->get_config();
  conv_ = dynamic_cast<const Conv2D*>(layer_.get()) != nullptr;
  if (conv_) {
    if (c.at("groups").get<int64_t>() != 1) {
      throw ValueError("QuantizeAware: Conv2D '" + layer_->name() + "' has groups " +
                       std::to_string(c.at("groups").get<int64_t>()) +
                       "; only groups = 1 is quantized");
    }
    conv_options_.strides = {c.at("strides")[0].get<int64_t>(), c.at("strides")[1].get<int64_t>()};
    conv_options_.padding =
        c.at("padding").get<std::string>() == "same" ? Padding::kSame : Padding::kValid;
    conv_options_.dilation = {c.at("dilation_rate")[0].get<int64_t>(),
                              c.at("dilation_rate")[1].get<int64_t>()};
  }
  activation_ = get_activation(c.at("activation").get<std::string>());
  track_layer(layer_);
}

nlohmann::json QuantizeAware::get_config() const {
  nlohmann::json c = base_config();
  c["layer"] = serialize_layer(*layer_, /*with_build_config=*/false);
  c["quantize_input"] = quantize_input_;
  c["quantize_output"] = quantize_output_;
  c["ema_decay"] = options_.ema_decay;
  c["weight_bits"] = options_.weight_bits;
  return c;
}

std::shared_ptr<Layer> QuantizeAware::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "QuantizeAware");
  std::shared_ptr<Layer> inner = deserialize_layer(r.raw("layer"));
  const bool in = r.boolean("quantize_input", false);
  const bool out = r.boolean("quantize_output", true);
  QatOptions o;
  o.ema_decay = r.number("ema_decay", o.ema_decay);
  o.weight_bits = static_cast<int>(r.integer("weight_bits", 0));
  r.finish();
  auto q = std::make_shared<QuantizeAware>(std::move(inner), in, out, o, r.name());
  q->set_trainable(r.trainable());
  return q;
}

int QuantizeAware::weight_qmax() const {
  return compress::weight_qmax("QuantizeAware", options_.weight_bits);
}

void QuantizeAware::build(const Shape& input_shape) {
  layer_->output_shape(input_shape);
  const auto scalar_weight = [&](const char* n) {
    return add_weight(n, Shape{}, initializers::zeros(), /*trainable=*/false);
  };
  if (quantize_input_) {
    in_lo_ = scalar_weight("input_min");
    in_hi_ = scalar_weight("input_max");
  }
  if (quantize_output_) {
    out_lo_ = scalar_weight("output_min");
    out_hi_ = scalar_weight("output_max");
  }
  seen_ = scalar_weight("ranges_seen");
}

Shape QuantizeAware::compute_output_shape(const Shape& input_shape) {
  return layer_->output_shape(input_shape);
}

ActivationRange QuantizeAware::output_range() const {
  if (!out_lo_.defined()) {
    throw ValueError("QuantizeAware '" + name() + "': its output is not quantized");
  }
  return range_of(out_lo_, out_hi_);
}

ActivationRange QuantizeAware::input_range() const {
  if (!in_lo_.defined()) {
    throw ValueError("QuantizeAware '" + name() + "': its input is not quantized");
  }
  return range_of(in_lo_, in_hi_);
}

// Training: the range moves toward the batch's min/max (the batch's own on the first step) and
// the batch is quantized with the updated range. Inference: the stored range, or none at all
// before the first training step (the range is then unknown; conversion calibrates it).
Tensor QuantizeAware::track_range(const Tensor& x, Variable lo, Variable hi, bool training) {
  if (!training) {
    if (seen_.value().item<float>() == 0.f) return x;
    return fake_quant(x, lo.value(), hi.value(), 0, 255);
  }
  const Tensor batch_lo = stop_gradient(neg(max(neg(x))));
  const Tensor batch_hi = stop_gradient(max(x));
  const Tensor keep = seen_.value() * options_.ema_decay;  // 0 on the first step
  const Tensor new_lo = batch_lo + keep * (lo.value() - batch_lo);
  const Tensor new_hi = batch_hi + keep * (hi.value() - batch_hi);
  lo.assign(new_lo);
  hi.assign(new_hi);
  return fake_quant(x, new_lo, new_hi, 0, 255);
}

Tensor QuantizeAware::call(const Tensor& x, bool training) {
  const Tensor xin = quantize_input_ ? track_range(x, in_lo_, in_hi_, training) : x;
  const Tensor k = kernel_of(*layer_).value();
  std::vector<int> axes;
  for (int d = 0; d + 1 < k.shape().rank(); ++d) axes.push_back(d);
  const int qmax = weight_qmax();
  const Tensor amax = stop_gradient(max(abs(k), axes));
  const Tensor kq = fake_quant(k, neg(amax), amax, -qmax, qmax);
  Tensor y;
  if (conv_) {
    y = conv2d(xin, kq, conv_options_);
  } else if (xin.shape().rank() == 2) {
    y = matmul(xin, kq);
  } else {
    Shape flat{-1, xin.shape()[xin.shape().rank() - 1]};
    Shape out = xin.shape();
    out[out.rank() - 1] = k.shape()[1];
    y = reshape(matmul(reshape(xin, flat), kq), out);
  }
  const Variable b = bias_of(*layer_);
  if (b.defined()) y = y + b.value();
  y = activation_(y);
  if (quantize_output_) y = track_range(y, out_lo_, out_hi_, training);
  if (training) seen_.assign(ones({}));
  return y;
}

KILN_REGISTER_LAYER(QuantizeAware);

namespace compress {
bool qat_layers_linked() { return true; }
}  // namespace compress

// ---- quantize_aware ---------------------------------------------------------------------------

std::shared_ptr<Sequential> quantize_aware(const Sequential& model, const QatOptions& options) {
  options.validate();
  if (!model.built()) {
    throw StateError("quantize_aware: model '" + model.name() +
                     "' is not built (call it once or use output_shape first)");
  }
  auto out = std::make_shared<Sequential>(unique_layer_name(model.name() + "_qat"));
  out->set_store(model.store());
  const auto& layers = model.layers();
  bool first = true;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!quantizable(*layers[i])) {
      out->add(layers[i]);
      continue;
    }
    const bool last = i + 1 == layers.size();
    out->add(std::make_shared<QuantizeAware>(layers[i], first, !last, options));
    first = false;
  }
  if (first) {
    throw ValueError("quantize_aware: model '" + model.name() + "' has no Dense or Conv2D layer");
  }
  Shape one = model.built_input_shapes().at(0);
  one[0] = 1;
  out->output_shape(one);
  return out;
}

// ---- conversion -------------------------------------------------------------------------------

GraphModel quantize_model_from_qat(Layer& qat_model, const Tensor& calibration_inputs,
                                   const QuantizeOptions& options, QuantizeReport* report) {
  std::vector<QuantizeAware*> wrappers;
  collect(qat_model, wrappers);
  if (wrappers.empty()) {
    throw ValueError("quantize_model_from_qat: model '" + qat_model.name() +
                     "' holds no QuantizeAware layer (train the model quantize_aware returns)");
  }
  const int bits = wrappers[0]->weight_qmax() == 127 ? 8 : 7;
  if (options.weight_bits != 0 && options.weight_bits != bits) {
    throw ValueError("quantize_model_from_qat: weight_bits " + std::to_string(options.weight_bits) +
                     " differs from the " + std::to_string(bits) +
                     "-bit grid the model was trained on");
  }
  // Frozen: the weights' fake-quant folds into constants already on the int8 grid; the
  // activations' fake_quant nodes (constant scalar ranges) are dropped and their ranges kept.
  const GraphModel frozen = freeze(qat_model);
  const graph::Graph& g = frozen.graph();
  compress::GraphCopy copy(g);
  std::map<int, ActivationRange> ranges;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const graph::Node& n = g.nodes[i];
    const auto scalar_const = [&](int v) {
      return g.values[v].kind == graph::ValueKind::kConstant &&
             g.values[v].meta.shape.rank() == 0 && g.values[v].meta.dtype == float32;
    };
    if (n.op == &ops::kFakeQuant && n.attrs.i(0) == 0 && n.attrs.i(1) == 255 &&
        scalar_const(n.inputs[1]) && scalar_const(n.inputs[2])) {
      const int x = copy.value(n.inputs[0]);
      ranges[x] = {std::min(g.values[n.inputs[1]].captured.item<float>(), 0.f),
                   std::max(g.values[n.inputs[2]].captured.item<float>(), 0.f)};
      copy.map_to(n.outputs[0], x);
      continue;
    }
    copy.copy_node(static_cast<int>(i));
  }
  GraphModel stripped(copy.finish(), frozen.inputs(), frozen.outputs(), frozen.name());
  stripped.set_folded_variables(frozen.folded_variables());
  QuantizeOptions o = options;
  o.weight_bits = bits;
  return compress::quantize_graph(stripped, calibration_inputs, o, report, ranges);
}

}  // namespace kiln
