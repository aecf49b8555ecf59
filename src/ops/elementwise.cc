// Elementwise ops: NumPy broadcasting, equal dtypes, forward and gradient side by side.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <omp.h>
#include <type_traits>

#include "kernels/elementwise.h"
#include "kernels/fast_math.h"
#include "kiln/ops.h"
#include "ops/elementwise_fn.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using kernels::binary_fast_typed;
using kernels::binary_reference_typed;
using kernels::unary_typed;

// ---- shared infer functions ----------------------------------------------------------------

template <const char* Name, bool kFloatOnly>
void infer_binary(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  require_same_dtype(Name, in[0].dtype, in[1].dtype);
  if (kFloatOnly) require_floating(Name, in[0].dtype);
  if (in[0].dtype == DType::kBool && !kFloatOnly) {
    throw DTypeError(std::string(Name) + ": bool tensors are not numbers; cast them first");
  }
  out[0] = {broadcast_shapes(in[0].shape, in[1].shape, Name), in[0].dtype};
}

template <const char* Name>
void infer_compare(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  require_same_dtype(Name, in[0].dtype, in[1].dtype);
  out[0] = {broadcast_shapes(in[0].shape, in[1].shape, Name), DType::kBool};
}

template <const char* Name, bool kFloatOnly>
void infer_unary(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  if (kFloatOnly) require_floating(Name, in[0].dtype);
  if (in[0].dtype == DType::kBool) {
    throw DTypeError(std::string(Name) + ": bool tensors are not numbers; cast them first");
  }
  out[0] = in[0];
}

// ---- binary ops: one functor each, generic kernels -----------------------------------------

struct AddF {
  template <typename T>
  T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubF {
  template <typename T>
  T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulF {
  template <typename T>
  T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivF {  // integer division by zero gives 0 instead of trapping
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0) return T(0);
      // MIN / -1 overflows and traps on x86; wrap like the other integer ops instead.
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) return static_cast<T>(0u - static_cast<std::make_unsigned_t<T>>(a));
      }
      return static_cast<T>(a / b);
    } else {
      return a / b;
    }
  }
};
struct PowF {
  template <typename T>
  T operator()(T a, T b) const {
    return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
  }
  float operator()(float a, float b) const { return std::pow(a, b); }
};
struct MaxF {
  template <typename T>
  T operator()(T a, T b) const {
    return a >= b || a != a ? a : b;
  }
};
struct MinF {
  template <typename T>
  T operator()(T a, T b) const {
    return a <= b || a != a ? a : b;
  }
};
struct EqF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a == b;
  }
};
struct NeF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a != b;
  }
};
struct LtF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a < b;
  }
};
struct LeF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a <= b;
  }
};
struct GtF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a > b;
  }
};
struct GeF {
  template <typename T>
  bool operator()(T a, T b) const {
    return a >= b;
  }
};

template <typename F>
void binary_reference(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      binary_reference_typed<T, T>(k.in[0], k.in[1], k.out[0], F{});
    }
  });
}
template <typename F>
bool binary_fast(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      binary_fast_typed<T, T>(k.in[0], k.in[1], k.out[0], F{});
    }
  });
  return true;
}
template <typename F>
void compare_reference(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    binary_reference_typed<T, bool>(k.in[0], k.in[1], k.out[0], F{});
  });
}
template <typename F>
bool compare_fast(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    binary_fast_typed<T, bool>(k.in[0], k.in[1], k.out[0], F{});
  });
  return true;
}

