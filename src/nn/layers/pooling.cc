// Pooling layers: MaxPool2D, AvgPool2D, GlobalAveragePooling2D (NHWC).
#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace detail {
int64_t nn_window_output_size(int64_t n, int64_t k, int64_t stride, int64_t dilation, Padding p);
const char* nn_padding_name(Padding p);
Padding nn_read_padding(ConfigReader& r);
}  // namespace detail

namespace {

void check_pool(const Layer& l, const Pool2DLayerOptions& o) {
  if (o.pool_size[0] <= 0 || o.pool_size[1] <= 0 || o.strides[0] < 0 || o.strides[1] < 0) {
    throw ValueError("layer '" + l.name() + "' (" + l.type_name() +
                     "): pool_size must be positive and strides >= 0 (0: pool_size)");
  }
}

Pool2DOptions to_op(const Pool2DLayerOptions& o) {
  Pool2DOptions p;
  p.pool_size = o.pool_size;
  p.strides = o.strides;
  p.padding = o.padding;
  return p;
}

Shape pooled_shape(const Layer& l, const Pool2DLayerOptions& o, const Shape& in) {
  if (in.rank() != 4) {
    throw ShapeError("layer '" + l.name() + "' (" + l.type_name() +
                     ") needs an NHWC input of rank 4, got " + to_string(in));
  }
  const int64_t sh = o.strides[0] ? o.strides[0] : o.pool_size[0];
  const int64_t sw = o.strides[1] ? o.strides[1] : o.pool_size[1];
  return Shape{in[0], detail::nn_window_output_size(in[1], o.pool_size[0], sh, 1, o.padding),
               detail::nn_window_output_size(in[2], o.pool_size[1], sw, 1, o.padding), in[3]};
}

// Keras' config: strides default to pool_size, written out resolved.
nlohmann::json pool_config(nlohmann::json c, const Pool2DLayerOptions& o) {
  const int64_t sh = o.strides[0] ? o.strides[0] : o.pool_size[0];
  const int64_t sw = o.strides[1] ? o.strides[1] : o.pool_size[1];
  c["pool_size"] = {o.pool_size[0], o.pool_size[1]};
  c["strides"] = {sh, sw};
  c["padding"] = detail::nn_padding_name(o.padding);
  c["data_format"] = "channels_last";
  return c;
}

Pool2DLayerOptions read_pool(ConfigReader& r) {
  Pool2DLayerOptions o;
  o.name = r.name();
  o.pool_size = r.pair("pool_size", o.pool_size);
  o.strides = r.pair("strides", o.pool_size);  // null or absent: pool_size, as Keras
  o.padding = detail::nn_read_padding(r);
  r.only("data_format", "channels_last");
  r.finish();
  return o;
}

}  // namespace

MaxPool2D::MaxPool2D(Pool2DLayerOptions options)
    : Layer(options.name, "max_pooling2d"), options_(std::move(options)) {
  check_pool(*this, options_);
}

Tensor MaxPool2D::call(const Tensor& x, bool) {
  pooled_shape(*this, options_, x.shape());  // the layer's own rank check and message
  return max_pool2d(x, to_op(options_));
}

Shape MaxPool2D::compute_output_shape(const Shape& in) { return pooled_shape(*this, options_, in); }

nlohmann::json MaxPool2D::get_config() const { return pool_config(base_config(), options_); }

std::shared_ptr<Layer> MaxPool2D::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "MaxPool2D");
  return std::make_shared<MaxPool2D>(read_pool(r));
}

AvgPool2D::AvgPool2D(Pool2DLayerOptions options)
    : Layer(options.name, "average_pooling2d"), options_(std::move(options)) {
  check_pool(*this, options_);
}

Tensor AvgPool2D::call(const Tensor& x, bool) {
  pooled_shape(*this, options_, x.shape());
  return avg_pool2d(x, to_op(options_));
}

Shape AvgPool2D::compute_output_shape(const Shape& in) { return pooled_shape(*this, options_, in); }

nlohmann::json AvgPool2D::get_config() const { return pool_config(base_config(), options_); }

std::shared_ptr<Layer> AvgPool2D::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "AvgPool2D");
  return std::make_shared<AvgPool2D>(read_pool(r));
}

GlobalAveragePooling2D::GlobalAveragePooling2D(std::string name)
    : Layer(std::move(name), "global_average_pooling2d") {}

Tensor GlobalAveragePooling2D::call(const Tensor& x, bool) {
  compute_output_shape(x.shape());
  return mean(x, {1, 2}, false);
}

Shape GlobalAveragePooling2D::compute_output_shape(const Shape& in) {
  if (in.rank() != 4) {
    throw ShapeError("layer '" + name() +
                     "' (GlobalAveragePooling2D) needs an NHWC input of "
                     "rank 4, got " +
                     to_string(in));
  }
  return Shape{in[0], in[3]};
}

nlohmann::json GlobalAveragePooling2D::get_config() const {
  nlohmann::json c = base_config();
  c["data_format"] = "channels_last";
  c["keepdims"] = false;
  return c;
}

std::shared_ptr<Layer> GlobalAveragePooling2D::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "GlobalAveragePooling2D");
  r.only("data_format", "channels_last");
  r.only("keepdims", false);
  r.finish();
  return std::make_shared<GlobalAveragePooling2D>(r.name());
}

}  // namespace kiln
