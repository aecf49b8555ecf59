// Shape ops: reshape, transpose, concat, slice, gather, one_hot, pad, and the internal
// gradient ops slice_grad (scatter into zeros) and gather_grad (scatter-add).
//
// Most of them are a strided copy (kernels/strided_copy.h): the reference kernels copy element
// by element, the fast ones by rows or tiles. All dtypes, since nothing here computes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kernels/strided_copy.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr int kR = Shape::kMaxRank;

using kernels::CopyPlan;

void run_copy(const CopyPlan& p, const Tensor& src, Tensor& dst, bool fast) {
  detail::visit_dtype(src.dtype(), [&]<typename T>() {
    if (fast) {
      kernels::copy_fast<T>(p, detail::ptr<T>(src), detail::ptr<T>(dst));
    } else {
      kernels::copy_reference<T>(p, detail::ptr<T>(src), detail::ptr<T>(dst));
    }
  });
}

// Fills t with `value` converted to its dtype.
void fill(Tensor& t, double value) {
  detail::visit_dtype(t.dtype(), [&]<typename T>() {
    T* p = detail::ptr<T>(t);
    const T v = std::is_same_v<T, bool> ? T(value != 0) : static_cast<T>(value);
    std::fill(p, p + t.numel(), v);
  });
}

Attrs dims_attrs(std::span<const int64_t> dims) {
  Attrs a;
  for (int64_t d : dims) a.add_int(d);
  return a;
}

std::string ints_str(std::span<const int64_t> v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// ---- reshape: attrs = the target dims (one may be -1) --------------------------------------
// reshape_like (x, like): to like's shape (its data is never read), no attrs; the gradient of
// both, so traced graphs do not bake the input's size.

constexpr AttrField kReshapeFields[] = {{"shape", AttrType::kInt, kRest}};
constexpr AttrSchema kReshapeAttrs{kReshapeFields};

void reshape_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  Shape want;
  for (int64_t d : a.ints()) {
    if (d < -1) throw ShapeError("reshape: negative dim " + std::to_string(d) + " in target");
    want.push_back(d);
  }
  out[0] = {resolve_reshape(in[0].shape, want, "reshape"), in[0].dtype};
}
void reshape_reference(const KernelArgs& k) {
  if (k.in[0].nbytes()) std::memcpy(k.out[0].raw_data(), k.in[0].raw_data(), k.in[0].nbytes());
}
void reshape_like_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  if (in[0].shape.numel() != in[1].shape.numel()) {
    throw ShapeError("reshape_like: cannot reshape " + to_string(in[0].shape) + " to " +
                     to_string(in[1].shape) + " (different sizes)");
  }
  out[0] = {in[1].shape, in[0].dtype};
}
void reshape_grad(const GradArgs& g) { g.grad_in[0] = ops::reshape_like(g.grad_out[0], g.in[0]); }
// Eager reshape shares the input's storage (the reference kernel copies: graphs may need that).
Tensor reshape_view(const Tensor& x, const Attrs&, const Meta& out) {
  const detail::TensorImpl* p = x.impl();
  return Tensor::adopt(detail::impl_view(p->storage, p->offset, out.shape, p->dtype));
}

// ---- rows (Tensor::rows): attrs = {begin, end}; a view of rows [begin, end) of dim 0 -------

constexpr AttrField kRowsFields[] = {{"begin", AttrType::kInt}, {"end", AttrType::kInt}};
constexpr AttrSchema kRowsAttrs{kRowsFields};

