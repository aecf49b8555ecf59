// Fake quantization for quantization-aware training (TensorFlow's FakeQuantWithMinMaxVars and
// its per-channel form): values are rounded to the integer grid int8 inference will use, but
// stay floating, so training sees the quantization error.
//
//   fake_quant             (x f32|f64, lo, hi) -> x's shape      attrs = {qmin, qmax}
//   fake_quant_grad        (dy, x, lo, hi) -> dx                 attrs = {qmin, qmax}
//   fake_quant_range_grad  (dy, x, lo, hi) -> dlo, dhi           attrs = {qmin, qmax}
//
// lo and hi have x's dtype and are scalars (per tensor) or [C] with C = x's last dim (per
// channel). Per channel c: the range [min(lo, 0), max(hi, 0)] is nudged so that 0 is on the
// grid (the zero point is an integer in [qmin, qmax]):
//   scale = (hi - lo) / (qmax - qmin), zp = clamp(round_half_even(qmin - lo / scale), qmin, qmax)
//   nlo = (qmin - zp) * scale, nhi = (qmax - zp) * scale
//   y = (clamp(round_half_even(x * (1 / scale)) + zp, qmin, qmax) - zp) * scale
// (dequantize(quantize(x)) on that grid: 0 stays exactly 0).
// With {qmin, qmax} = {0, 255} this is exactly the uint8 grid quantize_model's activation
// parameters give for the range [lo, hi]; with {-127, 127} and lo = -hi, the symmetric int8
// weight grid. A zero-width range gives 0. lo > hi or a non-finite bound is a ValueError
// raised by the kernel (bounds are data).
//
// The gradient is the straight-through estimator: dy passes to x where nlo <= x <= nhi and is
// 0 outside; lo receives the sum of dy over elements below nlo, hi over elements above nhi
// (per channel), as TensorFlow's rule. Those two helper ops carry the masks; fake_quant_grad is
// linear in dy (its own gradient is itself) and the range gradient is not differentiated again.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr int64_t kParallelElements = 1 << 16;  // below this one thread is faster

// One channel's grid: its scale, integer zero point and nudged range.
template <typename T>
struct Grid {
  T nlo = 0, nhi = 0, scale = 0, inv = 0, zp = 0, qmin = 0, qmax = 0;
};

template <typename T>
Grid<T> make_grid(T lo, T hi, int64_t qmin, int64_t qmax) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    throw ValueError("fake_quant: the range bounds must be finite, got lo " + std::to_string(lo) +
                     " and hi " + std::to_string(hi));
  }
  if (lo > hi) {
    throw ValueError("fake_quant: lo " + std::to_string(lo) + " exceeds hi " + std::to_string(hi));
  }
  lo = std::min(lo, T(0));
  hi = std::max(hi, T(0));
  Grid<T> g;
  g.scale = (hi - lo) / T(qmax - qmin);
  if (!(g.scale > T(0))) return Grid<T>{};  // zero width: everything is 0
  g.inv = T(1) / g.scale;
  g.qmin = T(qmin);
  g.qmax = T(qmax);
  g.zp = std::clamp(std::nearbyint(g.qmin - lo / g.scale), g.qmin, g.qmax);
  g.nlo = (g.qmin - g.zp) * g.scale;
  g.nhi = (g.qmax - g.zp) * g.scale;
  return g;
}

// One element on its channel's grid, as dequantize(quantize(x)) computes it (x times the
// inverse scale, rounded half to even, plus the zero point, clamped), so 0 stays exactly 0.
// The one formula both kernels run.
template <typename T>
inline T fake_quant_one(T x, const Grid<T>& g) {
  if (!(g.scale > T(0))) return T(0);
  const T q = std::min(std::max(std::nearbyint(x * g.inv) + g.zp, g.qmin), g.qmax);
  return (q - g.zp) * g.scale;
}

template <typename T>
inline bool in_grid(T x, const Grid<T>& g) {
  return x >= g.nlo && x <= g.nhi;
}

// Channels: 1 (scalar bounds) or x's last dim.
int64_t channels_of(const Tensor& lo) { return lo.shape().rank() == 0 ? 1 : lo.shape()[0]; }

template <typename T>
std::vector<Grid<T>> grids(const KernelArgs& k, int lo_at) {
  const int64_t c = channels_of(k.in[lo_at]);
  const T* lo = detail::ptr<T>(k.in[lo_at]);
  const T* hi = detail::ptr<T>(k.in[lo_at + 1]);
  std::vector<Grid<T>> g(c);
  for (int64_t j = 0; j < c; ++j) g[j] = make_grid(lo[j], hi[j], k.attrs.i(0), k.attrs.i(1));
  return g;
}

template <typename F>
void dispatch_float(DType t, F&& f) {
  if (t == DType::kFloat64) {
    f.template operator()<double>();
  } else {
    f.template operator()<float>();
  }
}

