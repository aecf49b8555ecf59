// BatchNormalization and LayerNormalization over the last axis, from kiln ops.
#include <nlohmann/json.hpp>

#include "kiln/autograd.h"
#include "kiln/error.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace {
void require_channels(const Layer& l, const Shape& in) {
  if (in.rank() < 1 || in.dim(-1) == 0) {
    throw ShapeError("layer '" + l.name() + "' (" + l.type_name() +
                     ") normalizes the last axis and needs it non-empty, got " + to_string(in));
  }
}
// kiln normalizes the last axis only: Keras' -1, or (as tf.keras 2 writes it once built) the
// last axis's index, checked when the layer builds; an int or a one-element list.
int read_last_axis(ConfigReader& r) {
  if (!r.has("axis")) {
    r.optional_integer("axis");
    return -1;
  }
  const nlohmann::json& axis = r.raw("axis");
  const nlohmann::json* a = &axis;
  if (axis.is_array() && axis.size() == 1) a = &axis[0];
  if (!a->is_number_integer() || a->get<int64_t>() < -1 || a->get<int64_t>() > 7) {
    throw ValueError(r.where() + ": field 'axis' = " + ConfigReader::excerpt(axis) +
                     " is not supported: kiln normalizes the last axis only (-1, or the last "
                     "axis's index)");
  }
  return static_cast<int>(a->get<int64_t>());
}

// A positive axis from a config must be the last one.
void require_last_axis(const Layer& l, int axis, const Shape& in) {
  if (axis >= 0 && axis != in.rank() - 1) {
    throw ValueError("layer '" + l.name() + "' (" + l.type_name() + ") was configured with axis " +
                     std::to_string(axis) +
                     ", but kiln normalizes the last axis only and the "
                     "input " +
                     to_string(in) + " has rank " + std::to_string(in.rank()));
  }
}

nlohmann::json regularizers_off(nlohmann::json c) {
  c["beta_regularizer"] = nullptr;
  c["gamma_regularizer"] = nullptr;
  c["beta_constraint"] = nullptr;
  c["gamma_constraint"] = nullptr;
  return c;
}

void read_regularizers_off(ConfigReader& r) {
  for (const char* k :
       {"beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"}) {
    r.only(k, nullptr);
  }
}

}  // namespace

// ---- BatchNormalization ----------------------------------------------------------------------

BatchNormalization::BatchNormalization(BatchNormOptions options)
    : Layer(options.name, "batch_normalization"), options_(std::move(options)) {
  if (options_.axis < -1) {
    throw ValueError("layer '" + name() +
                     "' (BatchNormalization): axis must be -1 (the last) or "
                     "the last axis's index, got " +
                     std::to_string(options_.axis));
  }
  if (!(options_.momentum >= 0 && options_.momentum <= 1) || !(options_.epsilon > 0)) {
    throw ValueError("layer '" + name() +
                     "' (BatchNormalization): momentum must be in [0, 1] "
                     "and epsilon > 0, got momentum=" +
                     std::to_string(options_.momentum) +
                     " epsilon=" + std::to_string(options_.epsilon));
  }
}

void BatchNormalization::build(const Shape& in) {
  require_channels(*this, in);
  require_last_axis(*this, options_.axis, in);
  const Shape c{in.dim(-1)};
  const DType dt = build_dtype();
  if (options_.scale) gamma_ = add_weight("gamma", c, options_.gamma_initializer, true, dt);
  if (options_.center) beta_ = add_weight("beta", c, options_.beta_initializer, true, dt);
  moving_mean_ = add_weight("moving_mean", c, options_.moving_mean_initializer, false, dt);
  moving_variance_ =
      add_weight("moving_variance", c, options_.moving_variance_initializer, false, dt);
}

Tensor BatchNormalization::call(const Tensor& x, bool training) {
  Tensor m, v;
  if (training) {
    std::vector<int> axes;
    for (int i = 0; i + 1 < x.rank(); ++i) axes.push_back(i);
    m = mean(x, axes);
    v = mean(square(x - m), axes);  // biased, as Keras' moments()
    // moving = momentum * moving + (1 - momentum) * batch; not part of any gradient.
    const double mo = options_.momentum;
    moving_mean_.assign(moving_mean_.value() * mo + stop_gradient(m) * (1 - mo));
    moving_variance_.assign(moving_variance_.value() * mo + stop_gradient(v) * (1 - mo));
  } else {
    m = moving_mean_.value();
    v = moving_variance_.value();
  }
  Tensor y = (x - m) / sqrt(v + options_.epsilon);
  if (options_.scale) y = y * gamma_.value();
  if (options_.center) y = y + beta_.value();
  return y;
}