void rows_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Shape& s = in[0].shape;
  const int64_t b = a.i(0), e = a.i(1);
  if (s.rank() == 0 || b < 0 || e < b || e > s[0]) {
    throw ValueError("rows: [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") is out of range for shape " + to_string(s));
  }
  out[0] = in[0];
  out[0].shape[0] = e - b;
}
int64_t row_bytes(const Tensor& x) {
  return (x.dim(0) ? x.numel() / x.dim(0) : 0) * static_cast<int64_t>(size_of(x.dtype()));
}
void rows_reference(const KernelArgs& k) {
  const Tensor& x = k.in[0];
  if (k.out[0].nbytes()) {
    std::memcpy(k.out[0].raw_data(),
                static_cast<const char*>(x.raw_data()) + k.attrs.i(0) * row_bytes(x),
                k.out[0].nbytes());
  }
}
Tensor rows_view(const Tensor& x, const Attrs& a, const Meta& out) {
  const detail::TensorImpl* p = x.impl();
  return Tensor::adopt(
      detail::impl_view(p->storage, p->offset + a.i(0) * row_bytes(x), out.shape, p->dtype));
}
void rows_grad(const GradArgs& g) {
  g.grad_in[0] =
      run_op(ops::kSliceGrad, {g.grad_out[0], g.in[0]}, Attrs{g.attrs.i(0), g.attrs.i(1), 1});
}

// ---- transpose: attrs = perm (empty: reverse the dims) -------------------------------------

constexpr AttrField kTransposeFields[] = {{"perm", AttrType::kInt, kRest}};
constexpr AttrSchema kTransposeAttrs{kTransposeFields};

// The permutation for x's rank; throws ValueError unless it is one.
std::vector<int> get_perm(const Shape& s, const Attrs& a) {
  const int r = s.rank();
  std::vector<int> perm(r);
  if (a.num_ints() == 0) {
    for (int i = 0; i < r; ++i) perm[i] = r - 1 - i;
    return perm;
  }
  bool ok = a.num_ints() == r;
  uint32_t seen = 0;
  for (int i = 0; ok && i < r; ++i) {
    const int64_t p = a.i(i) < 0 ? a.i(i) + r : a.i(i);
    ok = p >= 0 && p < r && !(seen & (1u << p));
    if (ok) seen |= 1u << p;
    perm[i] = static_cast<int>(p);
  }
  if (!ok) {
    throw ValueError("transpose: perm " + ints_str(a.ints()) + " is not a permutation of the " +
                     std::to_string(r) + " dims of shape " + to_string(s));
  }
  return perm;
}

void transpose_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  std::vector<int> perm = get_perm(in[0].shape, a);
  Shape os = in[0].shape;
  for (int i = 0; i < os.rank(); ++i) os[i] = in[0].shape[perm[i]];
  out[0] = {os, in[0].dtype};
}

CopyPlan transpose_plan(const Shape& xs, const std::vector<int>& perm) {
  CopyPlan p;
  int64_t st[kR], ost[kR];
  contiguous_strides(xs, st);
  for (int i = 0; i < xs.rank(); ++i) {
    p.shape.push_back(xs[perm[i]]);
    p.src_st[i] = st[perm[i]];
  }
  contiguous_strides(p.shape, ost);
  std::copy(ost, ost + kR, p.dst_st);
  return p;
}
void transpose_reference(const KernelArgs& k) {
  run_copy(transpose_plan(k.in[0].shape(), get_perm(k.in[0].shape(), k.attrs)), k.in[0], k.out[0],
           false);
}

bool transpose_fast(const KernelArgs& k) {
  const Shape& xs = k.in[0].shape();
  run_copy(transpose_plan(xs, get_perm(xs, k.attrs)), k.in[0], k.out[0], true);
  return true;
}

void transpose_grad(const GradArgs& g) {
  std::vector<int> perm = get_perm(g.in[0].shape(), g.attrs), inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int>(i);
  g.grad_in[0] = transpose(g.grad_out[0], inv);
}

// ---- slice: attrs = {begin, end, step} per leading dim -------------------------------------

constexpr AttrField kSliceFields[] = {{"slices", AttrType::kInt, kRest, nullptr, 3}};
constexpr AttrSchema kSliceAttrs{kSliceFields};