// Gradient rules. sum_to_like undoes broadcasting, reading the target shape from the input
// itself, so a graph traced with an unknown batch dim serves every batch size.
void add_grad(const GradArgs& g) {
  g.grad_in[0] = ops::sum_to_like(g.grad_out[0], g.in[0]);
  g.grad_in[1] = ops::sum_to_like(g.grad_out[0], g.in[1]);
}
void sub_grad(const GradArgs& g) {
  g.grad_in[0] = ops::sum_to_like(g.grad_out[0], g.in[0]);
  g.grad_in[1] = ops::sum_to_like(neg(g.grad_out[0]), g.in[1]);
}
void mul_grad(const GradArgs& g) {
  g.grad_in[0] = ops::sum_to_like(mul(g.grad_out[0], g.in[1]), g.in[0]);
  g.grad_in[1] = ops::sum_to_like(mul(g.grad_out[0], g.in[0]), g.in[1]);
}
void div_grad(const GradArgs& g) {  // d(a/b) = da/b - db*(a/b)/b
  Tensor ga = div(g.grad_out[0], g.in[1]);
  g.grad_in[0] = ops::sum_to_like(ga, g.in[0]);
  g.grad_in[1] = ops::sum_to_like(neg(mul(ga, g.out[0])), g.in[1]);
}
void pow_grad(const GradArgs& g) {  // d(a^b) = b a^(b-1) da + a^b log(a) db (a > 0)
  const Tensor &a = g.in[0], &b = g.in[1];
  Tensor one = scalar_like(1, a);
  g.grad_in[0] = ops::sum_to_like(mul(g.grad_out[0], mul(b, pow(a, sub(b, one)))), a);
  Tensor zero = scalar_like(0, a);
  Tensor log_a = where(greater(a, zero), log(where(greater(a, zero), a, one)), zero);
  g.grad_in[1] = ops::sum_to_like(mul(g.grad_out[0], mul(g.out[0], log_a)), b);
}
// Ties send the gradient to `a`, as TensorFlow does.
void maximum_grad(const GradArgs& g) {
  Tensor to_a = greater_equal(g.in[0], g.in[1]);
  Tensor zero = scalar_like(0, g.grad_out[0]);
  g.grad_in[0] = ops::sum_to_like(where(to_a, g.grad_out[0], zero), g.in[0]);
  g.grad_in[1] = ops::sum_to_like(where(to_a, zero, g.grad_out[0]), g.in[1]);
}
void minimum_grad(const GradArgs& g) {
  Tensor to_a = less_equal(g.in[0], g.in[1]);
  Tensor zero = scalar_like(0, g.grad_out[0]);
  g.grad_in[0] = ops::sum_to_like(where(to_a, g.grad_out[0], zero), g.in[0]);
  g.grad_in[1] = ops::sum_to_like(where(to_a, zero, g.grad_out[0]), g.in[1]);
}

constexpr char kAddName[] = "add", kSubName[] = "sub", kMulName[] = "mul", kDivName[] = "div",
               kPowName[] = "pow", kMaxName[] = "maximum", kMinName[] = "minimum";
constexpr char kEqName[] = "equal", kNeName[] = "not_equal", kLtName[] = "less",
               kLeName[] = "less_equal", kGtName[] = "greater", kGeName[] = "greater_equal";

// ---- unary ops ------------------------------------------------------------------------------

template <typename F, bool kFloatOnly>
void unary_kernel(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool> && (!kFloatOnly || std::is_floating_point_v<T>)) {
      unary_typed<T, T>(k.in[0], k.out[0], F{});
    }
  });
}

struct NegF {
  template <typename T>
  T operator()(T x) const {
    return static_cast<T>(-x);
  }
};
struct ExpF {
  template <typename T>
  T operator()(T x) const {
    return std::exp(x);
  }
  float fast(float x) const { return kernels::exp_f32(x); }  // vectorizes; within 2 ulp
};
struct LogF {
  template <typename T>
  T operator()(T x) const {
    return std::log(x);
  }
};
struct SqrtF {
  template <typename T>
  T operator()(T x) const {
    return std::sqrt(x);
  }
};
struct AbsF {
  template <typename T>
  T operator()(T x) const {
    return x < 0 ? static_cast<T>(-x) : x;
  }
};
struct SquareF {
  template <typename T>
  T operator()(T x) const {
    return static_cast<T>(x * x);
  }
};

void neg_grad(const GradArgs& g) { g.grad_in[0] = neg(g.grad_out[0]); }
void exp_grad(const GradArgs& g) { g.grad_in[0] = mul(g.grad_out[0], g.out[0]); }
void log_grad(const GradArgs& g) { g.grad_in[0] = div(g.grad_out[0], g.in[0]); }
void sqrt_grad(const GradArgs& g) {
  g.grad_in[0] = div(mul(g.grad_out[0], scalar_like(0.5, g.out[0])), g.out[0]);
}
void abs_grad(const GradArgs& g) {  // sign(x), 0 at 0
  const Tensor& x = g.in[0];
  Tensor zero = scalar_like(0, x);
  Tensor sign = sub(cast(greater(x, zero), x.dtype()), cast(less(x, zero), x.dtype()));
  g.grad_in[0] = mul(g.grad_out[0], sign);
}
void square_grad(const GradArgs& g) {
  g.grad_in[0] = mul(g.grad_out[0], mul(g.in[0], scalar_like(2, g.in[0])));
}