nlohmann::json BatchNormalization::get_config() const {
  const auto& o = options_;
  nlohmann::json c = base_config();
  c["axis"] = o.axis;
  c["momentum"] = o.momentum;
  c["epsilon"] = o.epsilon;
  c["center"] = o.center;
  c["scale"] = o.scale;
  c["beta_initializer"] = initializers::serialize(o.beta_initializer);
  c["gamma_initializer"] = initializers::serialize(o.gamma_initializer);
  c["moving_mean_initializer"] = initializers::serialize(o.moving_mean_initializer);
  c["moving_variance_initializer"] = initializers::serialize(o.moving_variance_initializer);
  c["synchronized"] = false;
  return regularizers_off(std::move(c));
}

std::shared_ptr<Layer> BatchNormalization::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "BatchNormalization");
  BatchNormOptions o;
  o.name = r.name();
  o.axis = read_last_axis(r);
  o.momentum = r.number("momentum", o.momentum);
  o.epsilon = r.number("epsilon", o.epsilon);
  o.center = r.boolean("center", o.center);
  o.scale = r.boolean("scale", o.scale);
  o.beta_initializer = r.initializer("beta_initializer", o.beta_initializer);
  o.gamma_initializer = r.initializer("gamma_initializer", o.gamma_initializer);
  o.moving_mean_initializer = r.initializer("moving_mean_initializer", o.moving_mean_initializer);
  o.moving_variance_initializer =
      r.initializer("moving_variance_initializer", o.moving_variance_initializer);
  r.only("synchronized", false);
  r.only("renorm", false);  // Keras 2
  r.only("fused", nullptr);
  read_regularizers_off(r);
  r.finish();
  return std::make_shared<BatchNormalization>(std::move(o));
}

// ---- LayerNormalization ----------------------------------------------------------------------

LayerNormalization::LayerNormalization(LayerNormOptions options)
    : Layer(options.name, "layer_normalization"), options_(std::move(options)) {
  if (options_.axis < -1) {
    throw ValueError("layer '" + name() +
                     "' (LayerNormalization): axis must be -1 (the last) or "
                     "the last axis's index, got " +
                     std::to_string(options_.axis));
  }
  if (!(options_.epsilon > 0)) {
    throw ValueError("layer '" + name() + "' (LayerNormalization): epsilon must be > 0, got " +
                     std::to_string(options_.epsilon));
  }
}

void LayerNormalization::build(const Shape& in) {
  require_channels(*this, in);
  require_last_axis(*this, options_.axis, in);
  const Shape c{in.dim(-1)};
  if (options_.scale) {
    gamma_ = add_weight("gamma", c, options_.gamma_initializer, true, build_dtype());
  }
  if (options_.center) {
    beta_ = add_weight("beta", c, options_.beta_initializer, true, build_dtype());
  }
}

Tensor LayerNormalization::call(const Tensor& x, bool) {
  Tensor m = mean(x, {-1}, true);
  Tensor centered = x - m;
  Tensor v = mean(square(centered), {-1}, true);
  Tensor y = centered / sqrt(v + options_.epsilon);
  if (options_.scale) y = y * gamma_.value();
  if (options_.center) y = y + beta_.value();
  return y;
}

nlohmann::json LayerNormalization::get_config() const {
  const auto& o = options_;
  nlohmann::json c = base_config();
  c["axis"] = o.axis;
  c["epsilon"] = o.epsilon;
  c["center"] = o.center;
  c["scale"] = o.scale;
  c["rms_scaling"] = false;
  c["beta_initializer"] = initializers::serialize(o.beta_initializer);
  c["gamma_initializer"] = initializers::serialize(o.gamma_initializer);
  return regularizers_off(std::move(c));
}

std::shared_ptr<Layer> LayerNormalization::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "LayerNormalization");
  LayerNormOptions o;
  o.name = r.name();
  o.axis = read_last_axis(r);
  o.epsilon = r.number("epsilon", o.epsilon);
  o.center = r.boolean("center", o.center);
  o.scale = r.boolean("scale", o.scale);
  r.only("rms_scaling", false);
  o.beta_initializer = r.initializer("beta_initializer", o.beta_initializer);
  o.gamma_initializer = r.initializer("gamma_initializer", o.gamma_initializer);
  read_regularizers_off(r);
  r.finish();
  return std::make_shared<LayerNormalization>(std::move(o));
}

}  // namespace kiln