// Start and step per dim of `in`, and the sliced shape. Python semantics: negative begin/end
// count from the end, both are clamped to [0, dim].
struct SliceSpec {
  Shape out;
  int64_t start[kR] = {}, step[kR] = {};
};
SliceSpec slice_spec(const Shape& in, std::span<const int64_t> t, const char* op) {
  const int n = static_cast<int>(t.size() / 3);
  if (t.size() % 3 != 0) {
    throw ValueError(std::string(op) + ": " + std::to_string(t.size()) +
                     " attrs are not (begin, end, step) triples");
  }
  if (n > in.rank()) {
    throw ValueError(std::string(op) + ": " + std::to_string(n) + " begins given for shape " +
                     to_string(in) + " of rank " + std::to_string(in.rank()));
  }
  SliceSpec s;
  s.out = in;
  for (int d = 0; d < in.rank(); ++d) {
    s.step[d] = 1;
    if (d >= n) continue;
    const int64_t dim = in[d], step = t[3 * d + 2];
    if (step < 1) {
      throw ValueError(std::string(op) + ": step " + std::to_string(step) + " for dim " +
                       std::to_string(d) + " must be >= 1");
    }
    auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
    const int64_t b = clamp(t[3 * d]), e = clamp(t[3 * d + 1]);
    s.start[d] = b;
    s.step[d] = step;
    s.out[d] = e > b ? (e - b + step - 1) / step : 0;
  }
  return s;
}

// The plan reading the slice of `in` (or writing it, when `scatter`) with contiguous other side.
CopyPlan slice_plan(const Shape& in, const SliceSpec& s, bool scatter) {
  CopyPlan p;
  p.shape = s.out;
  int64_t st[kR], cst[kR];
  contiguous_strides(in, st);
  contiguous_strides(s.out, cst);
  int64_t off = 0;
  for (int d = 0; d < in.rank(); ++d) {
    off += s.start[d] * st[d];
    (scatter ? p.dst_st : p.src_st)[d] = st[d] * s.step[d];
    (scatter ? p.src_st : p.dst_st)[d] = cst[d];
  }
  (scatter ? p.dst_off : p.src_off) = off;
  return p;
}

void slice_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  out[0] = {slice_spec(in[0].shape, a.ints(), "slice").out, in[0].dtype};
}
template <bool kFast>
bool slice_kernel(const KernelArgs& k) {
  const Shape& xs = k.in[0].shape();
  run_copy(slice_plan(xs, slice_spec(xs, k.attrs.ints(), "slice"), false), k.in[0], k.out[0],
           kFast);
  return true;
}
void slice_reference(const KernelArgs& k) { slice_kernel<false>(k); }

// slice_grad(g, like): zeros of like's shape (the sliced input's; its data is never read)
// with g written at the slice. attrs = slice's.
void slice_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Shape& xs = in[1].shape;
  SliceSpec s = slice_spec(xs, a.ints(), "slice_grad");
  if (s.out != in[0].shape) {
    throw ShapeError("slice_grad: gradient " + to_string(in[0].shape) +
                     " does not match the slice " + to_string(s.out) + " of " + to_string(xs));
  }
  out[0] = {xs, in[0].dtype};
}
template <bool kFast>
bool slice_grad_kernel(const KernelArgs& k) {
  const Shape& xs = k.out[0].shape();
  fill(k.out[0], 0);
  run_copy(slice_plan(xs, slice_spec(xs, k.attrs.ints(), "slice_grad"), true), k.in[0], k.out[0],
           kFast);
  return true;
}
void slice_grad_reference(const KernelArgs& k) { slice_grad_kernel<false>(k); }

void slice_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kSliceGrad, {g.grad_out[0], g.in[0]}, g.attrs);
}
void slice_grad_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kSlice, {g.grad_out[0]}, g.attrs);
}

// ---- concat: attrs = {axis}; any number of inputs (the public function groups > 16) -------

