// 2-D pooling over NHWC tensors (the gradient ops are in pool_grad.cc):
//   kMaxPool2D      (x)      -> y    attrs = pool attrs (ops/pool_geom.h)
//   kAvgPool2D      (x)      -> y
// Averages count only in-bounds elements (Keras/TF "same"). The fast kernels are hand-written
// NHWC loops whose inner loop runs over contiguous channels (vectorized), split across threads
// over rows. max_pool2d also takes uint8 and int8 (quantized activations: the max of
// quantized values is the quantized max, so int8 networks pool without leaving int8).
#include <algorithm>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/pool_geom.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using pool::argmax_ref;
using pool::for_each_out;
using pool::geom;
using pool::Geom;
using pool::kPoolSchema;
using pool::out_shape;
using pool::window;
using pool::Window;

constexpr char kMaxName[] = "max_pool2d", kAvgName[] = "avg_pool2d";

bool is_int8(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

// Floating types, plus uint8/int8 for max pooling (forward only).
template <bool kMax, typename F>
void visit_pooled(DType t, F&& f) {
  if constexpr (kMax) {
    if (t == DType::kUInt8) return f.template operator()<uint8_t>();
    if (t == DType::kInt8) return f.template operator()<int8_t>();
  }
  detail::visit_floating(t, f);
}

template <const char* Name>
void pool_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  if (!(Name == kMaxName && is_int8(in[0].dtype))) require_floating(Name, in[0].dtype);
  out[0] = {out_shape(geom(Name, in[0].shape, a)), in[0].dtype};
}

// ---- reference kernels: one element at a time --------------------------------------------------

void max_reference(const KernelArgs& k) {
  const Geom g = geom("max_pool2d", k.in[0].shape(), k.attrs);
  visit_pooled<true>(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* y = detail::ptr<T>(k.out[0]);
    for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      y[o] = x[argmax_ref(x, g, n, oy, ox, c)];
    });
  });
}

void avg_reference(const KernelArgs& k) {
  const Geom g = geom("avg_pool2d", k.in[0].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* y = detail::ptr<T>(k.out[0]);
    for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      const Window wd = window(g, oy, ox);
      double s = 0;
      for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
        for (int64_t xx = wd.x0; xx < wd.x1; ++xx) s += x[((n * g.h + yy) * g.w + xx) * g.c + c];
      y[o] = static_cast<T>(s / static_cast<double>(wd.count()));
    });
  });
}

// ---- fast kernels: whole channel rows at a time ------------------------------------------------

// o = max(o, x) over a channel row; restrict so uint8 rows vectorize too (char-typed pointers
// may alias anything otherwise). Keeps o where x is NaN, as `x > o ? x : o`.
template <typename T>
inline void max_into(T* __restrict o, const T* __restrict x, int64_t n) {
  for (int64_t c = 0; c < n; ++c) o[c] = x[c] > o[c] ? x[c] : o[c];
}

// Forward: rows (n, oy) split across threads; out[c] built from contiguous x rows.
template <bool kMax>
bool pool_fast(const KernelArgs& k) {
  const Geom g = geom(kMax ? "max_pool2d" : "avg_pool2d", k.in[0].shape(), k.attrs);
  visit_pooled<kMax>(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* y = detail::ptr<T>(k.out[0]);
    const int64_t C = g.c;
    kernels::parallel_range(g.n * g.oh, g.ow * C * g.ph * g.pw, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t n = r / g.oh, oy = r % g.oh;
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const Window wd = window(g, oy, ox);
          T* o = y + (r * g.ow + ox) * C;
          if (kMax && wd.count() == 4 && wd.y1 - wd.y0 == 2) {  // a full 2x2 window: one pass
            const T *x0 = x + ((n * g.h + wd.y0) * g.w + wd.x0) * C, *x1 = x0 + C,
                    *x2 = x0 + g.w * C, *x3 = x2 + C;
            for (int64_t c = 0; c < C; ++c) {
              T m = x0[c];  // the order of max_into's comparisons, so NaNs land alike
              m = x1[c] > m ? x1[c] : m;
              m = x2[c] > m ? x2[c] : m;
              o[c] = x3[c] > m ? x3[c] : m;
            }
            continue;
          }
          bool first = true;
          for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
            for (int64_t xx = wd.x0; xx < wd.x1; ++xx) {
              const T* xi = x + ((n * g.h + yy) * g.w + xx) * C;
              if (first) {
                std::copy(xi, xi + C, o);
                first = false;
              } else if (kMax) {
                max_into(o, xi, C);
              } else {
                for (int64_t c = 0; c < C; ++c) o[c] += xi[c];
              }
            }
          if (!kMax) {
            const T inv = T(1) / static_cast<T>(wd.count());
            for (int64_t c = 0; c < C; ++c) o[c] *= inv;
          }
        }
      }
    });
  });
  return true;
}

// ---- gradients: the gradient ops of pool_grad.cc ------------------------------------------------

void max_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kMaxPool2DGrad, {g.in[0], g.grad_out[0]}, g.attrs);
}
void avg_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kAvgPool2DGrad, {g.grad_out[0], g.in[0]}, g.attrs);
}

}  // namespace

namespace ops {
const OpDef kMaxPool2D{.name = "max_pool2d",
                       .num_inputs = 1,
                       .num_outputs = 1,
                       .infer = pool_infer<kMaxName>,
                       .reference = max_reference,
                       .fast = pool_fast<true>,
                       .grad = max_grad,
                       .attrs = &kPoolSchema};
const OpDef kAvgPool2D{.name = "avg_pool2d",
                       .num_inputs = 1,
                       .num_outputs = 1,
                       .infer = pool_infer<kAvgName>,
                       .reference = avg_reference,
                       .fast = pool_fast<false>,
                       .grad = avg_grad,
                       .attrs = &kPoolSchema};
}  // namespace ops

namespace {
Attrs pool_attrs(const Pool2DOptions& o) {
  // Strides of 0 default to the pool size (Keras); negatives are left for infer to reject.
  const int64_t sh = o.strides[0] == 0 ? o.pool_size[0] : o.strides[0];
  const int64_t sw = o.strides[1] == 0 ? o.pool_size[1] : o.strides[1];
  return Attrs{o.pool_size[0], o.pool_size[1], sh, sw, o.padding == Padding::kSame ? 1 : 0};
}
}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2DOptions& options) {
  return run_op(ops::kMaxPool2D, {x}, pool_attrs(options));
}
Tensor avg_pool2d(const Tensor& x, const Pool2DOptions& options) {
  return run_op(ops::kAvgPool2D, {x}, pool_attrs(options));
}

}  // namespace kiln
