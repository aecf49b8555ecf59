// Reductions: sum, mean, max over a set of axes, and argmax along one axis.
//
// Integer sums keep the input dtype and wrap on overflow (as TensorFlow does); mean takes
// floating dtypes only; bool is not a number for sum/mean/max. max and argmax propagate NaN
// like NumPy (a NaN is the max; argmax returns the first NaN), and reject reducing a zero-size
// axis into a non-empty output (there is no identity for max).
//
// Fast float32 kernels view x as [outer, red, inner] (the reduced dims must form one block
// after dropping size-1 dims; else the reference runs) and are deterministic: results never
// depend on the thread count.
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kernels/elementwise.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// ---- axes and geometry ---------------------------------------------------------------------

// sum/mean/max attrs = {keepdims, axes...}; no axes means all. Returns the reduced dims as a
// bit mask; throws ValueError for an out-of-range or repeated axis.
uint32_t reduce_mask(const Shape& s, const Attrs& a, const char* op) {
  const int r = s.rank();
  if (a.num_ints() <= 1) return (1u << r) - 1;
  uint32_t mask = 0;
  for (int k = 1; k < a.num_ints(); ++k) {
    int ax = normalize_axis(a.i(k), r, op);
    if (mask & (1u << ax)) {
      std::string list;
      for (int j = 1; j < a.num_ints(); ++j) list += (j > 1 ? ", " : "") + std::to_string(a.i(j));
      throw ValueError(std::string(op) + ": axis " + std::to_string(a.i(k)) +
                       " appears more than once in axes [" + list + "] for shape " + to_string(s));
    }
    mask |= 1u << ax;
  }
  return mask;
}

// x's shape with reduced dims set to 1 (the keepdims output shape).
Shape keep_shape(const Shape& s, uint32_t mask) {
  Shape k = s;
  for (int d = 0; d < s.rank(); ++d) {
    if (mask & (1u << d)) k[d] = 1;
  }
  return k;
}

Shape reduced_shape(const Shape& s, uint32_t mask, bool keepdims) {
  if (keepdims) return keep_shape(s, mask);
  Shape out;
  for (int d = 0; d < s.rank(); ++d) {
    if (!(mask & (1u << d))) out.push_back(s[d]);
  }
  return out;
}

std::vector<int> mask_axes(uint32_t mask, int rank) {
  std::vector<int> axes;
  for (int d = 0; d < rank; ++d) {
    if (mask & (1u << d)) axes.push_back(d);
  }
  return axes;
}

// x viewed as [outer, red, inner]; ok is false when the reduced dims are not one block.
struct Geometry {
  int64_t outer = 1, red = 1, inner = 1;
  bool ok = true;
};
Geometry geometry(const Shape& s, uint32_t mask) {
  Geometry g;
  int phase = 0;  // 0: before the reduced block, 1: inside it, 2: after it
  for (int d = 0; d < s.rank(); ++d) {
    if (s[d] == 1) continue;
    const bool r = mask & (1u << d);
    if (phase == 0 && r) phase = 1;
    if (phase == 1 && !r) phase = 2;
    if (phase == 2 && r) g.ok = false;
    (phase == 0 ? g.outer : phase == 1 ? g.red : g.inner) *= s[d];
  }
  return g;
}

template <const char* Name, int kKind>  // kKind: 0 sum, 1 mean, 2 max
void reduce_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Meta& x = in[0];
  if (x.dtype == DType::kBool) {
    throw DTypeError(std::string(Name) + ": bool tensors are not numbers; cast them first");
  }
  if (kKind == 1) require_floating(Name, x.dtype);
  uint32_t mask = reduce_mask(x.shape, a, Name);
  Shape os = reduced_shape(x.shape, mask, a.i(0) != 0);
  if (kKind == 2 && os.numel() > 0 && x.shape.numel() == 0) {
    throw ValueError(std::string(Name) + ": cannot reduce a zero-size axis of shape " +
                     to_string(x.shape) + " (max has no identity)");
  }
  out[0] = {os, x.dtype};
}

// ---- reference kernels: one odometer over x, accumulating into the output ------------------

