// The gradient ops of 2-D pooling (the forward ops are in pool.cc), NHWC:
//   kMaxPool2DGrad  (x, dy)  -> dx   each window's gradient goes to its FIRST max (row-major
//                                    window order), in both kernels, so ties are deterministic
//   kAvgPool2DGrad  (dy, x)  -> dx   x gives only its shape (so a traced graph serves every
//                                    batch size); its data is never read
//   kMaxPool2DSelect (x, v)  -> y    each window's value of v at x's first max: the adjoint of
//                                    max_pool2d_grad in dy, so each is the other's gradient
//   kFusedMaxPool2DGrad (x, dy) -> dx   E(max_pool2d_grad(x, dy), x) for an elementwise op E
//                                    linear in its first input (kLinearInInput0: relu_grad), in
//                                    one pass: E runs only where a window's gradient lands, on
//                                    the window's max. Emitted by graph/fusion.cc for conv ->
//                                    relu -> max_pool backward. attrs = pool attrs, then E's
//                                    fused_elementwise opcode.
// pool attrs as in ops/pool_geom.h. The fast kernels run over contiguous channel rows, split
// across threads over images or output rows.
#include <immintrin.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kiln/ops.h"
#include "ops/fused.h"
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
using pool::windows_disjoint;

void max_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "max_pool2d_grad";
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[1].dtype);
  const Geom g = geom(op, in[0].shape, a);
  if (in[1].shape != out_shape(g)) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                     ": the output gradient must be " + to_string(out_shape(g)));
  }
  out[0] = in[0];
}

void max_select_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "max_pool2d_select";
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[1].dtype);
  if (in[1].shape != in[0].shape) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) + " must be equal");
  }
  out[0] = {out_shape(geom(op, in[0].shape, a)), in[0].dtype};
}

void avg_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "avg_pool2d_grad";
  require_floating(op, in[0].dtype);
  const Shape& xs = in[1].shape;
  const Geom g = geom(op, xs, a);
  if (in[0].shape != out_shape(g)) {
    throw ShapeError(std::string(op) + ": output gradient shape " + to_string(in[0].shape) +
                     " does not fit input shape " + to_string(xs) + " (expected " +
                     to_string(out_shape(g)) + ")");
  }
  out[0] = {xs, in[0].dtype};
}

// ---- reference kernels: one element at a time --------------------------------------------------

void max_grad_reference(const KernelArgs& k) {
  const Geom g = geom("max_pool2d_grad", k.in[0].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    const T* dy = detail::ptr<T>(k.in[1]);
    T* dx = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) dx[i] = T(0);
    for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      dx[argmax_ref(x, g, n, oy, ox, c)] += dy[o];
    });
  });
}

// The epilogue op E of fused_max_pool2d_grad (attr 5): a registered elementwise op of two
// inputs, linear in the first. Throws ValueError otherwise.
const OpDef& epilogue_op(const Attrs& a) {
  const OpDef* e = a.num_ints() > 5 ? fe_op(a.i(5)) : nullptr;
  if (!e || e->elementwise->arity != 2 || !(e->flags & kLinearInInput0)) {
    throw ValueError("fused_max_pool2d_grad: epilogue " +
                     std::to_string(a.num_ints() > 5 ? a.i(5) : -1) +
                     " is not an elementwise op of two inputs linear in the first");
  }
  return *e;
}
Attrs pool_part(const Attrs& a) { return Attrs{a.i(0), a.i(1), a.i(2), a.i(3), a.i(4)}; }

// out = E(out, x) over whole tensors, with E's own per-element function.
template <typename T>
void apply_epilogue(const ElementwiseFn& e, const T* a, const T* b, T* out, int64_t n) {
  if constexpr (std::is_same_v<T, double>) {
    e.f64(a, b, out, n);
  } else {
    e.f32(a, b, out, n);
  }
}

void fused_max_grad_reference(const KernelArgs& k) {
  const OpDef& e = epilogue_op(k.attrs);
  const Attrs pool = pool_part(k.attrs);
  ops::kMaxPool2DGrad.reference({k.in, k.out, pool});
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    T* dx = detail::ptr<T>(k.out[0]);
    apply_epilogue(*e.elementwise, dx, detail::ptr<T>(k.in[0]), dx, k.out[0].numel());
  });
}