constexpr AttrField kAxisFields[] = {{"axis", AttrType::kInt}};
constexpr AttrSchema kAxisAttrs{kAxisFields};

void concat_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Meta& x0 = in[0];
  if (x0.shape.rank() == 0) {
    throw ShapeError("concat: cannot concatenate rank-0 tensors (shapes " + shapes_str(in) + ")");
  }
  const int ax = normalize_axis(a.i(0), x0.shape.rank(), "concat");
  Shape os = x0.shape;
  os[ax] = 0;
  for (const Meta& m : in) {
    if (m.dtype != x0.dtype) require_same_dtype("concat", x0.dtype, m.dtype);
    bool ok = m.shape.rank() == x0.shape.rank();
    for (int d = 0; ok && d < os.rank(); ++d) ok = d == ax || m.shape[d] == x0.shape[d];
    if (!ok) {
      throw ShapeError("concat: shapes " + shapes_str(in) + " differ outside axis " +
                       std::to_string(a.i(0)));
    }
    os[ax] += m.shape[ax];
  }
  out[0] = {os, x0.dtype};
}
template <bool kFast>
bool concat_kernel(const KernelArgs& k) {
  const Shape& os = k.out[0].shape();
  const int ax = normalize_axis(k.attrs.i(0), os.rank(), "concat");
  int64_t ost[kR];
  contiguous_strides(os, ost);
  int64_t at = 0;  // where along the axis the next input goes
  for (const Tensor& x : k.in) {
    CopyPlan p;
    p.shape = x.shape();
    contiguous_strides(x.shape(), p.src_st);
    std::copy(ost, ost + kR, p.dst_st);
    p.dst_off = at * ost[ax];
    run_copy(p, x, k.out[0], kFast);
    at += x.shape()[ax];
  }
  return true;
}
void concat_reference(const KernelArgs& k) { concat_kernel<false>(k); }
void concat_grad(const GradArgs& g) {
  const int ax = normalize_axis(g.attrs.i(0), g.in[0].rank(), "concat");
  std::vector<int64_t> begins(ax + 1, 0), ends(ax + 1, std::numeric_limits<int64_t>::max());
  for (size_t i = 0; i < g.in.size(); ++i) {
    ends[ax] = begins[ax] + g.in[i].shape()[ax];
    if (is_floating(g.in[i].dtype())) g.grad_in[i] = slice(g.grad_out[0], begins, ends);
    begins[ax] = ends[ax];
  }
}

// ---- gather: attrs = {axis}; gather_grad (g, indices, like): attrs = {axis} ----------------
// gather_grad's output has like's shape (x's; its data is never read).

void require_indices(const char* op, DType t) {
  if (t != DType::kInt32 && t != DType::kInt64) {
    throw DTypeError(std::string(op) + ": indices must be int32 or int64, got " +
                     std::string(dtype_name(t)));
  }
}
Shape gather_shape(const Shape& xs, const Shape& is, int ax, const char* op) {
  if (xs.rank() - 1 + is.rank() > kR) {
    throw ShapeError(std::string(op) + ": x " + to_string(xs) + " and indices " + to_string(is) +
                     " give a result of rank above " + std::to_string(kR));
  }
  Shape os;
  for (int d = 0; d < ax; ++d) os.push_back(xs[d]);
  for (int64_t d : is) os.push_back(d);
  for (int d = ax + 1; d < xs.rank(); ++d) os.push_back(xs[d]);
  return os;
}
void gather_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_indices("gather", in[1].dtype);
  const int ax = normalize_axis(a.i(0), in[0].shape.rank(), "gather");
  out[0] = {gather_shape(in[0].shape, in[1].shape, ax, "gather"), in[0].dtype};
}