template <int kKind>
void reduce_reference(const KernelArgs& k) {
  const Tensor& x = k.in[0];
  const Shape& s = x.shape();
  const uint32_t mask = reduce_mask(s, k.attrs, "reduce");
  const int r = s.rank();
  // Output strides for kept dims, 0 for reduced ones.
  int64_t ost[Shape::kMaxRank];
  for (int64_t d = r - 1, st = 1; d >= 0; --d) {
    ost[d] = (mask & (1u << d)) ? 0 : st;
    st *= (mask & (1u << d)) ? 1 : s[d];
  }
  const int64_t n_out = k.out[0].numel(), n = s.numel();
  const int64_t count = n_out ? n / n_out : 0;
  detail::visit_dtype(x.dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
      const T* px = detail::ptr<T>(x);
      T* po = detail::ptr<T>(k.out[0]);
      std::vector<Acc> acc(n_out, kKind == 2 ? Acc(std::numeric_limits<T>::lowest()) : Acc(0));
      if constexpr (std::is_floating_point_v<T>) {
        if (kKind == 2) acc.assign(n_out, -std::numeric_limits<Acc>::infinity());
      }
      int64_t c[Shape::kMaxRank] = {}, o = 0;
      for (int64_t i = 0; i < n; ++i) {
        const Acc v = static_cast<Acc>(px[i]);
        if (kKind == 2) {
          if (acc[o] == acc[o] && !(v <= acc[o])) acc[o] = v;  // a NaN sticks
        } else {
          acc[o] += v;
        }
        for (int d = r - 1; d >= 0; --d) {  // advance the odometer
          o += ost[d];
          if (++c[d] < s[d]) break;
          o -= ost[d] * s[d];
          c[d] = 0;
        }
      }
      for (int64_t j = 0; j < n_out; ++j) {
        po[j] = static_cast<T>(kKind == 1 ? acc[j] / static_cast<Acc>(count) : acc[j]);
      }
    }
  });
}

// ---- fast float32 kernels ------------------------------------------------------------------

constexpr int64_t kChunk = 1 << 14;  // unit of parallel work along one long row
constexpr int64_t kCols = 256;       // columns per task for leading/middle reductions

// Double accumulation keeps float32 sums accurate at any length; 16 independent lanes let the
// compiler use several vector accumulators (the loop is memory-bound either way).
double chunk_sum(const float* p, int64_t n) {
  double lane[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int l = 0; l < 16; ++l) lane[l] += p[j + l];
  }
  for (; j < n; ++j) lane[j & 15] += p[j];
  double acc = 0;
  for (double v : lane) acc += v;
  return acc;
}
// Max ignoring NaN (a > b ? a : b is one vector max instruction) plus a NaN flag, in 16 lanes
// like chunk_sum. Not `omp simd reduction(max:)`: its identity is the compiler's choice, and
// clang's (-FLT_MAX) turned a row of -inf into -FLT_MAX.
float chunk_max(const float* p, int64_t n) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float lane[16] = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf,
                    kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
  int32_t nan[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int l = 0; l < 16; ++l) {
      const float v = p[j + l];
      lane[l] = v > lane[l] ? v : lane[l];
      nan[l] |= v != v;
    }
  }
  for (; j < n; ++j) {
    lane[j & 15] = p[j] > lane[j & 15] ? p[j] : lane[j & 15];
    nan[j & 15] |= p[j] != p[j];
  }
  float m = kNegInf;
  int32_t any_nan = 0;
  for (int l = 0; l < 16; ++l) {
    m = lane[l] > m ? lane[l] : m;
    any_nan |= nan[l];
  }
  return any_nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

// One long row reduced in fixed chunks (in parallel when `parallel`), combined in order.
template <bool kMax>
double row_reduce(const float* p, int64_t n, bool parallel) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  double part_buf[64];
  std::vector<double> part_vec;
  double* part = part_buf;
  if (chunks > 64) {
    part_vec.resize(chunks);
    part = part_vec.data();
  }
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t len = std::min(kChunk, n - c * kChunk);
      part[c] = kMax ? chunk_max(p + c * kChunk, len) : chunk_sum(p + c * kChunk, len);
    }
  };
  if (parallel) {
    kernels::parallel_range(chunks, kChunk, run);
  } else {
    run(0, chunks);
  }
  double acc = kMax ? -std::numeric_limits<double>::infinity() : 0;
  for (int64_t c = 0; c < chunks; ++c) {
    if (kMax) {
      if (acc == acc && !(part[c] <= acc)) acc = part[c];
    } else {
      acc += part[c];
    }
  }
  return acc;
}