void max_select_reference(const KernelArgs& k) {
  const Geom g = geom("max_pool2d_select", k.in[0].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    const T* v = detail::ptr<T>(k.in[1]);
    T* y = detail::ptr<T>(k.out[0]);
    for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      y[o] = v[argmax_ref(x, g, n, oy, ox, c)];
    });
  });
}

void avg_grad_reference(const KernelArgs& k) {
  const Geom g = geom("avg_pool2d_grad", k.out[0].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* dy = detail::ptr<T>(k.in[0]);
    T* dx = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) dx[i] = T(0);
    for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      const Window wd = window(g, oy, ox);
      const T share = dy[o] / static_cast<T>(wd.count());
      for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
        for (int64_t xx = wd.x0; xx < wd.x1; ++xx)
          dx[((n * g.h + yy) * g.w + xx) * g.c + c] += share;
    });
  });
}

// ---- fast kernels: whole channel rows at a time ------------------------------------------------

// One full 2x2 window's gradient over C channels: dy goes to the first max of the four, 0 to
// the others. Selects, not branches; the slot is kept in T and the pointers are restrict, so
// the loop vectorizes (x and dx never overlap).
template <typename T>
inline void max_grad_2x2(const T* __restrict x0, const T* __restrict x1, const T* __restrict x2,
                         const T* __restrict x3, const T* __restrict d, T* __restrict o0,
                         T* __restrict o1, T* __restrict o2, T* __restrict o3, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const T v0 = x0[c], v1 = x1[c], v2 = x2[c], v3 = x3[c], dc = d[c];
    T m = v0, s = 0;
    s = v1 > m ? T(1) : s;
    m = v1 > m ? v1 : m;
    s = v2 > m ? T(2) : s;
    m = v2 > m ? v2 : m;
    s = v3 > m ? T(3) : s;
    o0[c] = s == T(0) ? dc : T(0);
    o1[c] = s == T(1) ? dc : T(0);
    o2[c] = s == T(2) ? dc : T(0);
    o3[c] = s == T(3) ? dc : T(0);
  }
}

// max_grad_2x2 for float, C a multiple of 16, 64-byte aligned outputs, with non-temporal
// stores: for a gradient larger than the caches, whose lines would otherwise be read from
// memory only to be overwritten (the cnn's first pool gradient, 6.4 MB, in a train step at 2
// threads: 750-930 -> 570-600 us). The same first-max selection as max_grad_2x2.
#if defined(__AVX512F__)
inline void max_grad_2x2_stream(const float* x0, const float* x1, const float* x2, const float* x3,
                                const float* d, float* o0, float* o1, float* o2, float* o3,
                                int64_t C) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; c += 16) {
    const __m512 v0 = _mm512_loadu_ps(x0 + c), v1 = _mm512_loadu_ps(x1 + c),
                 v2 = _mm512_loadu_ps(x2 + c), v3 = _mm512_loadu_ps(x3 + c),
                 dc = _mm512_loadu_ps(d + c);
    // Strictly greater replaces the max so far: ties keep the first; NaN never wins.
    __mmask16 g1 = _mm512_cmp_ps_mask(v1, v0, _CMP_GT_OQ);
    __m512 m = _mm512_mask_blend_ps(g1, v0, v1);
    __mmask16 g2 = _mm512_cmp_ps_mask(v2, m, _CMP_GT_OQ);
    m = _mm512_mask_blend_ps(g2, m, v2);
    __mmask16 g3 = _mm512_cmp_ps_mask(v3, m, _CMP_GT_OQ);
    const __mmask16 s3 = g3, s2 = g2 & ~g3, s1 = g1 & ~g2 & ~g3, s0 = ~(g1 | g2 | g3);
    _mm512_stream_ps(o0 + c, _mm512_mask_blend_ps(s0, zero, dc));
    _mm512_stream_ps(o1 + c, _mm512_mask_blend_ps(s1, zero, dc));
    _mm512_stream_ps(o2 + c, _mm512_mask_blend_ps(s2, zero, dc));
    _mm512_stream_ps(o3 + c, _mm512_mask_blend_ps(s3, zero, dc));
  }
}
#endif

