// Pooling layers: MaxPool2D, AvgPool2D, GlobalAveragePooling2D (NHWC).
#include "kiln/error.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace detail {
int64_t nn_window_output_size(int64_t n, int64_t k, int64_t stride, int64_t dilation, Padding p);
}

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

AvgPool2D::AvgPool2D(Pool2DLayerOptions options)
    : Layer(options.name, "average_pooling2d"), options_(std::move(options)) {
  check_pool(*this, options_);
}

Tensor AvgPool2D::call(const Tensor& x, bool) {
  pooled_shape(*this, options_, x.shape());
  return avg_pool2d(x, to_op(options_));
}

Shape AvgPool2D::compute_output_shape(const Shape& in) { return pooled_shape(*this, options_, in); }

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

}  // namespace kiln