constexpr char kNegName[] = "neg", kExpName[] = "exp", kLogName[] = "log", kSqrtName[] = "sqrt",
               kAbsName[] = "abs", kSquareName[] = "square";

// ---- where, cast, broadcast_to, sum_to --------------------------------------------------------

void where_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  if (in[0].dtype != DType::kBool) {
    throw DTypeError("where: condition must be bool, got " + std::string(dtype_name(in[0].dtype)));
  }
  require_same_dtype("where", in[1].dtype, in[2].dtype);
  Shape s = broadcast_shapes(in[1].shape, in[2].shape, "where");
  try {
    s = broadcast_shapes(in[0].shape, s, "where");
  } catch (const ShapeError&) {
    throw ShapeError("where: shapes " + shapes_str(in) + " cannot be broadcast together");
  }
  out[0] = {s, in[1].dtype};
}
void where_reference(const KernelArgs& k) {
  const Shape& os = k.out[0].shape();
  const bool* c = detail::ptr<bool>(k.in[0]);
  detail::visit_dtype(k.in[1].dtype(), [&]<typename T>() {
    const T* a = detail::ptr<T>(k.in[1]);
    const T* b = detail::ptr<T>(k.in[2]);
    T* o = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = os.numel(); i < n; ++i) {
      o[i] = c[kernels::broadcast_offset(i, os, k.in[0].shape())]
                 ? a[kernels::broadcast_offset(i, os, k.in[1].shape())]
                 : b[kernels::broadcast_offset(i, os, k.in[2].shape())];
    }
  });
}
bool where_fast(const KernelArgs& k) {
  const bool* c = detail::ptr<bool>(k.in[0]);
  kernels::BroadcastPlan plan =
      kernels::make_plan(k.out[0].shape(), {&k.in[0].shape(), &k.in[1].shape(), &k.in[2].shape()});
  detail::visit_dtype(k.in[1].dtype(), [&]<typename T>() {
    const T* a = detail::ptr<T>(k.in[1]);
    const T* b = detail::ptr<T>(k.in[2]);
    T* o = detail::ptr<T>(k.out[0]);
    kernels::for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t j = 0; j < n; ++j) {
        o[off[0] + j * st[0]] =
            c[off[1] + j * st[1]] ? a[off[2] + j * st[2]] : b[off[3] + j * st[3]];
      }
    });
  });
  return true;
}
void where_grad(const GradArgs& g) {
  Tensor zero = scalar_like(0, g.grad_out[0]);
  g.grad_in[1] = ops::sum_to_like(where(g.in[0], g.grad_out[0], zero), g.in[1]);
  g.grad_in[2] = ops::sum_to_like(where(g.in[0], zero, g.grad_out[0]), g.in[2]);
}

// cast: attrs = {dtype}
constexpr AttrField kCastFields[] = {{"dtype", AttrType::kDType}};
constexpr AttrSchema kCastAttrs{kCastFields};

void cast_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  out[0] = {in[0].shape, static_cast<DType>(a.i(0))};
}
void cast_reference(const KernelArgs& k) {
  detail::visit_dtype(k.in[0].dtype(), [&]<typename S>() {
    detail::visit_dtype(k.out[0].dtype(), [&]<typename D>() {
      unary_typed<S, D>(k.in[0], k.out[0], [](S v) {
        if constexpr (std::is_same_v<D, bool>) {
          return v != S(0);
        } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
          // Out-of-range and NaN values would be undefined behaviour; saturate them instead.
          if (!(v == v)) return D(0);
          if (v >= static_cast<S>(std::numeric_limits<D>::max()))
            return std::numeric_limits<D>::max();
          if (v <= static_cast<S>(std::numeric_limits<D>::lowest()))
            return std::numeric_limits<D>::lowest();
          return static_cast<D>(v);
        } else {
          return static_cast<D>(v);
        }
      });
    });
  });
}
void cast_grad(const GradArgs& g) {
  if (is_floating(g.in[0].dtype())) g.grad_in[0] = cast(g.grad_out[0], g.in[0].dtype());
}