// best[c], at[c] = the first max of window wd in channel c (strict >: ties keep the first)
// and its slot (row-major among the window's pixels), for an image of rows `row` elements long
// and C channels per pixel. Selects, not branches, so the loops vectorize.
template <typename T>
inline void window_first_max(const T* img, int64_t row, int64_t C, const Window& wd, T* best,
                             int32_t* at) {
  int32_t slot = 0;
  for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
    for (int64_t xx = wd.x0; xx < wd.x1; ++xx, ++slot) {
      const T* xi = img + yy * row + xx * C;
      if (slot == 0) {
        for (int64_t c = 0; c < C; ++c) best[c] = xi[c], at[c] = 0;
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const bool gt = xi[c] > best[c];
          best[c] = gt ? xi[c] : best[c];
          at[c] = gt ? slot : at[c];
        }
      }
    }
}

// The fast epilogue: d = E(d, m) over a window's C channels, m the window's max (x where the
// gradient lands), with E's vectorizable form. Null `e`: d as it is.
template <typename T>
inline const T* epilogue_row(const ElementwiseFn* e, const T* d, const T* m, T* buf, int64_t C) {
  if (!e) return d;
  if constexpr (std::is_same_v<T, double>) {
    e->f64(d, m, buf, C);
  } else {
    e->fast_f32(d, m, buf, C);
  }
  return buf;
}

// Max-pool gradient for disjoint windows: output rows (n, oy) split across threads. Row oy owns
// the input rows from its window's top (0 for the first) to the next window's top (h for the
// last), zeroes that band while it is in cache, then stores dy at each channel's first max.
template <typename T>
void max_grad_disjoint(const Geom& g, const T* x, const T* dy, T* dx, const ElementwiseFn* epi) {
  const int64_t C = g.c, row = g.w * C;
  const bool tiles = pool::windows_tile(g);  // every dx element stored: no fill
  // Non-temporal stores where every dx element is stored and dx outgrows the caches.
  constexpr int64_t kStreamBytes = int64_t{2} << 20;
  [[maybe_unused]] const bool stream = std::is_same_v<T, float> && tiles && C % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(dx) % 64 == 0 &&
                      g.n * g.h * row * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
  kernels::parallel_range(g.n * g.oh, g.ow * C * g.sh * g.sw, [&](int64_t b, int64_t e) {
    std::vector<T> best(C), ebuf(epi ? C : 0);
    std::vector<int32_t> at(C);
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / g.oh, oy = r % g.oh;
      const int64_t y_begin = oy == 0 ? 0 : std::max<int64_t>(oy * g.sh - g.pt, 0);
      const int64_t y_end = oy == g.oh - 1 ? g.h : std::min((oy + 1) * g.sh - g.pt, g.h);
      T* band = dx + (n * g.h) * row;
      if (!tiles) std::fill(band + y_begin * row, band + y_end * row, T(0));
      const T* xn = x + (n * g.h) * row;
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const Window wd = window(g, oy, ox);
        const T* d = dy + (r * g.ow + ox) * C;
        if (wd.count() == 4 && wd.y1 - wd.y0 == 2) {  // a full 2x2 window: one pass
          const T *x0 = xn + wd.y0 * row + wd.x0 * C, *x1 = x0 + C, *x2 = x0 + row, *x3 = x2 + C;
          T *o0 = band + wd.y0 * row + wd.x0 * C, *o1 = o0 + C, *o2 = o0 + row, *o3 = o2 + C;
          if (epi) {
            T* m = best.data();
            for (int64_t c = 0; c < C; ++c) {  // max_grad_2x2's comparisons: the same max
              T v = x0[c];
              v = x1[c] > v ? x1[c] : v;
              v = x2[c] > v ? x2[c] : v;
              m[c] = x3[c] > v ? x3[c] : v;
            }
            d = epilogue_row(epi, d, m, ebuf.data(), C);
          }
#if defined(__AVX512F__)
          if constexpr (std::is_same_v<T, float>) {
            if (stream) {
              max_grad_2x2_stream(x0, x1, x2, x3, d, o0, o1, o2, o3, C);
              continue;
            }
          }
#endif
          max_grad_2x2(x0, x1, x2, x3, d, o0, o1, o2, o3, C);
          continue;
        }
        window_first_max(xn, row, C, wd, best.data(), at.data());
        d = epilogue_row(epi, d, best.data(), ebuf.data(), C);
        int32_t slot = 0;
        for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
          for (int64_t xx = wd.x0; xx < wd.x1; ++xx, ++slot) {
            T* o = band + yy * row + xx * C;
            for (int64_t c = 0; c < C; ++c) o[c] = at[c] == slot ? d[c] : T(0);
          }
      }
    }
#if defined(__AVX512F__)
    if (stream) _mm_sfence();  // the non-temporal stores are visible before the region ends
#endif
  });
}

