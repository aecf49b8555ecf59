// Multi-input layers: Add, Concatenate.
#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace {
std::string list(const std::vector<Shape>& shapes) {
  std::string out;
  for (size_t i = 0; i < shapes.size(); ++i) out += (i ? ", " : "") + to_string(shapes[i]);
  return out;
}

void require_two(const Layer& l, size_t n) {
  if (n < 2) {
    throw ValueError("layer '" + l.name() + "' (" + l.type_name() +
                     ") needs at least 2 inputs, got " + std::to_string(n));
  }
}
}  // namespace

Tensor MergeLayer::call(const Tensor&, bool) {
  throw ValueError("layer '" + name() + "' (" + type_name() +
                   ") takes a list of inputs, e.g. layer({a, b}); got one tensor");
}

// ---- Add -------------------------------------------------------------------------------------

Add::Add(std::string name) : MergeLayer(std::move(name), "add") {}

void Add::build_multi(const std::vector<Shape>& in) { compute_output_shape_multi(in); }

nlohmann::json Add::get_config() const { return base_config(); }

std::shared_ptr<Layer> Add::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Add");
  r.finish();
  return std::make_shared<Add>(r.name());
}

Tensor Add::call_multi(const std::vector<Tensor>& xs, bool) {
  Tensor y = xs[0];
  for (size_t i = 1; i < xs.size(); ++i) y = add(y, xs[i]);
  return y;
}

Shape Add::compute_output_shape_multi(const std::vector<Shape>& in) {
  require_two(*this, in.size());
  for (const Shape& s : in) {
    if (s != in[0]) {
      throw ShapeError("layer '" + name() + "' (Add) needs inputs of one shape, got " + list(in));
    }
  }
  return in[0];
}

// ---- Concatenate -----------------------------------------------------------------------------

Concatenate::Concatenate(int axis, std::string name)
    : MergeLayer(std::move(name), "concatenate"), axis_(axis) {}

void Concatenate::build_multi(const std::vector<Shape>& in) { compute_output_shape_multi(in); }

nlohmann::json Concatenate::get_config() const {
  nlohmann::json c = base_config();
  c["axis"] = axis_;
  return c;
}

std::shared_ptr<Layer> Concatenate::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Concatenate");
  const int64_t axis = r.integer("axis", -1);
  if (axis < -64 || axis > 64) {
    throw ValueError(r.where() + ": field 'axis' = " + std::to_string(axis) + " is out of range");
  }
  r.finish();
  return std::make_shared<Concatenate>(static_cast<int>(axis), r.name());
}

Tensor Concatenate::call_multi(const std::vector<Tensor>& xs, bool) {
  return concat(xs, normalize_axis(axis_, xs[0].rank(), "Concatenate"));
}

Shape Concatenate::compute_output_shape_multi(const std::vector<Shape>& in) {
  require_two(*this, in.size());
  const int r = in[0].rank();
  const int axis = normalize_axis(axis_, r, "Concatenate");
  Shape out = in[0];
  out[axis] = 0;
  for (const Shape& s : in) {
    bool ok = s.rank() == r;
    for (int d = 0; ok && d < r; ++d) ok = d == axis || s[d] == in[0][d];
    if (!ok) {
      throw ShapeError("layer '" + name() + "' (Concatenate) on axis " + std::to_string(axis_) +
                       ": other dims must agree, got " + list(in));
    }
    out[axis] += s[axis];
  }
  return out;
}

}  // namespace kiln