// broadcast_to / sum_to: attrs = the target shape's dims. broadcast_like / sum_to_like (x, like)
// take the target from like's shape (its data is never read) and have no attrs: gradient rules
// use them, so traced graphs do not bake input sizes. The kernels read the output's shape only,
// so each pair shares them.
constexpr AttrField kTargetShapeFields[] = {{"shape", AttrType::kShape, kRest}};
constexpr AttrSchema kTargetShapeAttrs{kTargetShapeFields};

Shape shape_attr(const Attrs& a) { return Shape(a.ints()); }
Attrs shape_attrs(const Shape& s) {
  Attrs a;
  for (int64_t d : s) a.add_int(d);
  return a;
}

void check_broadcast(const char* op, const Shape& from, const Shape& target) {
  Shape b = broadcast_shapes(from, target, op);
  if (b != target) {
    throw ShapeError(std::string(op) + ": cannot broadcast " + to_string(from) + " to " +
                     to_string(target));
  }
}
void broadcast_to_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  Shape target = shape_attr(a);
  check_broadcast("broadcast_to", in[0].shape, target);
  out[0] = {target, in[0].dtype};
}
void broadcast_like_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  check_broadcast("broadcast_like", in[0].shape, in[1].shape);
  out[0] = {in[1].shape, in[0].dtype};
}
void broadcast_to_reference(const KernelArgs& k) {
  const Shape& os = k.out[0].shape();
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = os.numel(); i < n; ++i) {
      o[i] = x[kernels::broadcast_offset(i, os, k.in[0].shape())];
    }
  });
}
bool broadcast_to_fast(const KernelArgs& k) {
  kernels::BroadcastPlan plan = kernels::make_plan(k.out[0].shape(), {&k.in[0].shape()});
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    kernels::for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t j = 0; j < n; ++j) o[off[0] + j * st[0]] = x[off[1] + j * st[1]];
    });
  });
  return true;
}
void broadcast_to_grad(const GradArgs& g) {
  g.grad_in[0] = ops::sum_to_like(g.grad_out[0], g.in[0]);
}

void check_sum_to(const char* op, const Meta& x, const Shape& target) {
  Shape b = broadcast_shapes(x.shape, target, op);
  if (b != x.shape) {
    throw ShapeError(std::string(op) + ": cannot sum " + to_string(x.shape) + " down to " +
                     to_string(target));
  }
  if (x.dtype == DType::kBool) throw DTypeError(std::string(op) + ": bool tensors are not numbers");
}
void sum_to_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  Shape target = shape_attr(a);
  check_sum_to("sum_to", in[0], target);
  out[0] = {target, in[0].dtype};
}
void sum_to_like_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  check_sum_to("sum_to_like", in[0], in[1].shape);
  out[0] = {in[1].shape, in[0].dtype};
}
void sum_to_reference(const KernelArgs& k) {
  const Shape& is = k.in[0].shape();
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    T* o = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) o[i] = T(0);
    for (int64_t i = 0, n = is.numel(); i < n; ++i) {
      o[kernels::broadcast_offset(i, is, k.out[0].shape())] += x[i];
    }
  });
}
bool sum_to_fast(const KernelArgs& k) {
  // Iterate over the input; the output has stride 0 along summed dims. With threads, each sums
  // a slice of the outer loop into its own copy of the output, and the copies are added up.
  const Shape& is = k.in[0].shape();
  const int64_t on = k.out[0].numel();
  kernels::BroadcastPlan plan = kernels::make_plan(is, {&k.out[0].shape()});
  const int r = plan.rank;
  int64_t outer = 1;
  for (int d = 0; d < r - 1; ++d) outer *= plan.shape[d];
  const int64_t n = plan.shape[r - 1], sx = plan.stride[0][r - 1], so = plan.stride[1][r - 1];
  const int nt = is.numel() >= kernels::kParallelThreshold && outer >= 2 && on <= is.numel() / 4
                     ? omp_get_max_threads()
                     : 1;
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
      const T* x = detail::ptr<T>(k.in[0]);
      auto accumulate = [&](int64_t begin, int64_t end, T* o) {
        std::fill(o, o + on, T(0));
        for (int64_t idx = begin; idx < end; ++idx) {
          int64_t ox = 0, oo = 0, rem = idx;
          for (int d = r - 2; d >= 0; --d) {
            int64_t c = rem % plan.shape[d];
            rem /= plan.shape[d];
            ox += c * plan.stride[0][d];
            oo += c * plan.stride[1][d];
          }
          if (so == 0) {
            Acc acc = Acc(0);
            for (int64_t j = 0; j < n; ++j) acc += x[ox + j * sx];
            o[oo] += static_cast<T>(acc);
          } else {
            T* dst = o + oo;
            const T* src = x + ox;
            for (int64_t j = 0; j < n; ++j) dst[j * so] += src[j * sx];
          }
        }
      };
      T* o = detail::ptr<T>(k.out[0]);
      if (nt == 1) {
        accumulate(0, outer, o);
        return;
      }
      std::vector<T> partial(static_cast<size_t>((nt - 1) * on));
#pragma omp parallel num_threads(nt)
      {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int64_t chunk = (outer + used - 1) / used;
        accumulate(std::min(outer, t * chunk), std::min(outer, (t + 1) * chunk),
                   t == 0 ? o : partial.data() + (t - 1) * on);
      }
      for (int t = 1; t < nt; ++t) {
        const T* p = partial.data() + (t - 1) * on;
        for (int64_t i = 0; i < on; ++i) o[i] += p[i];
      }
    }
  });
  return true;
}
void sum_to_grad(const GradArgs& g) { g.grad_in[0] = ops::broadcast_like(g.grad_out[0], g.in[0]); }
// like gives only a shape: it gets no gradient.
void broadcast_like_grad(const GradArgs& g) {
  g.grad_in[0] = ops::sum_to_like(g.grad_out[0], g.in[0]);
}
void sum_to_like_grad(const GradArgs& g) {
  g.grad_in[0] = ops::broadcast_like(g.grad_out[0], g.in[0]);
}