// Backward: images split across threads (windows of one image overlap, images never do).
// `epi`: fused_max_pool2d_grad's E (max pooling only), else null.
template <bool kMax>
bool pool_grad_run(const KernelArgs& k, const ElementwiseFn* epi) {
  const Shape& xs = kMax ? k.in[0].shape() : k.out[0].shape();
  const Geom g = geom(kMax ? "max_pool2d_grad" : "avg_pool2d_grad", xs, k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = kMax ? detail::ptr<T>(k.in[0]) : nullptr;
    const T* dy = detail::ptr<T>(k.in[kMax ? 1 : 0]);
    T* dx = detail::ptr<T>(k.out[0]);
    if (kMax && windows_disjoint(g) && g.oh > 0 && g.ow > 0) {
      max_grad_disjoint(g, x, dy, dx, epi);
      return;
    }
    const int64_t C = g.c, img = g.h * g.w * C;
    kernels::parallel_range(g.n, g.oh * g.ow * C * g.ph * g.pw, [&](int64_t b, int64_t e) {
      std::fill(dx + b * img, dx + e * img, T(0));
      std::vector<T> best(kMax ? C : 0), ebuf(epi ? C : 0);
      std::vector<int32_t> at(kMax ? C : 0);  // window slot of each channel's first max
      for (int64_t n = b; n < e; ++n)
        for (int64_t oy = 0; oy < g.oh; ++oy)
          for (int64_t ox = 0; ox < g.ow; ++ox) {
            const Window wd = window(g, oy, ox);
            const T* d = dy + ((n * g.oh + oy) * g.ow + ox) * C;
            if constexpr (kMax) {
              // Two vectorizable passes instead of a scatter: find each channel's first max
              // slot, then add d to every window position through a slot mask.
              window_first_max(x + n * img, g.w * C, C, wd, best.data(), at.data());
              // E is linear in d: applied per window, the sums over windows come out equal.
              d = epilogue_row(epi, d, best.data(), ebuf.data(), C);
              int32_t slot = 0;
              for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
                for (int64_t xx = wd.x0; xx < wd.x1; ++xx, ++slot) {
                  T* o = dx + ((n * g.h + yy) * g.w + xx) * C;
                  for (int64_t c = 0; c < C; ++c) o[c] += at[c] == slot ? d[c] : T(0);
                }
            } else {
              const T inv = T(1) / static_cast<T>(wd.count());
              for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
                for (int64_t xx = wd.x0; xx < wd.x1; ++xx) {
                  T* o = dx + ((n * g.h + yy) * g.w + xx) * C;
                  for (int64_t c = 0; c < C; ++c) o[c] += d[c] * inv;
                }
            }
          }
    });
  });
  return true;
}

template <bool kMax>
bool pool_grad_fast(const KernelArgs& k) {
  return pool_grad_run<kMax>(k, nullptr);
}

bool fused_max_grad_fast(const KernelArgs& k) {
  return pool_grad_run<true>(k, epilogue_op(k.attrs).elementwise);
}

