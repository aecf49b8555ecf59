// Internal to the conv ops (src/ops/conv.cc, conv_pool.cc): the geometry every 2-D
// convolution shares. conv attrs = {stride_h, stride_w, padding (0 valid, 1 same), dilation_h,
// dilation_w, groups}; "same" is TensorFlow's (the odd padding pixel after).
#pragma once

#include <algorithm>
#include <string>

#include "kiln/error.h"
#include "ops/op_def.h"

namespace kiln::conv {

inline constexpr int kConvAttrs = 6;

// Everything a conv kernel needs, resolved from the x and filter shapes and the attrs.
struct Geom {
  int64_t n, h, w, c, kh, kw, cg, o, oh, ow, sh, sw, dh, dw, pt, pl, pb, pr, groups;
};

// Output size and padding of one spatial dim; returns false when the window does not fit.
inline bool spatial(int64_t in, int64_t k, int64_t s, int64_t d, bool same, int64_t& out,
                    int64_t& before, int64_t& after) {
  const int64_t eff = (k - 1) * d + 1;
  if (same) {
    out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>((out - 1) * s + eff - in, 0);
    before = total / 2;
    after = total - before;
    return true;
  }
  before = after = 0;
  if (in < eff) return false;
  out = (in - eff) / s + 1;
  return true;
}

// Validates and resolves; `op` and `shapes` name the op and its input shapes in errors.
inline Geom geom(const char* op, const std::string& shapes, const Shape& x, const Shape& f,
                 const Attrs& a) {
  // Built only to throw: kernels resolve their geometry on every call and must not allocate.
  auto where = [&] { return std::string(op) + ": shapes " + shapes; };
  if (x.rank() != 4 || f.rank() != 4) {
    throw ShapeError(where() + ": input must be [N, H, W, C] and filter [KH, KW, C/groups, O]");
  }
  Geom g{};
  g.sh = a.i(0), g.sw = a.i(1), g.dh = a.i(3), g.dw = a.i(4), g.groups = a.i(5);
  if (g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.groups < 1) {
    throw ValueError(std::string(op) +
                     ": strides, dilation and groups must be >= 1, got strides [" +
                     std::to_string(g.sh) + ", " + std::to_string(g.sw) + "], dilation [" +
                     std::to_string(g.dh) + ", " + std::to_string(g.dw) + "], groups " +
                     std::to_string(g.groups));
  }
  g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  g.kh = f[0], g.kw = f[1], g.cg = f[2], g.o = f[3];
  if (g.c % g.groups != 0 || g.o % g.groups != 0 || g.cg * g.groups != g.c) {
    throw ShapeError(
        where() + ": with groups=" + std::to_string(g.groups) +
        " the filter's third dim must be channels/groups = " +
        (g.c % g.groups ? std::string("(not divisible)") : std::to_string(g.c / g.groups)) +
        " and its output channels divisible by groups");
  }
  if (g.kh < 1 || g.kw < 1) throw ShapeError(where() + ": the filter window is empty");
  const bool same = a.i(2) == 1;
  if (!spatial(g.h, g.kh, g.sh, g.dh, same, g.oh, g.pt, g.pb) ||
      !spatial(g.w, g.kw, g.sw, g.dw, same, g.ow, g.pl, g.pr)) {
    throw ShapeError(
        where() + ": the (dilated) filter window is larger than the input with valid " + "padding");
  }
  return g;
}

inline Shape out_shape(const Geom& g) { return Shape{g.n, g.oh, g.ow, g.o}; }

// The conv attrs at the front of `a` (a gradient or fused op's attrs begin with them).
inline Attrs prefix(const Attrs& a) {
  Attrs c;
  for (int k = 0; k < kConvAttrs; ++k) c.add_int(a.i(k));
  return c;
}

}  // namespace kiln::conv