// copy (Tensor::clone): a new buffer with the same values; the gradient passes through.
// stop_gradient: the same kernel, declared not differentiable, so tapes do not track it.
void identity_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) { out[0] = in[0]; }
void copy_reference(const KernelArgs& k) {
  if (k.in[0].nbytes()) std::memcpy(k.out[0].raw_data(), k.in[0].raw_data(), k.in[0].nbytes());
}
void copy_grad(const GradArgs& g) { g.grad_in[0] = g.grad_out[0]; }

}  // namespace

namespace ops {
const OpDef kAdd{.name = "add",
                 .num_inputs = 2,
                 .num_outputs = 1,
                 .infer = infer_binary<kAddName, false>,
                 .reference = binary_reference<AddF>,
                 .fast = binary_fast<AddF>,
                 .grad = add_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kBinaryFn<AddF>};
const OpDef kSub{.name = "sub",
                 .num_inputs = 2,
                 .num_outputs = 1,
                 .infer = infer_binary<kSubName, false>,
                 .reference = binary_reference<SubF>,
                 .fast = binary_fast<SubF>,
                 .grad = sub_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kBinaryFn<SubF>};
const OpDef kMul{.name = "mul",
                 .num_inputs = 2,
                 .num_outputs = 1,
                 .infer = infer_binary<kMulName, false>,
                 .reference = binary_reference<MulF>,
                 .fast = binary_fast<MulF>,
                 .grad = mul_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kBinaryFn<MulF>};
const OpDef kDiv{.name = "div",
                 .num_inputs = 2,
                 .num_outputs = 1,
                 .infer = infer_binary<kDivName, false>,
                 .reference = binary_reference<DivF>,
                 .fast = binary_fast<DivF>,
                 .grad = div_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kBinaryFn<DivF>};
const OpDef kPow{.name = "pow",
                 .num_inputs = 2,
                 .num_outputs = 1,
                 .infer = infer_binary<kPowName, true>,
                 .reference = binary_reference<PowF>,
                 .fast = binary_fast<PowF>,
                 .grad = pow_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kBinaryFn<PowF>};
const OpDef kMaximum{.name = "maximum",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = infer_binary<kMaxName, false>,
                     .reference = binary_reference<MaxF>,
                     .fast = binary_fast<MaxF>,
                     .grad = maximum_grad,
                     .attrs = &kNoAttrs,
                     .elementwise = &kBinaryFn<MaxF>};
const OpDef kMinimum{.name = "minimum",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = infer_binary<kMinName, false>,
                     .reference = binary_reference<MinF>,
                     .fast = binary_fast<MinF>,
                     .grad = minimum_grad,
                     .attrs = &kNoAttrs,
                     .elementwise = &kBinaryFn<MinF>};
const OpDef kEqual{.name = "equal",
                   .num_inputs = 2,
                   .num_outputs = 1,
                   .infer = infer_compare<kEqName>,
                   .reference = compare_reference<EqF>,
                   .fast = compare_fast<EqF>,
                   .attrs = &kNoAttrs};
const OpDef kNotEqual{.name = "not_equal",
                      .num_inputs = 2,
                      .num_outputs = 1,
                      .infer = infer_compare<kNeName>,
                      .reference = compare_reference<NeF>,
                      .fast = compare_fast<NeF>,
                      .attrs = &kNoAttrs};
const OpDef kLess{.name = "less",
                  .num_inputs = 2,
                  .num_outputs = 1,
                  .infer = infer_compare<kLtName>,
                  .reference = compare_reference<LtF>,
                  .fast = compare_fast<LtF>,
                  .attrs = &kNoAttrs};
const OpDef kLessEqual{.name = "less_equal",
                       .num_inputs = 2,
                       .num_outputs = 1,
                       .infer = infer_compare<kLeName>,
                       .reference = compare_reference<LeF>,
                       .fast = compare_fast<LeF>,
                       .attrs = &kNoAttrs};
const OpDef kGreater{.name = "greater",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = infer_compare<kGtName>,
                     .reference = compare_reference<GtF>,
                     .fast = compare_fast<GtF>,
                     .attrs = &kNoAttrs};
const OpDef kGreaterEqual{.name = "greater_equal",
                          .num_inputs = 2,
                          .num_outputs = 1,
                          .infer = infer_compare<kGeName>,
                          .reference = compare_reference<GeF>,
                          .fast = compare_fast<GeF>,
                          .attrs = &kNoAttrs};
const OpDef kNeg{.name = "neg",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = infer_unary<kNegName, false>,
                 .reference = unary_kernel<NegF, false>,
                 .grad = neg_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kUnaryFn<NegF>};
const OpDef kExp{.name = "exp",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = infer_unary<kExpName, true>,
                 .reference = unary_kernel<ExpF, true>,
                 .grad = exp_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kUnaryFn<ExpF>};
const OpDef kLog{.name = "log",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = infer_unary<kLogName, true>,
                 .reference = unary_kernel<LogF, true>,
                 .grad = log_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kUnaryFn<LogF>};
const OpDef kSqrt{.name = "sqrt",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = infer_unary<kSqrtName, true>,
                  .reference = unary_kernel<SqrtF, true>,
                  .grad = sqrt_grad,
                  .attrs = &kNoAttrs,
                  .elementwise = &kUnaryFn<SqrtF>};
const OpDef kAbs{.name = "abs",
                 .num_inputs = 1,
                 .num_outputs = 1,
                 .infer = infer_unary<kAbsName, false>,
                 .reference = unary_kernel<AbsF, false>,
                 .grad = abs_grad,
                 .attrs = &kNoAttrs,
                 .elementwise = &kUnaryFn<AbsF>};
const OpDef kSquare{.name = "square",
                    .num_inputs = 1,
                    .num_outputs = 1,
                    .infer = infer_unary<kSquareName, false>,
                    .reference = unary_kernel<SquareF, false>,
                    .grad = square_grad,
                    .attrs = &kNoAttrs,
                    .elementwise = &kUnaryFn<SquareF>};
const OpDef kWhere{.name = "where",
                   .num_inputs = 3,
                   .num_outputs = 1,
                   .infer = where_infer,
                   .reference = where_reference,
                   .fast = where_fast,
                   .grad = where_grad,
                   .attrs = &kNoAttrs};
const OpDef kCast{.name = "cast",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = cast_infer,
                  .reference = cast_reference,
                  .grad = cast_grad,
                  .attrs = &kCastAttrs};
const OpDef kBroadcastTo{.name = "broadcast_to",
                         .num_inputs = 1,
                         .num_outputs = 1,
                         .infer = broadcast_to_infer,
                         .reference = broadcast_to_reference,
                         .fast = broadcast_to_fast,
                         .grad = broadcast_to_grad,
                         .attrs = &kTargetShapeAttrs};
const OpDef kSumTo{.name = "sum_to",
                   .num_inputs = 1,
                   .num_outputs = 1,
                   .infer = sum_to_infer,
                   .reference = sum_to_reference,
                   .fast = sum_to_fast,
                   .grad = sum_to_grad,
                   .attrs = &kTargetShapeAttrs};
const OpDef kBroadcastLike{.name = "broadcast_like",
                           .num_inputs = 2,
                           .num_outputs = 1,
                           .infer = broadcast_like_infer,
                           .reference = broadcast_to_reference,
                           .fast = broadcast_to_fast,
                           .grad = broadcast_like_grad,
                           .attrs = &kNoAttrs,
                           .shape_only_inputs = 1u << 1};
const OpDef kSumToLike{.name = "sum_to_like",
                       .num_inputs = 2,
                       .num_outputs = 1,
                       .infer = sum_to_like_infer,
                       .reference = sum_to_reference,
                       .fast = sum_to_fast,
                       .grad = sum_to_like_grad,
                       .attrs = &kNoAttrs,
                       .shape_only_inputs = 1u << 1};
const OpDef kCopy{.name = "copy",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = identity_infer,
                  .reference = copy_reference,
                  .grad = copy_grad,
                  .attrs = &kNoAttrs};
const OpDef kStopGradient{.name = "stop_gradient",
                          .num_inputs = 1,
                          .num_outputs = 1,
                          .infer = identity_infer,
                          .reference = copy_reference,
                          .flags = kNotDifferentiable,
                          .attrs = &kNoAttrs};

Tensor broadcast_like(const Tensor& x, const Tensor& like) {
  if (x.defined() && like.defined() && x.shape() == like.shape()) return x;
  return run_op(kBroadcastLike, {x, like});
}
Tensor sum_to_like(const Tensor& x, const Tensor& like) {
  if (x.defined() && like.defined() && x.shape() == like.shape()) return x;
  return run_op(kSumToLike, {x, like});
}
}  // namespace ops