// x at in[x_at], lo/hi after it: shared by the three ops' infer.
void check_inputs(const char* op, std::span<const Meta> in, int x_at, const Attrs& a) {
  const Meta& x = in[x_at];
  require_floating(op, x.dtype);
  for (int k = 0; k < static_cast<int>(in.size()); ++k)
    require_same_dtype(op, x.dtype, in[k].dtype);
  const Shape &lo = in[x_at + 1].shape, &hi = in[x_at + 2].shape;
  const bool per_tensor = lo.rank() == 0 && hi.rank() == 0;
  const bool per_channel =
      lo.rank() == 1 && lo == hi && x.shape.rank() >= 1 && lo[0] == x.shape[x.shape.rank() - 1];
  if (!per_tensor && !per_channel) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                     ": lo and hi must both be scalars (per tensor) or both [C] with C the last "
                     "dim of x (per channel)");
  }
  if (a.num_ints() != 2 || a.i(0) >= a.i(1)) {
    throw ValueError(std::string(op) + ": needs integer bounds qmin < qmax, got " +
                     (a.num_ints() == 2 ? std::to_string(a.i(0)) + " and " + std::to_string(a.i(1))
                                        : std::to_string(a.num_ints()) + " attrs"));
  }
}

// ---- fake_quant ----------------------------------------------------------------------------

void fq_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  check_inputs("fake_quant", in, 0, a);
  out[0] = in[0];
}

// Plain loops: the grid of each element's channel is made again for every element.
void fq_reference(const KernelArgs& k) {
  dispatch_float(k.in[0].dtype(), [&]<typename T>() {
    const int64_t n = k.in[0].numel(), c = channels_of(k.in[1]);
    const T *x = detail::ptr<T>(k.in[0]), *lo = detail::ptr<T>(k.in[1]),
            *hi = detail::ptr<T>(k.in[2]);
    T* y = detail::ptr<T>(k.out[0]);
    if (n == 0) (void)grids<T>(k, 1);  // the bounds are checked even without elements
    for (int64_t i = 0; i < n; ++i) {
      y[i] = fake_quant_one(x[i], make_grid(lo[i % c], hi[i % c], k.attrs.i(0), k.attrs.i(1)));
    }
  });
}

// The grids once, then rows of C elements in parallel when the tensor is large.
bool fq_fast(const KernelArgs& k) {
  dispatch_float(k.in[0].dtype(), [&]<typename T>() {
    const std::vector<Grid<T>> g = grids<T>(k, 1);
    const int64_t n = k.in[0].numel(), c = static_cast<int64_t>(g.size());
    const T* x = detail::ptr<T>(k.in[0]);
    T* y = detail::ptr<T>(k.out[0]);
    const Grid<T>* gp = g.data();
    const int64_t rows = n / c;
#pragma omp parallel for if (n >= kParallelElements) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < c; ++j) y[r * c + j] = fake_quant_one(x[r * c + j], gp[j]);
    }
  });
  return true;
}

// ---- fake_quant_grad: dx = dy where x is on its grid's range, else 0 --------------------------

void fq_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  check_inputs("fake_quant_grad", in, 1, a);
  if (in[0].shape != in[1].shape) {
    throw ShapeError("fake_quant_grad: shapes " + shapes_str(in) + ": dy must have x's shape");
  }
  out[0] = in[1];
}

// The reference makes each element's grid again; the fast kernel makes the grids once and runs
// rows in parallel when the tensor is large.
void fq_grad_reference(const KernelArgs& k) {
  dispatch_float(k.in[1].dtype(), [&]<typename T>() {
    const int64_t n = k.in[1].numel(), c = channels_of(k.in[2]);
    const T *dy = detail::ptr<T>(k.in[0]), *x = detail::ptr<T>(k.in[1]),
            *lo = detail::ptr<T>(k.in[2]), *hi = detail::ptr<T>(k.in[3]);
    T* dx = detail::ptr<T>(k.out[0]);
    if (n == 0) (void)grids<T>(k, 2);
    for (int64_t i = 0; i < n; ++i) {
      const Grid<T> g = make_grid(lo[i % c], hi[i % c], k.attrs.i(0), k.attrs.i(1));
      dx[i] = in_grid(x[i], g) ? dy[i] : T(0);
    }
  });
}

bool fq_grad_fast(const KernelArgs& k) {
  dispatch_float(k.in[1].dtype(), [&]<typename T>() {
    const std::vector<Grid<T>> g = grids<T>(k, 2);
    const int64_t n = k.in[1].numel(), c = static_cast<int64_t>(g.size()), rows = n / c;
    const T *dy = detail::ptr<T>(k.in[0]), *x = detail::ptr<T>(k.in[1]);
    T* dx = detail::ptr<T>(k.out[0]);
    const Grid<T>* gp = g.data();
#pragma omp parallel for if (n >= kParallelElements) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < c; ++j) {
        const int64_t i = r * c + j;
        dx[i] = in_grid(x[i], gp[j]) ? dy[i] : T(0);
      }
    }
  });
  return true;
}