template <int kKind>
bool reduce_fast(const KernelArgs& k) {
  const Tensor& x = k.in[0];
  if (x.dtype() != DType::kFloat32 || x.numel() == 0) return false;
  const Geometry g = geometry(x.shape(), reduce_mask(x.shape(), k.attrs, "reduce"));
  if (!g.ok) return false;
  const float* px = detail::ptr<float>(x);
  float* po = detail::ptr<float>(k.out[0]);
  constexpr bool kMax = kKind == 2;
  const double scale = kKind == 1 ? 1.0 / static_cast<double>(g.red) : 1.0;
  if (g.inner == 1) {
    // Row reductions: parallel over rows, or within each row when rows are few.
    // Both ways combine the same chunk partials in the same order, so results agree exactly.
    if (g.outer < omp_get_max_threads()) {
      for (int64_t o = 0; o < g.outer; ++o) {
        po[o] = static_cast<float>(row_reduce<kMax>(px + o * g.red, g.red, true) * scale);
      }
    } else {
      kernels::parallel_range(g.outer, g.red, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          po[o] = static_cast<float>(row_reduce<kMax>(px + o * g.red, g.red, false) * scale);
        }
      });
    }
    return true;
  }
  // Leading or middle reductions: vectorize across a block of kCols output columns.
  const int64_t col_tasks = (g.inner + kCols - 1) / kCols;
  kernels::parallel_range(g.outer * col_tasks, g.red * kCols, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / col_tasks, c0 = (t % col_tasks) * kCols;
      const int64_t w = std::min(kCols, g.inner - c0);
      const float* base = px + o * g.red * g.inner + c0;
      float* dst = po + o * g.inner + c0;
      if constexpr (kMax) {
        float m[kCols];
        for (int64_t j = 0; j < w; ++j) m[j] = -std::numeric_limits<float>::infinity();
        for (int64_t r = 0; r < g.red; ++r) {
          const float* row = base + r * g.inner;
#pragma omp simd
          for (int64_t j = 0; j < w; ++j) {
            m[j] = (row[j] > m[j] || row[j] != row[j]) ? row[j] : m[j];  // NaN sticks
          }
        }
        for (int64_t j = 0; j < w; ++j) dst[j] = m[j];
      } else {
        double acc[kCols] = {};
        for (int64_t r = 0; r < g.red; ++r) {
          const float* row = base + r * g.inner;
#pragma omp simd
          for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
        }
        for (int64_t j = 0; j < w; ++j) dst[j] = static_cast<float>(acc[j] * scale);
      }
    }
  });
  return true;
}

// ---- gradients -----------------------------------------------------------------------------
//
// sum_grad / mean_grad (g, like) -> like's shape: g (sum's or mean's output gradient) spread
// back over the reduced dims, divided by their size for mean. attrs = the reduction's own.
// The shape comes from `like` (the reduced input; its data is never read) and mean's count is
// computed by the kernel, so a traced graph serves every size of an unknown dim.

template <const char* Name>
void unreduce_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_floating(Name, in[0].dtype);
  const Shape& xs = in[1].shape;
  const Shape want = reduced_shape(xs, reduce_mask(xs, a, Name), a.i(0) != 0);
  if (in[0].shape != want) {
    throw ShapeError(std::string(Name) + ": gradient " + to_string(in[0].shape) +
                     " does not match the reduction " + to_string(want) + " of " + to_string(xs));
  }
  out[0] = {xs, in[0].dtype};
}

// The reduced dims' sizes multiplied (mean's count; 1 for sum).
template <bool kMean>
double unreduce_count(const Shape& xs, uint32_t mask) {
  double count = 1;
  if (kMean) {
    for (int d = 0; d < xs.rank(); ++d) count *= (mask & (1u << d)) ? xs[d] : 1;
  }
  return count;
}

template <bool kMean>
void unreduce_reference(const KernelArgs& k) {
  const Shape& xs = k.out[0].shape();
  const uint32_t mask = reduce_mask(xs, k.attrs, "sum_grad");
  const Shape ks = keep_shape(xs, mask);
  const double count = unreduce_count<kMean>(xs, mask);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* g = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = xs.numel(); i < n; ++i) {
      const T v = g[kernels::broadcast_offset(i, xs, ks)];
      o[i] = kMean ? v / static_cast<T>(count) : v;
    }
  });
}