Tensor add(const Tensor& a, const Tensor& b) { return run_op(ops::kAdd, {a, b}); }
Tensor sub(const Tensor& a, const Tensor& b) { return run_op(ops::kSub, {a, b}); }
Tensor mul(const Tensor& a, const Tensor& b) { return run_op(ops::kMul, {a, b}); }
Tensor div(const Tensor& a, const Tensor& b) { return run_op(ops::kDiv, {a, b}); }
Tensor pow(const Tensor& a, const Tensor& b) { return run_op(ops::kPow, {a, b}); }
Tensor maximum(const Tensor& a, const Tensor& b) { return run_op(ops::kMaximum, {a, b}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return run_op(ops::kMinimum, {a, b}); }
Tensor equal(const Tensor& a, const Tensor& b) { return run_op(ops::kEqual, {a, b}); }
Tensor not_equal(const Tensor& a, const Tensor& b) { return run_op(ops::kNotEqual, {a, b}); }
Tensor less(const Tensor& a, const Tensor& b) { return run_op(ops::kLess, {a, b}); }
Tensor less_equal(const Tensor& a, const Tensor& b) { return run_op(ops::kLessEqual, {a, b}); }
Tensor greater(const Tensor& a, const Tensor& b) { return run_op(ops::kGreater, {a, b}); }
Tensor greater_equal(const Tensor& a, const Tensor& b) {
  return run_op(ops::kGreaterEqual, {a, b});
}
Tensor neg(const Tensor& x) { return run_op(ops::kNeg, {x}); }
Tensor exp(const Tensor& x) { return run_op(ops::kExp, {x}); }
Tensor log(const Tensor& x) { return run_op(ops::kLog, {x}); }
Tensor sqrt(const Tensor& x) { return run_op(ops::kSqrt, {x}); }
Tensor abs(const Tensor& x) { return run_op(ops::kAbs, {x}); }
Tensor square(const Tensor& x) { return run_op(ops::kSquare, {x}); }
Tensor where(const Tensor& c, const Tensor& a, const Tensor& b) {
  return run_op(ops::kWhere, {c, a, b});
}
Tensor cast(const Tensor& x, DType dtype) {
  if (x.defined() && x.dtype() == dtype) return x;
  return run_op(ops::kCast, {x}, Attrs{static_cast<int64_t>(dtype)});
}
Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.defined() && x.shape() == shape) return x;
  return run_op(ops::kBroadcastTo, {x}, shape_attrs(shape));
}
Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.defined() && x.shape() == shape) return x;
  return run_op(ops::kSumTo, {x}, shape_attrs(shape));
}
Tensor scalar_like(double value, const Tensor& like) { return scalar(value, like.dtype()); }

Tensor Tensor::clone() const {
  if (!impl_) throw StateError("clone: the tensor is undefined");
  return run_op(ops::kCopy, {*this});
}

}  // namespace kiln