// The indices as int64, each checked against the axis size n (before any parallel work).
std::vector<int64_t> load_indices(const Tensor& idx, const Shape& xs, int ax, const char* op) {
  std::vector<int64_t> v = idx.to_vector<int64_t>();
  for (size_t j = 0; j < v.size(); ++j) {
    if (v[j] < 0 || v[j] >= xs[ax]) {
      throw ValueError(std::string(op) + ": index " + std::to_string(v[j]) + " (at position " +
                       std::to_string(j) + " of indices) is out of range for axis " +
                       std::to_string(ax) + " of size " + std::to_string(xs[ax]) + " in shape " +
                       to_string(xs));
    }
  }
  return v;
}

// x viewed as [outer, n, inner] around `ax`.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Shape& s, int ax) {
  Around g;
  for (int d = 0; d < s.rank(); ++d) (d < ax ? g.outer : d == ax ? g.n : g.inner) *= s[d];
  return g;
}

template <bool kFast>
bool gather_kernel(const KernelArgs& k) {
  const Shape& xs = k.in[0].shape();
  const int ax = normalize_axis(k.attrs.i(0), xs.rank(), "gather");
  std::vector<int64_t> idx = load_indices(k.in[1], xs, ax, "gather");
  const Around g = around(xs, ax);
  const int64_t m = static_cast<int64_t>(idx.size());
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    auto rows = [&](int64_t b, int64_t e) {  // row t = (outer o, index j)
      for (int64_t t = b; t < e; ++t) {
        const T* src = x + ((t / m) * g.n + idx[t % m]) * g.inner;
        if (kFast) {
          std::memcpy(o + t * g.inner, src, g.inner * sizeof(T));
        } else {
          for (int64_t i = 0; i < g.inner; ++i) o[t * g.inner + i] = src[i];
        }
      }
    };
    kFast ? kernels::parallel_range(g.outer * m, g.inner, rows) : rows(0, g.outer * m);
  });
  return true;
}
void gather_reference(const KernelArgs& k) { gather_kernel<false>(k); }

void gather_grad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_floating("gather_grad", in[0].dtype);
  require_indices("gather_grad", in[1].dtype);
  const Shape& xs = in[2].shape;
  const int ax = normalize_axis(a.i(0), xs.rank(), "gather_grad");
  Shape want = gather_shape(xs, in[1].shape, ax, "gather_grad");
  if (want != in[0].shape) {
    throw ShapeError("gather_grad: gradient " + to_string(in[0].shape) + " does not match " +
                     to_string(want) + " for x " + to_string(xs) + " and indices " +
                     to_string(in[1].shape));
  }
  out[0] = {xs, in[0].dtype};
}
// Scatter-add; repeated indices accumulate. Fast: tasks own disjoint output columns.
template <bool kFast>
bool gather_grad_kernel(const KernelArgs& k) {
  const Shape& xs = k.out[0].shape();
  const int ax = normalize_axis(k.attrs.i(0), xs.rank(), "gather_grad");
  std::vector<int64_t> idx = load_indices(k.in[1], xs, ax, "gather_grad");
  const Around g = around(xs, ax);
  const int64_t m = static_cast<int64_t>(idx.size());
  fill(k.out[0], 0);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* gp = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    constexpr int64_t kCols = 256;
    const int64_t col_tasks = (g.inner + kCols - 1) / kCols;
    auto tasks = [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t oi = t / col_tasks, c0 = t % col_tasks * kCols;
        const int64_t c1 = std::min(g.inner, c0 + kCols);
        for (int64_t j = 0; j < m; ++j) {
          const T* src = gp + (oi * m + j) * g.inner;
          T* dst = o + (oi * g.n + idx[j]) * g.inner;
          for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
      }
    };
    const int64_t n_tasks = g.outer * col_tasks;
    kFast ? kernels::parallel_range(n_tasks, m * kCols, tasks) : tasks(0, n_tasks);
  });
  return true;
}
void gather_grad_reference(const KernelArgs& k) { gather_grad_kernel<false>(k); }

