// BatchNormalization and LayerNormalization over the last axis, from kiln ops.
#include "kiln/autograd.h"
#include "kiln/error.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace {
void require_channels(const Layer& l, const Shape& in) {
  if (in.rank() < 1 || in.dim(-1) == 0) {
    throw ShapeError("layer '" + l.name() + "' (" + l.type_name() +
                     ") normalizes the last axis and needs it non-empty, got " + to_string(in));
  }
}
}  // namespace

// ---- BatchNormalization ----------------------------------------------------------------------

BatchNormalization::BatchNormalization(BatchNormOptions options)
    : Layer(options.name, "batch_normalization"), options_(std::move(options)) {
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
  const Shape c{in.dim(-1)};
  const DType dt = build_dtype();
  if (options_.scale) gamma_ = add_weight("gamma", c, initializers::ones(), true, dt);
  if (options_.center) beta_ = add_weight("beta", c, initializers::zeros(), true, dt);
  moving_mean_ = add_weight("moving_mean", c, initializers::zeros(), false, dt);
  moving_variance_ = add_weight("moving_variance", c, initializers::ones(), false, dt);
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

// ---- LayerNormalization ----------------------------------------------------------------------

LayerNormalization::LayerNormalization(LayerNormOptions options)
    : Layer(options.name, "layer_normalization"), options_(std::move(options)) {
  if (!(options_.epsilon > 0)) {
    throw ValueError("layer '" + name() + "' (LayerNormalization): epsilon must be > 0, got " +
                     std::to_string(options_.epsilon));
  }
}

void LayerNormalization::build(const Shape& in) {
  require_channels(*this, in);
  const Shape c{in.dim(-1)};
  if (options_.scale) gamma_ = add_weight("gamma", c, initializers::ones(), true, build_dtype());
  if (options_.center) beta_ = add_weight("beta", c, initializers::zeros(), true, build_dtype());
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

}  // namespace kiln
