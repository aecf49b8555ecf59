// ONNX ops onto kiln ops: Pad (constant, edge, reflect) and Resize / Upsample (nearest,
// linear), built from kiln's pad, slice and gather with index tables made at import. A held
// NHWC value is resampled in place (its layout kept).
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

// ---- Pad ----------------------------------------------------------------------------------

// Indices of an edge- or reflect-padded axis of size n.
std::vector<int64_t> padded_indices(int64_t n, int64_t before, int64_t after, bool reflect) {
  std::vector<int64_t> idx;
  for (int64_t i = -before; i < n + after; ++i) {
    int64_t j = i;
    if (reflect) {
      const int64_t period = 2 * (n - 1);
      j = period == 0 ? 0 : ((j % period) + period) % period;
      if (j >= n) j = period - j;
    } else {
      j = std::clamp<int64_t>(j, 0, n - 1);
    }
    idx.push_back(j);
  }
  return idx;
}

void map_pad(NodeCtx& c) {
  Tensor x = c.in(0);
  const int r = x.rank();
  std::vector<int64_t> pads;
  double value = 0;
  if (c.opset() < 11) {
    pads = c.attr_ints("pads");
    value = c.attr_float("value", 0.0);
  } else {
    pads = c.ints_in(1, "pads");
    if (c.has_input(2)) {
      const std::vector<double> v = c.floats_in(2, "constant_value");
      if (v.size() != 1) c.fail("constant_value must be a scalar");
      value = v[0];
    }
    if (c.has_input(3)) c.fail("the axes input is not supported");
  }
  if (static_cast<int>(pads.size()) != 2 * r) c.fail("pads must hold 2 values per dim");
  for (int64_t p : pads) {
    if (p < -(int64_t{1} << 31) || p > (int64_t{1} << 31))
      c.fail("a pad of " + std::to_string(p) + " is out of range");
  }
  const std::string mode = c.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge")
    c.fail("mode '" + mode + "' is not supported");
  const std::vector<bool> u = c.unknown_dims(0);
  // Negative pads crop first.
  std::vector<int64_t> b(r, 0), e(r, std::numeric_limits<int64_t>::max());
  bool crop = false;
  for (int d = 0; d < r; ++d) {
    if (pads[d] < 0) b[d] = -pads[d], crop = true;
    if (pads[d + r] < 0) {
      if (u[d]) c.fail("negative pads on a symbolic dim are not supported");
      e[d] = x.shape()[d] + pads[d + r];
      crop = true;
    }
  }
  if (crop) x = slice(x, b, e);
  std::vector<std::pair<int64_t, int64_t>> p;
  for (int d = 0; d < r; ++d) {
    const int64_t before = std::max<int64_t>(pads[d], 0), after = std::max<int64_t>(pads[d + r], 0);
    p.emplace_back(before, after);
    if (mode == "constant" || (before == 0 && after == 0)) continue;
    if (u[d]) c.fail("reflect and edge padding of a symbolic dim are not supported");
    const int64_t n = x.shape()[d];
    if (n == 0 || (mode == "reflect" && (before >= n || after >= n))) {
      c.fail("reflect padding must be smaller than the dim");
    }
    c.charge(n + before + after, int64);
    x = gather(x, from_vector<int64_t>(padded_indices(n, before, after, mode == "reflect")), d);
  }
  if (mode == "constant") {
    int64_t total = 1;
    for (int d = 0; d < r; ++d) {
      if (!u[d]) total *= x.shape()[d] + p[d].first + p[d].second;
    }
    if (!is_symbolic(x)) c.charge(total, x.dtype());
    x = pad(x, p, value);
  }
  c.set_out(0, x);
}

// ---- Resize / Upsample --------------------------------------------------------------------

struct ResizeMode {
  std::string mode = "nearest";
  std::string coords = "half_pixel";
  std::string nearest = "round_prefer_floor";
};

// The source coordinate of output index i along an axis; `out` is the resized length as the
// spec's reference computes it (in * scale when scales are given, not rounded).
double source_coord(const ResizeMode& m, int64_t i, int64_t in, double out, double scale) {
  if (m.coords == "align_corners") return out == 1 ? 0.0 : i * double(in - 1) / double(out - 1);
  if (m.coords == "asymmetric") return i / scale;
  if (m.coords == "tf_half_pixel_for_nn") return (i + 0.5) / scale;
  if (m.coords == "pytorch_half_pixel") return out > 1 ? (i + 0.5) / scale - 0.5 : 0.0;
  return (i + 0.5) / scale - 0.5;  // half_pixel
}

int64_t nearest_index(const ResizeMode& m, double x, int64_t in) {
  double j;
  if (m.nearest == "floor") {
    j = std::floor(x);
  } else if (m.nearest == "ceil") {
    j = std::ceil(x);
  } else if (m.nearest == "round_prefer_ceil") {
    j = std::round(x);
  } else {  // round_prefer_floor
    j = (x == std::floor(x) + 0.5) ? std::floor(x) : std::round(x);
  }
  return std::clamp<int64_t>(static_cast<int64_t>(j), 0, in - 1);
}