void gather_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kGatherGrad, {g.grad_out[0], g.in[1], g.in[0]}, g.attrs);
}
void gather_grad_grad(const GradArgs& g) {
  g.grad_in[0] = gather(g.grad_out[0], g.in[1], static_cast<int>(g.attrs.i(0)));
}

// ---- one_hot: attrs = {depth, dtype} -------------------------------------------------------

constexpr AttrField kOneHotFields[] = {{"depth", AttrType::kInt}, {"dtype", AttrType::kDType}};
constexpr AttrSchema kOneHotAttrs{kOneHotFields};

void one_hot_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_indices("one_hot", in[0].dtype);
  if (a.i(0) < 0) throw ValueError("one_hot: depth " + std::to_string(a.i(0)) + " is negative");
  if (a.i(1) < 0 || a.i(1) > static_cast<int64_t>(DType::kBool)) {
    throw ValueError("one_hot: unknown dtype code " + std::to_string(a.i(1)));
  }
  if (in[0].shape.rank() >= kR) {
    throw ShapeError("one_hot: indices " + to_string(in[0].shape) +
                     " give a result of rank above " + std::to_string(kR));
  }
  Shape os = in[0].shape;
  os.push_back(a.i(0));
  out[0] = {os, static_cast<DType>(a.i(1))};
}
void one_hot_reference(const KernelArgs& k) {
  const int64_t depth = k.attrs.i(0);
  std::vector<int64_t> idx = k.in[0].to_vector<int64_t>();
  fill(k.out[0], 0);
  detail::visit_dtype(k.out[0].dtype(), [&]<typename T>() {
    T* o = detail::ptr<T>(k.out[0]);
    for (size_t j = 0; j < idx.size(); ++j) {
      if (idx[j] >= 0 && idx[j] < depth) o[j * depth + idx[j]] = T(1);
    }
  });
}

// ---- pad: attrs = {before, after} per leading dim, floats = {value} ------------------------

constexpr AttrField kPadFields[] = {{"pads", AttrType::kInt, kRest, nullptr, 2},
                                    {"value", AttrType::kFloat}};
constexpr AttrSchema kPadAttrs{kPadFields};

void pad_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Shape& xs = in[0].shape;
  const int n = a.num_ints() / 2;
  if (n > xs.rank()) {
    throw ValueError("pad: " + std::to_string(n) + " pairs given for shape " + to_string(xs) +
                     " of rank " + std::to_string(xs.rank()));
  }
  Shape os = xs;
  for (int d = 0; d < n; ++d) {
    if (a.i(2 * d) < 0 || a.i(2 * d + 1) < 0) {
      throw ValueError("pad: negative padding {" + std::to_string(a.i(2 * d)) + ", " +
                       std::to_string(a.i(2 * d + 1)) + "} for dim " + std::to_string(d));
    }
    os[d] += a.i(2 * d) + a.i(2 * d + 1);
  }
  const double v = a.f(0);
  detail::visit_dtype(in[0].dtype, [&]<typename T>() {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // max() + 1 as a double is exact (a power of two), so the bound is exact too.
      const double hi = static_cast<double>(std::numeric_limits<T>::max()) + 1;
      if (!(v >= static_cast<double>(std::numeric_limits<T>::lowest()) && v < hi) ||
          v != std::trunc(v)) {
        throw ValueError("pad: value " + std::to_string(v) + " is not representable in " +
                         std::string(dtype_name(in[0].dtype)));
      }
    }
  });
  out[0] = {os, in[0].dtype};
}
template <bool kFast>
bool pad_kernel(const KernelArgs& k) {
  const Tensor& x = k.in[0];
  fill(k.out[0], k.attrs.f(0));
  CopyPlan p;
  p.shape = x.shape();
  contiguous_strides(x.shape(), p.src_st);
  contiguous_strides(k.out[0].shape(), p.dst_st);
  for (int d = 0; d < k.attrs.num_ints() / 2; ++d) p.dst_off += k.attrs.i(2 * d) * p.dst_st[d];
  run_copy(p, x, k.out[0], kFast);
  return true;
}
void pad_reference(const KernelArgs& k) { pad_kernel<false>(k); }
// Ends count from the end (-after; "to the end" when after is 0), so no size is baked in.
void pad_grad(const GradArgs& g) {
  std::vector<int64_t> b(g.attrs.num_ints() / 2), e(b.size());
  for (size_t d = 0; d < b.size(); ++d) {
    b[d] = g.attrs.i(2 * d);
    const int64_t after = g.attrs.i(2 * d + 1);
    e[d] = after ? -after : std::numeric_limits<int64_t>::max();
  }
  g.grad_in[0] = slice(g.grad_out[0], b, e);
}

}  // namespace

