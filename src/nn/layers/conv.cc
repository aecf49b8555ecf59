// Conv2D on NHWC inputs with HWIO kernels.
#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace detail {
// TF's spatial output size: valid ceil((n - eff + 1) / s), same ceil(n / s); eff is the
// dilated window. Shared with pooling.cc.
int64_t nn_window_output_size(int64_t n, int64_t k, int64_t stride, int64_t dilation, Padding p) {
  if (p == Padding::kSame) return (n + stride - 1) / stride;
  const int64_t eff = dilation * (k - 1) + 1;
  return n < eff ? 0 : (n - eff) / stride + 1;
}

// Keras' padding names; shared with pooling.cc.
const char* nn_padding_name(Padding p) { return p == Padding::kSame ? "same" : "valid"; }

Padding nn_read_padding(ConfigReader& r) {
  const std::string p = r.string("padding", "valid");
  if (p == "valid") return Padding::kValid;
  if (p == "same") return Padding::kSame;
  throw ValueError(r.where() + ": field 'padding' must be \"valid\" or \"same\", got \"" + p +
                   "\"");
}
}  // namespace detail

Conv2D::Conv2D(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DLayerOptions options)
    : Layer(options.name, "conv2d"),
      filters_(filters),
      kernel_size_(kernel_size),
      options_(std::move(options)) {
  const auto& o = options_;
  if (filters <= 0 || kernel_size[0] <= 0 || kernel_size[1] <= 0 || o.strides[0] <= 0 ||
      o.strides[1] <= 0 || o.dilation[0] <= 0 || o.dilation[1] <= 0 || o.groups <= 0) {
    throw ValueError("layer '" + name() +
                     "' (Conv2D): filters, kernel_size, strides, dilation "
                     "and groups must be positive");
  }
  if (filters % o.groups != 0) {
    throw ValueError("layer '" + name() + "' (Conv2D): filters " + std::to_string(filters) +
                     " is not divisible by groups " + std::to_string(o.groups));
  }
  activation_ = get_activation(o.activation);
  if (o.share_weights_with != nullptr) share_weights_from(*o.share_weights_with);
}

void Conv2D::build(const Shape& in) {
  if (in.rank() != 4) {
    throw ShapeError("layer '" + name() + "' (Conv2D) needs an NHWC input of rank 4, got " +
                     to_string(in));
  }
  const int64_t c = in[3];
  if (c % options_.groups != 0) {
    throw ValueError("layer '" + name() + "' (Conv2D): input channels " + std::to_string(c) +
                     " are not divisible by groups " + std::to_string(options_.groups));
  }
  kernel_ = add_weight("kernel", {kernel_size_[0], kernel_size_[1], c / options_.groups, filters_},
                       options_.kernel_initializer, true, build_dtype());
  if (options_.use_bias) {
    bias_ = add_weight("bias", {filters_}, options_.bias_initializer, true, build_dtype());
  }
}

Tensor Conv2D::call(const Tensor& x, bool) {
  Conv2DOptions o;
  o.strides = options_.strides;
  o.padding = options_.padding;
  o.dilation = options_.dilation;
  o.groups = options_.groups;
  Tensor y = conv2d(x, kernel_.value(), o);
  if (options_.use_bias) y = add(y, bias_.value());
  return activation_(y);
}

Shape Conv2D::compute_output_shape(const Shape& in) {
  const auto& o = options_;
  return Shape{
      in[0],
      detail::nn_window_output_size(in[1], kernel_size_[0], o.strides[0], o.dilation[0], o.padding),
      detail::nn_window_output_size(in[2], kernel_size_[1], o.strides[1], o.dilation[1], o.padding),
      filters_};
}

nlohmann::json Conv2D::get_config() const {
  const auto& o = options_;
  nlohmann::json c = base_config();
  c["filters"] = filters_;
  c["kernel_size"] = {kernel_size_[0], kernel_size_[1]};
  c["strides"] = {o.strides[0], o.strides[1]};
  c["padding"] = detail::nn_padding_name(o.padding);
  c["data_format"] = "channels_last";
  c["dilation_rate"] = {o.dilation[0], o.dilation[1]};
  c["groups"] = o.groups;
  c["activation"] = o.activation.empty() ? "linear" : o.activation;
  c["use_bias"] = o.use_bias;
  c["kernel_initializer"] = initializers::serialize(o.kernel_initializer);
  c["bias_initializer"] = initializers::serialize(o.bias_initializer);
  c["kernel_regularizer"] = nullptr;
  c["bias_regularizer"] = nullptr;
  c["activity_regularizer"] = nullptr;
  c["kernel_constraint"] = nullptr;
  c["bias_constraint"] = nullptr;
  return c;
}

std::shared_ptr<Layer> Conv2D::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Conv2D");
  Conv2DLayerOptions o;
  o.name = r.name();
  const int64_t filters = r.integer("filters");
  if (!r.has("kernel_size")) r.integer("kernel_size");  // required: names the missing field
  const std::array<int64_t, 2> kernel_size = r.pair("kernel_size", {0, 0});
  o.strides = r.pair("strides", o.strides);
  o.padding = detail::nn_read_padding(r);
  r.only("data_format", "channels_last");
  o.dilation = r.pair("dilation_rate", o.dilation);
  o.groups = r.integer("groups", 1);
  o.activation = r.activation("activation");
  o.use_bias = r.boolean("use_bias", true);
  o.kernel_initializer = r.initializer("kernel_initializer", o.kernel_initializer);
  o.bias_initializer = r.initializer("bias_initializer", o.bias_initializer);
  for (const char* k : {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                        "kernel_constraint", "bias_constraint", "lora_rank"}) {
    r.only(k, nullptr);
  }
  r.finish();
  return std::make_shared<Conv2D>(filters, kernel_size, std::move(o));
}

}  // namespace kiln