// ---- gradients ----------------------------------------------------------------------------------

// max_pool2d_grad(x, dy) is linear in dy with adjoint max_pool2d_select(x, .), and piecewise
// constant in x (the argmax moves in jumps): x gets no gradient, as in TensorFlow.
void max_grad_grad(const GradArgs& g) {
  if (g.needs(1)) g.grad_in[1] = run_op(ops::kMaxPool2DSelect, {g.in[0], g.grad_out[0]}, g.attrs);
}
void max_select_grad(const GradArgs& g) {
  if (g.needs(1)) g.grad_in[1] = run_op(ops::kMaxPool2DGrad, {g.in[0], g.grad_out[0]}, g.attrs);
}
// Through the two ops' own rules: E's (for t = max_pool2d_grad(x, dy), recomputed, and x),
// then max_pool2d_grad's for dy.
void fused_max_grad_grad(const GradArgs& g) {
  const OpDef& e = epilogue_op(g.attrs);
  const Attrs pool = pool_part(g.attrs);
  const Tensor t = run_op(ops::kMaxPool2DGrad, {g.in[0], g.in[1]}, pool);
  const Tensor e_in[2] = {t, g.in[0]};
  Tensor de[2];
  e.grad({e_in, g.out, g.grad_out, Attrs(), de, (g.needs(1) ? 1u : 0u) | (g.needs(0) ? 2u : 0u)});
  if (g.needs(1) && de[0].defined()) {
    Tensor dt_in[2];
    ops::kMaxPool2DGrad.grad({{g.in.data(), 2}, {&t, 1}, {&de[0], 1}, pool, dt_in, 2u});
    g.grad_in[1] = dt_in[1];
  }
  if (g.needs(0) && de[1].defined()) g.grad_in[0] = de[1];
}
// avg_pool2d_grad is the adjoint of avg_pool2d (both linear), so its gradient is avg_pool2d.
void avg_grad_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kAvgPool2D, {g.grad_out[0]}, g.attrs);
}

constexpr AttrField kFusedPoolGradFields[] = {
    {"pool_size", AttrType::kInt, 2},
    {"strides", AttrType::kInt, 2},
    {"padding", AttrType::kEnum, 1, "valid|same"},
    {"epilogue", AttrType::kInt},  // fused_elementwise opcode (ops/fused.h)
};
constexpr AttrSchema kFusedPoolGradSchema{kFusedPoolGradFields};

void fused_max_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  epilogue_op(a);
  max_grad_infer(in, pool_part(a), out);
}

}  // namespace

namespace ops {
const OpDef kMaxPool2DGrad{.name = "max_pool2d_grad",
                           .num_inputs = 2,
                           .num_outputs = 1,
                           .infer = max_grad_infer,
                           .reference = max_grad_reference,
                           .fast = pool_grad_fast<true>,
                           .grad = max_grad_grad,
                           .attrs = &kPoolSchema};
const OpDef kMaxPool2DSelect{.name = "max_pool2d_select",
                             .num_inputs = 2,
                             .num_outputs = 1,
                             .infer = max_select_infer,
                             .reference = max_select_reference,
                             .grad = max_select_grad,
                             .attrs = &kPoolSchema};
const OpDef kFusedMaxPool2DGrad{.name = "fused_max_pool2d_grad",
                                .num_inputs = 2,
                                .num_outputs = 1,
                                .infer = fused_max_grad_infer,
                                .reference = fused_max_grad_reference,
                                .fast = fused_max_grad_fast,
                                .grad = fused_max_grad_grad,
                                .attrs = &kFusedPoolGradSchema};
const OpDef kAvgPool2DGrad{.name = "avg_pool2d_grad",
                           .num_inputs = 2,
                           .num_outputs = 1,
                           .infer = avg_grad_infer,
                           .reference = avg_grad_reference,
                           .fast = pool_grad_fast<false>,
                           .grad = avg_grad_grad,
                           .attrs = &kPoolSchema,
                           .shape_only_inputs = 1u << 1};
}  // namespace ops

}  // namespace kiln