namespace ops {
const OpDef kReshape{.name = "reshape",
                     .num_inputs = 1,
                     .num_outputs = 1,
                     .infer = reshape_infer,
                     .reference = reshape_reference,
                     .grad = reshape_grad,
                     .view = reshape_view,
                     .attrs = &kReshapeAttrs};
const OpDef kReshapeLike{.name = "reshape_like",
                         .num_inputs = 2,
                         .num_outputs = 1,
                         .infer = reshape_like_infer,
                         .reference = reshape_reference,
                         .grad = reshape_grad,
                         .view = reshape_view,
                         .attrs = &kNoAttrs,
                         .shape_only_inputs = 1u << 1};
const OpDef kRows{.name = "rows",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = rows_infer,
                  .reference = rows_reference,
                  .grad = rows_grad,
                  .view = rows_view,
                  .attrs = &kRowsAttrs};
const OpDef kTranspose{.name = "transpose",
                       .num_inputs = 1,
                       .num_outputs = 1,
                       .infer = transpose_infer,
                       .reference = transpose_reference,
                       .fast = transpose_fast,
                       .grad = transpose_grad,
                       .attrs = &kTransposeAttrs};
const OpDef kConcat{.name = "concat",
                    .num_inputs = -1,
                    .num_outputs = 1,
                    .infer = concat_infer,
                    .reference = concat_reference,
                    .fast = concat_kernel<true>,
                    .grad = concat_grad,
                    .attrs = &kAxisAttrs};
const OpDef kSlice{.name = "slice",
                   .num_inputs = 1,
                   .num_outputs = 1,
                   .infer = slice_infer,
                   .reference = slice_reference,
                   .fast = slice_kernel<true>,
                   .grad = slice_grad,
                   .attrs = &kSliceAttrs};
const OpDef kSliceGrad{.name = "slice_grad",
                       .num_inputs = 2,
                       .num_outputs = 1,
                       .infer = slice_grad_infer,
                       .reference = slice_grad_reference,
                       .fast = slice_grad_kernel<true>,
                       .grad = slice_grad_grad,
                       .attrs = &kSliceAttrs,
                       .shape_only_inputs = 1u << 1};
const OpDef kGather{.name = "gather",
                    .num_inputs = 2,
                    .num_outputs = 1,
                    .infer = gather_infer,
                    .reference = gather_reference,
                    .fast = gather_kernel<true>,
                    .grad = gather_grad,
                    .attrs = &kAxisAttrs};
const OpDef kGatherGrad{.name = "gather_grad",
                        .num_inputs = 3,
                        .num_outputs = 1,
                        .infer = gather_grad_infer,
                        .reference = gather_grad_reference,
                        .fast = gather_grad_kernel<true>,
                        .grad = gather_grad_grad,
                        .attrs = &kAxisAttrs,
                        .shape_only_inputs = 1u << 2};
const OpDef kOneHot{.name = "one_hot",
                    .num_inputs = 1,
                    .num_outputs = 1,
                    .infer = one_hot_infer,
                    .reference = one_hot_reference,
                    .attrs = &kOneHotAttrs};
const OpDef kPad{.name = "pad",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = pad_infer,
                 .reference = pad_reference,
                 .fast = pad_kernel<true>,
                 .grad = pad_grad,
                 .attrs = &kPadAttrs};

Tensor reshape_like(const Tensor& x, const Tensor& like) {
  if (x.defined() && like.defined() && x.shape() == like.shape()) return x;
  return run_op(kReshapeLike, {x, like});
}
}  // namespace ops