// ---- fake_quant_range_grad: per channel, sums of dy below nlo and above nhi ------------------

void fq_range_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  check_inputs("fake_quant_range_grad", in, 1, a);
  if (in[0].shape != in[1].shape) {
    throw ShapeError("fake_quant_range_grad: shapes " + shapes_str(in) +
                     ": dy must have x's shape");
  }
  out[0] = in[2];
  out[1] = in[3];
}

// Sums in double, in element order, in both kernels (so they agree bit for bit); the reference
// makes each element's grid again, the fast kernel makes them once.
template <typename T, bool kFast>
void range_grad(const KernelArgs& k) {
  const int64_t n = k.in[1].numel(), c = channels_of(k.in[2]);
  const std::vector<Grid<T>> g = grids<T>(k, 2);
  const T *dy = detail::ptr<T>(k.in[0]), *x = detail::ptr<T>(k.in[1]),
          *lo = detail::ptr<T>(k.in[2]), *hi = detail::ptr<T>(k.in[3]);
  std::vector<double> below(c, 0.0), above(c, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i % c;
    const Grid<T> gi = kFast ? g[j] : make_grid(lo[j], hi[j], k.attrs.i(0), k.attrs.i(1));
    if (x[i] < gi.nlo) below[j] += dy[i];
    if (x[i] > gi.nhi) above[j] += dy[i];
  }
  T *dlo = detail::ptr<T>(k.out[0]), *dhi = detail::ptr<T>(k.out[1]);
  for (int64_t j = 0; j < c; ++j) {
    dlo[j] = static_cast<T>(below[j]);
    dhi[j] = static_cast<T>(above[j]);
  }
}

void fq_range_grad_reference(const KernelArgs& k) {
  dispatch_float(k.in[1].dtype(), [&]<typename T>() { range_grad<T, false>(k); });
}

bool fq_range_grad_fast(const KernelArgs& k) {
  dispatch_float(k.in[1].dtype(), [&]<typename T>() { range_grad<T, true>(k); });
  return true;
}

Attrs bounds_attrs(const Attrs& a) { return Attrs{a.i(0), a.i(1)}; }

void fq_grad_rule(const GradArgs& g) {
  const Attrs a = bounds_attrs(g.attrs);
  if (g.needs(0)) {
    g.grad_in[0] = run_op(ops::kFakeQuantGrad, {g.grad_out[0], g.in[0], g.in[1], g.in[2]}, a);
  }
  if (g.needs(1) || g.needs(2)) {
    const Tensor in[4] = {g.grad_out[0], g.in[0], g.in[1], g.in[2]};
    Tensor out[2];
    run_op(ops::kFakeQuantRangeGrad, in, a, out);
    if (g.needs(1)) g.grad_in[1] = out[0];
    if (g.needs(2)) g.grad_in[2] = out[1];
  }
}

// fake_quant_grad is linear in dy with the same mask; piecewise constant in x, lo and hi.
void fq_grad_grad_rule(const GradArgs& g) {
  if (g.needs(0)) {
    g.grad_in[0] = run_op(ops::kFakeQuantGrad, {g.grad_out[0], g.in[1], g.in[2], g.in[3]},
                          bounds_attrs(g.attrs));
  }
}

constexpr AttrField kFakeQuantFields[] = {{"qmin", AttrType::kInt}, {"qmax", AttrType::kInt}};
constexpr AttrSchema kFakeQuantSchema{kFakeQuantFields};

}  // namespace

namespace ops {
const OpDef kFakeQuant{.name = "fake_quant",
                       .num_inputs = 3,
                       .num_outputs = 1,
                       .infer = fq_infer,
                       .reference = fq_reference,
                       .fast = fq_fast,
                       .grad = fq_grad_rule,
                       .attrs = &kFakeQuantSchema};
const OpDef kFakeQuantGrad{.name = "fake_quant_grad",
                           .num_inputs = 4,
                           .num_outputs = 1,
                           .infer = fq_grad_infer,
                           .reference = fq_grad_reference,
                           .fast = fq_grad_fast,
                           .grad = fq_grad_grad_rule,
                           .attrs = &kFakeQuantSchema};
const OpDef kFakeQuantRangeGrad{.name = "fake_quant_range_grad",
                                .num_inputs = 4,
                                .num_outputs = 2,
                                .infer = fq_range_grad_infer,
                                .reference = fq_range_grad_reference,
                                .fast = fq_range_grad_fast,
                                .flags = kNotDifferentiable,
                                .attrs = &kFakeQuantSchema};
}  // namespace ops

Tensor fake_quant(const Tensor& x, const Tensor& lo, const Tensor& hi, int64_t qmin, int64_t qmax) {
  return run_op(ops::kFakeQuant, {x, lo, hi}, Attrs{qmin, qmax});
}

}  // namespace kiln