template <bool kMean>
bool unreduce_fast(const KernelArgs& k) {
  const Shape& xs = k.out[0].shape();
  if (xs.numel() == 0) return true;
  const uint32_t mask = reduce_mask(xs, k.attrs, "sum_grad");
  const Shape ks = keep_shape(xs, mask);
  const double count = unreduce_count<kMean>(xs, mask);
  kernels::BroadcastPlan plan = kernels::make_plan(xs, {&ks});
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* g = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    const T c = static_cast<T>(count);
    kernels::for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t j = 0; j < n; ++j) {
        const T v = g[off[1] + j * st[1]];
        o[off[0] + j * st[0]] = kMean ? v / c : v;
      }
    });
  });
  return true;
}

// Each is linear in g with the reduction itself as adjoint; `like` gets no gradient.
void sum_grad_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kSum, {g.grad_out[0]}, g.attrs);
}
void mean_grad_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kMean, {g.grad_out[0]}, g.attrs);
}

void sum_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kSumGrad, {g.grad_out[0], g.in[0]}, g.attrs);
}
void mean_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kMeanGrad, {g.grad_out[0], g.in[0]}, g.attrs);
}
// Ties share the gradient equally, as in TensorFlow's reduce_max gradient. sum_grad spreads
// the max and the gradient over x's shape (from x, not from attrs).
void max_grad(const GradArgs& g) {
  const Tensor& x = g.in[0];
  uint32_t mask = reduce_mask(x.shape(), g.attrs, "max");
  Tensor hit = cast(equal(x, run_op(ops::kSumGrad, {g.out[0], x}, g.attrs)), x.dtype());
  Tensor count = sum(hit, mask_axes(mask, x.rank()), true);
  g.grad_in[0] = div(mul(hit, run_op(ops::kSumGrad, {g.grad_out[0], x}, g.attrs)), count);
}

constexpr char kSumName[] = "sum", kMeanName[] = "mean", kMaxName[] = "max";
constexpr char kSumGradName[] = "sum_grad", kMeanGradName[] = "mean_grad";

constexpr AttrField kReduceFields[] = {{"keepdims", AttrType::kBool},
                                       {"axes", AttrType::kInt, kRest}};
constexpr AttrSchema kReduceAttrs{kReduceFields};

// ---- argmax: attrs = {axis, keepdims} --------------------------------------------------------

constexpr AttrField kArgmaxFields[] = {{"axis", AttrType::kInt}, {"keepdims", AttrType::kBool}};
constexpr AttrSchema kArgmaxAttrs{kArgmaxFields};

void argmax_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const Shape& s = in[0].shape;
  const int ax = normalize_axis(a.i(0), s.rank(), "argmax");
  Shape os = reduced_shape(s, 1u << ax, a.i(1) != 0);
  if (s[ax] == 0 && os.numel() > 0) {
    throw ValueError("argmax: axis " + std::to_string(a.i(0)) + " of shape " + to_string(s) +
                     " has size 0");
  }
  out[0] = {os, DType::kInt64};
}

Geometry axis_geometry(const Shape& s, int ax) {
  Geometry g;
  for (int d = 0; d < s.rank(); ++d) (d < ax ? g.outer : d == ax ? g.red : g.inner) *= s[d];
  return g;
}

// v beats the current best b (NaN wins, the first one stays).
template <typename T>
bool beats(T v, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return b == b && (v > b || v != v);
  } else {
    return v > b;
  }
}

void argmax_reference(const KernelArgs& k) {
  const Geometry g =
      axis_geometry(k.in[0].shape(), normalize_axis(k.attrs.i(0), k.in[0].rank(), "argmax"));
  int64_t* po = detail::ptr<int64_t>(k.out[0]);
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    const T* px = detail::ptr<T>(k.in[0]);
    for (int64_t o = 0; o < g.outer; ++o) {
      for (int64_t i = 0; i < g.inner; ++i) {
        int64_t best = 0;
        for (int64_t r = 1; r < g.red; ++r) {
          const int64_t base = o * g.red * g.inner + i;
          if (beats(px[base + r * g.inner], px[base + best * g.inner])) best = r;
        }
        po[o * g.inner + i] = best;
      }
    }
  });
}