Tensor reshape(const Tensor& x, const Shape& shape) {
  return run_op(ops::kReshape, {x}, dims_attrs(shape.dims()));
}
// Tensor's view methods are ops, so tapes and tracers see them (defined here, not in core).
Tensor Tensor::reshape(const Shape& shape) const {
  if (!impl_) throw StateError("reshape: the tensor is undefined");
  return kiln::reshape(*this, shape);
}
Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (!impl_) throw StateError("rows: the tensor is undefined");
  return run_op(ops::kRows, {*this}, Attrs{begin, end});
}
Tensor transpose(const Tensor& x, std::vector<int> perm) {
  Attrs a;
  if (perm.size() > kR) {
    throw ValueError("transpose: perm of " + std::to_string(perm.size()) + " dims; at most " +
                     std::to_string(kR) + " exist");
  }
  for (int p : perm) a.add_int(p);
  return run_op(ops::kTranspose, {x}, a);
}
Tensor concat(const std::vector<Tensor>& xs, int axis) {
  constexpr size_t kMaxInputs = 16;  // the dispatcher's limit; larger lists go in groups
  if (xs.empty()) throw ValueError("concat: no tensors given");
  if (xs.size() <= kMaxInputs) {
    Tensor out;
    run_op(ops::kConcat, xs, Attrs{axis}, {&out, 1});
    return out;
  }
  std::vector<Tensor> parts;
  for (size_t i = 0; i < xs.size(); i += kMaxInputs) {
    const size_t e = std::min(xs.size(), i + kMaxInputs);
    parts.push_back(concat(std::vector<Tensor>(xs.begin() + i, xs.begin() + e), axis));
  }
  return concat(parts, axis);
}
Tensor slice(const Tensor& x, std::vector<int64_t> begins, std::vector<int64_t> ends,
             std::vector<int64_t> steps) {
  if (ends.size() != begins.size() || (!steps.empty() && steps.size() != begins.size())) {
    throw ValueError("slice: " + std::to_string(begins.size()) + " begins, " +
                     std::to_string(ends.size()) + " ends and " + std::to_string(steps.size()) +
                     " steps given; they must be equally many (steps may be empty)");
  }
  if (begins.size() > kR) {
    throw ValueError("slice: " + std::to_string(begins.size()) + " begins given; at most " +
                     std::to_string(kR) + " dims exist");
  }
  Attrs a;
  for (size_t d = 0; d < begins.size(); ++d) {
    a.add_int(begins[d]).add_int(ends[d]).add_int(steps.empty() ? 1 : steps[d]);
  }
  return run_op(ops::kSlice, {x}, a);
}
Tensor gather(const Tensor& x, const Tensor& indices, int axis) {
  return run_op(ops::kGather, {x, indices}, Attrs{axis});
}
Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype) {
  return run_op(ops::kOneHot, {indices}, Attrs{depth, static_cast<int64_t>(dtype)});
}
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value) {
  if (pads.size() > kR) {
    throw ValueError("pad: " + std::to_string(pads.size()) + " pairs given; at most " +
                     std::to_string(kR) + " dims exist");
  }
  Attrs a;
  for (const auto& [b, e] : pads) a.add_int(b).add_int(e);
  a.add_float(value);
  return run_op(ops::kPad, {x}, a);
}

}  // namespace kiln
