// Internal to src/ops/pool.cc and pool_grad.cc: the geometry every 2-D pooling op shares.
// pool attrs, every op's = {pool_h, pool_w, stride_h, stride_w, padding (0 valid, 1 same)};
// "same" pads as TF does, and windows clipped to the image count only in-bounds elements.
#pragma once

#include <algorithm>
#include <string>

#include "kiln/error.h"
#include "ops/op_def.h"

namespace kiln::pool {

struct Geom {
  int64_t n, h, w, c, ph, pw, sh, sw, oh, ow, pt, pl;
};

inline Geom geom(const char* op, const Shape& x, const Attrs& a) {
  if (x.rank() != 4) {
    throw ShapeError(std::string(op) + ": input shape " + to_string(x) + " must be [N, H, W, C]");
  }
  Geom g{};
  g.ph = a.i(0), g.pw = a.i(1), g.sh = a.i(2), g.sw = a.i(3);
  if (g.ph < 1 || g.pw < 1 || g.sh < 1 || g.sw < 1) {
    throw ValueError(std::string(op) + ": pool_size and strides must be >= 1, got pool_size [" +
                     std::to_string(g.ph) + ", " + std::to_string(g.pw) + "], strides [" +
                     std::to_string(g.sh) + ", " + std::to_string(g.sw) + "]");
  }
  g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  auto dim = [&](int64_t in, int64_t k, int64_t s, int64_t& out, int64_t& before) {
    if (a.i(4) == 1) {  // TF "same"
      out = (in + s - 1) / s;
      before = std::max<int64_t>((out - 1) * s + k - in, 0) / 2;
    } else {
      if (in < k) {
        throw ShapeError(std::string(op) + ": input shape " + to_string(x) + " is smaller than " +
                         "pool_size [" + std::to_string(g.ph) + ", " + std::to_string(g.pw) +
                         "] with valid padding");
      }
      out = (in - k) / s + 1;
      before = 0;
    }
  };
  dim(g.h, g.ph, g.sh, g.oh, g.pt);
  dim(g.w, g.pw, g.sw, g.ow, g.pl);
  return g;
}

inline Shape out_shape(const Geom& g) { return Shape{g.n, g.oh, g.ow, g.c}; }

// The in-bounds window of output pixel (oy, ox): rows [y0, y1), cols [x0, x1). Never empty.
struct Window {
  int64_t y0, y1, x0, x1;
  int64_t count() const { return (y1 - y0) * (x1 - x0); }
};
inline Window window(const Geom& g, int64_t oy, int64_t ox) {
  const int64_t ys = oy * g.sh - g.pt, xs = ox * g.sw - g.pl;
  return {std::max<int64_t>(ys, 0), std::min(ys + g.ph, g.h), std::max<int64_t>(xs, 0),
          std::min(xs + g.pw, g.w)};
}

// Whether no two windows share an input pixel (stride >= pool size in both dims; the common
// 2x2/2 case): then each input pixel has at most one window and the max gradient is a plain
// store, with no zero-fill of the whole image and no read-modify-write.
inline bool windows_disjoint(const Geom& g) { return g.sh >= g.ph && g.sw >= g.pw; }

// Whether the windows tile the input exactly (2x2/2 on even sizes): each input pixel lies in
// exactly one window, so a gradient kernel stores every input-sized element once, with no fill.
inline bool windows_tile(const Geom& g) {
  return g.sh == g.ph && g.sw == g.pw && g.pt == 0 && g.pl == 0 && g.oh * g.sh == g.h &&
         g.ow * g.sw == g.w;
}

// Offset in x of the first max of window (n, oy, ox) in channel c.
template <typename T>
inline int64_t argmax_ref(const T* x, const Geom& g, int64_t n, int64_t oy, int64_t ox, int64_t c) {
  const Window wd = window(g, oy, ox);
  int64_t best = -1;
  for (int64_t y = wd.y0; y < wd.y1; ++y)
    for (int64_t xx = wd.x0; xx < wd.x1; ++xx) {
      const int64_t i = ((n * g.h + y) * g.w + xx) * g.c + c;
      if (best < 0 || x[i] > x[best]) best = i;
    }
  return best;
}

template <typename Fn>
inline void for_each_out(const Geom& g, Fn&& fn) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t c = 0; c < g.c; ++c) fn(n, oy, ox, c, ((n * g.oh + oy) * g.ow + ox) * g.c + c);
}

inline constexpr AttrField kPoolFields[] = {
    {"pool_size", AttrType::kInt, 2},
    {"strides", AttrType::kInt, 2},
    {"padding", AttrType::kEnum, 1, "valid|same"},
};
inline constexpr AttrSchema kPoolSchema{kPoolFields};

}  // namespace kiln::pool