void resize(NodeCtx& c, const ResizeMode& m, const std::vector<double>& scales,
            const std::vector<int64_t>& sizes) {
  OValue& v = c.value(0);
  if (v.tainted && !c.folding()) c.in(0);
  const Shape xs = c.traced_shape(0);
  const int r = xs.rank();
  const std::vector<bool> u = c.unknown_dims(0);
  if (!scales.empty() && static_cast<int>(scales.size()) != r)
    c.fail("scales must hold one value per dim");
  if (!sizes.empty() && static_cast<int>(sizes.size()) != r)
    c.fail("sizes must hold one value per dim");
  if (!is_floating(v.t.dtype())) c.fail("only float and double inputs are supported");
  // Resampled per axis, on the held tensor (NHWC stays NHWC): axis d of ONNX is axis
  // inv[d] of the held tensor.
  Tensor t = v.t;
  const std::vector<int> inv = v.perm.empty() ? std::vector<int>() : inverse_perm(v.perm);
  for (int d = 0; d < r; ++d) {
    const int64_t in = xs[d];
    if (!sizes.empty() && (sizes[d] < 0 || sizes[d] > (int64_t{1} << 24)))
      c.fail("sizes must be in [0, 2^24]");
    if (!scales.empty() && !(scales[d] > 0 && scales[d] < double(int64_t{1} << 24))) {
      c.fail("scales must be in (0, 2^24)");
    }
    if (in == 0) c.fail("resizing an empty dim is not supported");
    const double scale = scales.empty() ? double(sizes[d]) / double(in) : scales[d];
    const int64_t out = sizes.empty() ? static_cast<int64_t>(std::floor(in * scale)) : sizes[d];
    if (!(scale > 0) || out < 0) c.fail("scales and sizes must be positive");
    if (out == in && scale == 1.0) continue;
    if (u[d]) c.fail("resizing a symbolic dim is not supported");
    if (out > (int64_t{1} << 24)) c.fail("the output is too large");
    const int axis = inv.empty() ? d : inv[d];
    const double length = sizes.empty() ? in * scale : double(out);
    c.charge(3 * out, float64);
    if (m.mode == "nearest") {
      std::vector<int64_t> idx(out);
      for (int64_t i = 0; i < out; ++i)
        idx[i] = nearest_index(m, source_coord(m, i, in, length, scale), in);
      t = gather(t, from_vector<int64_t>(idx), axis);
      continue;
    }
    std::vector<int64_t> lo(out), hi(out);
    std::vector<double> frac(out);
    for (int64_t i = 0; i < out; ++i) {
      const double x = std::clamp(source_coord(m, i, in, length, scale), 0.0, double(in - 1));
      lo[i] = static_cast<int64_t>(std::floor(x));
      hi[i] = std::min<int64_t>(lo[i] + 1, in - 1);
      frac[i] = x - double(lo[i]);
    }
    Shape ws{out};
    for (int k = axis + 1; k < t.rank(); ++k) ws.push_back(1);
    Tensor wt = cast(from_vector<double>(frac, ws), t.dtype());
    Tensor a = gather(t, from_vector<int64_t>(lo), axis);
    Tensor b = gather(t, from_vector<int64_t>(hi), axis);
    t = add(a, mul(sub(b, a), wt));
  }
  c.set_out(0, OValue{t, v.perm});
}

void map_resize(NodeCtx& c) {
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  if (m.mode != "nearest" && m.mode != "linear") c.fail("mode '" + m.mode + "' is not supported");
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (c.opset() < 11) {
    m.coords = "asymmetric";
    m.nearest = "floor";
    scales = c.floats_in(1, "scales");
  } else {
    m.coords = c.attr_string("coordinate_transformation_mode", "half_pixel");
    m.nearest = c.attr_string("nearest_mode", "round_prefer_floor");
    if (m.coords == "tf_crop_and_resize")
      c.fail("coordinate_transformation_mode tf_crop_and_resize is not supported");
    if (m.coords != "half_pixel" && m.coords != "pytorch_half_pixel" &&
        m.coords != "align_corners" && m.coords != "asymmetric" &&
        m.coords != "tf_half_pixel_for_nn") {
      c.fail("coordinate_transformation_mode '" + m.coords + "' is not supported");
    }
    if (m.nearest != "round_prefer_floor" && m.nearest != "round_prefer_ceil" &&
        m.nearest != "floor" && m.nearest != "ceil") {
      c.fail("nearest_mode '" + m.nearest + "' is not supported");
    }
    if (c.attr_int("exclude_outside", 0) != 0) c.fail("exclude_outside=1 is not supported");
    if (c.has_attr("axes")) c.fail("the axes attribute is not supported");
    if (c.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch") {
      c.fail("keep_aspect_ratio_policy other than stretch is not supported");
    }
    if (c.has_input(2)) scales = c.floats_in(2, "scales");
    if (c.has_input(3)) sizes = c.ints_in(3, "sizes");
    if (!scales.empty() && !sizes.empty()) c.fail("give scales or sizes, not both");
    if (scales.empty() && sizes.empty()) c.fail("scales or sizes is required");
  }
  resize(c, m, scales, sizes);
}

void map_upsample(NodeCtx& c) {
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  if (m.mode != "nearest" && m.mode != "linear") c.fail("mode '" + m.mode + "' is not supported");
  m.coords = "asymmetric";
  m.nearest = "floor";
  resize(c, m, c.floats_in(1, "scales"), {});
}

}  // namespace

std::vector<Mapping> resample_mappings() {
  return {
      {"Pad", map_pad},
      {"Resize", map_resize},
      {"Upsample", map_upsample},
  };
}

}  // namespace kiln::onnx_import