bool argmax_fast(const KernelArgs& k) {
  const Tensor& x = k.in[0];
  if (x.dtype() != DType::kFloat32 || x.numel() == 0) return false;
  const Geometry g = axis_geometry(x.shape(), normalize_axis(k.attrs.i(0), x.rank(), "argmax"));
  const float* px = detail::ptr<float>(x);
  int64_t* po = detail::ptr<int64_t>(k.out[0]);
  if (g.inner == 1) {  // rows: a vectorized max, then the first position holding it
    kernels::parallel_range(g.outer, g.red, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const float* row = px + o * g.red;
        const float m = chunk_max(row, g.red);
        // Bounded by the row even if m were not in it (it always is).
        int64_t j = 0;
        if (m != m) {
          while (j + 1 < g.red && row[j] == row[j]) ++j;
        } else {
          while (j + 1 < g.red && row[j] != m) ++j;
        }
        po[o] = j;
      }
    });
    return true;
  }
  const int64_t col_tasks = (g.inner + kCols - 1) / kCols;
  kernels::parallel_range(g.outer * col_tasks, g.red * kCols, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / col_tasks, c0 = (t % col_tasks) * kCols;
      const int64_t w = std::min(kCols, g.inner - c0);
      const float* base = px + o * g.red * g.inner + c0;
      float best[kCols];
      int64_t idx[kCols] = {};
      for (int64_t j = 0; j < w; ++j) best[j] = base[j];
      for (int64_t r = 1; r < g.red; ++r) {
        const float* row = base + r * g.inner;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) {
          const bool take = best[j] == best[j] && (row[j] > best[j] || row[j] != row[j]);
          best[j] = take ? row[j] : best[j];
          idx[j] = take ? r : idx[j];
        }
      }
      for (int64_t j = 0; j < w; ++j) po[o * g.inner + c0 + j] = idx[j];
    }
  });
  return true;
}

Attrs reduce_attrs(const char* op, const std::vector<int>& axes, bool keepdims) {
  Attrs a{keepdims ? 1 : 0};
  if (axes.size() >= Attrs::kMaxInts) {  // more axes than dims: some repeat or are out of range
    throw ValueError(std::string(op) + ": " + std::to_string(axes.size()) +
                     " axes given; a tensor has at most " + std::to_string(Shape::kMaxRank) +
                     " dims");
  }
  for (int ax : axes) a.add_int(ax);
  return a;
}

}  // namespace

namespace ops {
const OpDef kSum{.name = "sum",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = reduce_infer<kSumName, 0>,
                 .reference = reduce_reference<0>,
                 .fast = reduce_fast<0>,
                 .grad = sum_grad,
                 .attrs = &kReduceAttrs};
const OpDef kMean{.name = "mean",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = reduce_infer<kMeanName, 1>,
                  .reference = reduce_reference<1>,
                  .fast = reduce_fast<1>,
                  .grad = mean_grad,
                  .attrs = &kReduceAttrs};
const OpDef kMax{.name = "max",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = reduce_infer<kMaxName, 2>,
                 .reference = reduce_reference<2>,
                 .fast = reduce_fast<2>,
                 .grad = max_grad,
                 .attrs = &kReduceAttrs};
const OpDef kSumGrad{.name = "sum_grad",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = unreduce_infer<kSumGradName>,
                     .reference = unreduce_reference<false>,
                     .fast = unreduce_fast<false>,
                     .grad = sum_grad_grad,
                     .attrs = &kReduceAttrs,
                     .shape_only_inputs = 1u << 1};
const OpDef kMeanGrad{.name = "mean_grad",
                      .num_inputs = 2,
                      .num_outputs = 1,
                      .infer = unreduce_infer<kMeanGradName>,
                      .reference = unreduce_reference<true>,
                      .fast = unreduce_fast<true>,
                      .grad = mean_grad_grad,
                      .attrs = &kReduceAttrs,
                      .shape_only_inputs = 1u << 1};
const OpDef kArgmax{.name = "argmax",
                    .num_inputs = 1,
                    .num_outputs = 1,
                    .infer = argmax_infer,
                    .reference = argmax_reference,
                    .fast = argmax_fast,
                    .attrs = &kArgmaxAttrs};
}  // namespace ops

Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdims) {
  return run_op(ops::kSum, {x}, reduce_attrs("sum", axes, keepdims));
}
Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdims) {
  return run_op(ops::kMean, {x}, reduce_attrs("mean", axes, keepdims));
}
Tensor max(const Tensor& x, std::vector<int> axes, bool keepdims) {
  return run_op(ops::kMax, {x}, reduce_attrs("max", axes, keepdims));
}
Tensor argmax(const Tensor& x, int axis, bool keepdims) {
  return run_op(ops::kArgmax, {x}, Attrs{axis, keepdims ? 1 : 0});
}

}  // namespace kiln
