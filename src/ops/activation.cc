// Activations: relu, leaky_relu, gelu, sigmoid, tanh, softmax, log_softmax, plus the internal
// gradient ops relu_grad, leaky_relu_grad and gelu_grad (inputs: upstream gradient g, then x).
// Floating dtypes only. Fast kernels cover float32 with vectorizable math (kernels/fast_math.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kernels/fast_math.h"
#include "kernels/vector_clones.h"
#include "kiln/ops.h"
#include "ops/elementwise_fn.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using detail::ptr;
using kernels::exp_f32;
using kernels::parallel_range;
using kernels::tanh_f32;

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2*pi)
constexpr double kGeluC = 0.79788456080286535588;       // sqrt(2/pi), tanh approximation
constexpr double kGeluK = 0.044715;

constexpr char kReluName[] = "relu", kReluGradName[] = "relu_grad", kLeakyName[] = "leaky_relu",
               kLeakyGradName[] = "leaky_relu_grad", kGeluName[] = "gelu",
               kGeluGradName[] = "gelu_grad", kSigmoidName[] = "sigmoid", kTanhName[] = "tanh",
               kSoftmaxName[] = "softmax", kLogSoftmaxName[] = "log_softmax";

template <const char* Name>
void infer_unary(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  require_floating(Name, in[0].dtype);
  out[0] = in[0];
}

// Gradient ops take (g, x) of one shape and dtype.
template <const char* Name>
void infer_grad_pair(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  require_floating(Name, in[1].dtype);
  require_same_dtype(Name, in[0].dtype, in[1].dtype);
  if (in[0].shape != in[1].shape) {
    throw ShapeError(std::string(Name) + ": gradient and input shapes " + shapes_str(in) +
                     " differ");
  }
  out[0] = in[1];
}

// ---- pointwise functors ---------------------------------------------------------------------
// Each has ref<T>(x) (the definition, in T) and fast(x) (float32, vectorizable), and is built
// from the op's attrs. Binary ones (the gradient ops) take (g, x).

struct ReluF {
  explicit ReluF(const Attrs&) {}
  template <typename T>
  T ref(T x) const {
    return x < T(0) ? T(0) : x;
  }  // NaN stays NaN
  float fast(float x) const { return x < 0.0f ? 0.0f : x; }
};
struct ReluGradF {
  explicit ReluGradF(const Attrs&) {}
  template <typename T>
  T ref(T g, T x) const {
    return x > T(0) ? g : T(0);
  }
  float fast(float g, float x) const { return x > 0.0f ? g : 0.0f; }
};

// leaky_relu: attrs = {floats: alpha}
constexpr AttrField kAlphaFields[] = {{"alpha", AttrType::kFloat}};
constexpr AttrSchema kAlphaAttrs{kAlphaFields};
struct LeakyF {
  double alpha;
  explicit LeakyF(const Attrs& a) : alpha(a.f(0)) {}
  template <typename T>
  T ref(T x) const {
    return x > T(0) ? x : static_cast<T>(alpha) * x;
  }
  float fast(float x) const { return x > 0.0f ? x : static_cast<float>(alpha) * x; }
};
struct LeakyGradF {
  double alpha;
  explicit LeakyGradF(const Attrs& a) : alpha(a.f(0)) {}
  template <typename T>
  T ref(T g, T x) const {
    return x > T(0) ? g : static_cast<T>(alpha) * g;
  }
  float fast(float g, float x) const { return x > 0.0f ? g : static_cast<float>(alpha) * g; }
};

// erfc for float32 (Numerical Recipes' erfcc: fractional error < 1.2e-7 everywhere).
inline float erfc_f32(float z) {
  float a = z < 0 ? -z : z;
  float t = 1.0f / (1.0f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float q = t * exp_f32(p - a * a);
  return z < 0 ? 2.0f - q : q;
}

// gelu: attrs = {approximate}. Exact: x * Phi(x) with Phi(x) = erfc(-x/sqrt2)/2 (the erfc form
// keeps precision for negative x). Approximate: x/2 * (1 + tanh(u)), u = c(x + k x^3), computed
// as x * sigmoid(2u) in the fast kernel, which does not cancel for negative x. References of
// transcendental functions compute in double, so they are the truth for float32 too.
constexpr AttrField kGeluFields[] = {{"approximate", AttrType::kBool}};
constexpr AttrSchema kGeluAttrs{kGeluFields};

template <bool kFastApprox = false>
struct GeluF {
  bool approximate;
  explicit GeluF(const Attrs& a) : approximate(a.i(0) != 0) {}
  template <typename T>
  T ref(T xt) const {
    const double x = xt;
    if (approximate)
      return static_cast<T>(0.5 * x * (1 + std::tanh(kGeluC * (x + kGeluK * x * x * x))));
    return static_cast<T>(0.5 * x * std::erfc(-x * kSqrt1_2));
  }
  // The fast form is fixed at compile time (see unary_fast_gelu).
  float fast(float x) const {
    if constexpr (kFastApprox) {
      float u = float(kGeluC) * (x + float(kGeluK) * x * x * x);
      return x / (1.0f + exp_f32(-2.0f * u));
    }
    return 0.5f * x * erfc_f32(-x * float(kSqrt1_2));
  }
};
// d gelu / dx. Exact: Phi(x) + x pdf(x). Approximate: (1+t)/2 + x/2 (1-t^2) u'(x), t = tanh(u);
// the fast kernel writes (1+t)/2 = sigmoid(2u) and 1-t^2 = 4e/(1+e)^2 with e = exp(-2|u|), which
// stay accurate where t rounds to +-1.
template <bool kFastApprox = false>
struct GeluGradF {
  bool approximate;
  explicit GeluGradF(const Attrs& a) : approximate(a.i(0) != 0) {}
  template <typename T>
  T ref(T gt, T xt) const {
    const double g = gt, x = xt;
    if (approximate) {
      double t = std::tanh(kGeluC * (x + kGeluK * x * x * x));
      double du = kGeluC * (1 + 3 * kGeluK * x * x);
      return static_cast<T>(g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du));
    }
    double cdf = 0.5 * std::erfc(-x * kSqrt1_2);
    return static_cast<T>(g * (cdf + x * kInvSqrt2Pi * std::exp(-0.5 * x * x)));
  }
  float fast(float g, float x) const {
    if constexpr (kFastApprox) {
      float u = float(kGeluC) * (x + float(kGeluK) * x * x * x);
      float e = exp_f32(-2.0f * (u < 0 ? -u : u));
      float s = 1.0f / (1.0f + e);
      float half_1pt = u < 0 ? e * s : s;
      float sech2 = 4.0f * e * s * s;
      float du = float(kGeluC) * (1.0f + float(3 * kGeluK) * x * x);
      return g * (half_1pt + 0.5f * x * sech2 * du);
    }
    float cdf = 0.5f * erfc_f32(-x * float(kSqrt1_2));
    return g * (cdf + x * float(kInvSqrt2Pi) * exp_f32(-0.5f * x * x));
  }
};

// Stable both ways: exp of a non-positive number only.
struct SigmoidF {
  explicit SigmoidF(const Attrs&) {}
  template <typename T>
  T ref(T xt) const {
    const double x = xt;
    if (x >= 0) return static_cast<T>(1 / (1 + std::exp(-x)));
    double e = std::exp(x);
    return static_cast<T>(e / (1 + e));
  }
  float fast(float x) const {
    float e = exp_f32(x < 0 ? x : -x);
    float r = 1.0f / (1.0f + e);
    return x < 0 ? e * r : r;
  }
};
struct TanhF {
  explicit TanhF(const Attrs&) {}
  template <typename T>
  T ref(T x) const {
    return static_cast<T>(std::tanh(static_cast<double>(x)));
  }
  float fast(float x) const { return tanh_f32(x); }
};

// Fast pointwise kernels split work in blocks of 16 elements; kCost is the cost of a block in
// parallel_range units, so memory-bound ops (relu: 1) stay on one thread up to 512K elements
// and transcendental ones go parallel sooner.
constexpr int64_t kBlock = 16;

template <typename F>
void unary_reference(const KernelArgs& k) {
  F f(k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = ptr<T>(k.in[0]);
    T* o = ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.in[0].numel(); i < n; ++i) o[i] = f.template ref<T>(x[i]);
  });
}
// The fast loops, out of the lambdas so they can be multiversioned (vector_clones.h).
template <typename F>
KILN_VECTOR_CLONES void unary_loop(const F& f, const float* x, float* o, int64_t i, int64_t end) {
  for (; i < end; ++i) o[i] = f.fast(x[i]);
}
template <typename F>
KILN_VECTOR_CLONES void binary_loop(const F& f, const float* g, const float* x, float* o, int64_t i,
                                    int64_t end) {
  for (; i < end; ++i) o[i] = f.fast(g[i], x[i]);
}
template <typename F, int kCost>
bool unary_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  const F f(k.attrs);
  const float* x = ptr<float>(k.in[0]);
  float* o = ptr<float>(k.out[0]);
  const int64_t n = k.in[0].numel();
  parallel_range((n + kBlock - 1) / kBlock, kCost, [&](int64_t b, int64_t e) {
    unary_loop(f, x, o, b * kBlock, std::min(n, e * kBlock));
  });
  return true;
}
template <typename F>
void binary_reference(const KernelArgs& k) {
  F f(k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* g = ptr<T>(k.in[0]);
    const T* x = ptr<T>(k.in[1]);
    T* o = ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.in[0].numel(); i < n; ++i) o[i] = f.template ref<T>(g[i], x[i]);
  });
}
template <typename F, int kCost>
bool binary_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  const F f(k.attrs);
  const float* g = ptr<float>(k.in[0]);
  const float* x = ptr<float>(k.in[1]);
  float* o = ptr<float>(k.out[0]);
  const int64_t n = k.in[0].numel();
  parallel_range((n + kBlock - 1) / kBlock, kCost, [&](int64_t b, int64_t e) {
    binary_loop(f, g, x, o, b * kBlock, std::min(n, e * kBlock));
  });
  return true;
}
// gelu's two forms as separate instantiations, so each loop is branch-free and vectorizes.
template <template <bool> class F, int kCost>
bool unary_fast_gelu(const KernelArgs& k) {
  return k.attrs.i(0) != 0 ? unary_fast<F<true>, kCost>(k) : unary_fast<F<false>, kCost>(k);
}
template <template <bool> class F, int kCost>
bool binary_fast_gelu(const KernelArgs& k) {
  return k.attrs.i(0) != 0 ? binary_fast<F<true>, kCost>(k) : binary_fast<F<false>, kCost>(k);
}

// ---- gradient rules -------------------------------------------------------------------------

Tensor relu_grad(const Tensor& g, const Tensor& x) { return run_op(ops::kReluGrad, {g, x}); }
Tensor leaky_relu_grad(const Tensor& g, const Tensor& x, const Attrs& a) {
  return run_op(ops::kLeakyReluGrad, {g, x}, a);
}
Tensor gelu_grad(const Tensor& g, const Tensor& x, const Attrs& a) {
  return run_op(ops::kGeluGrad, {g, x}, a);
}

// The mask from the output (y > 0 exactly where x > 0), as PyTorch's threshold_backward: x is
// then read only by relu, so a graph can fuse the op producing x with the relu.
void relu_grad_rule(const GradArgs& g) { g.grad_in[0] = relu_grad(g.grad_out[0], g.out[0]); }
// relu_grad is linear in g and piecewise constant in x: d/dx is 0 almost everywhere.
void relu_grad_grad(const GradArgs& g) { g.grad_in[0] = relu_grad(g.grad_out[0], g.in[1]); }
void leaky_grad_rule(const GradArgs& g) {
  g.grad_in[0] = leaky_relu_grad(g.grad_out[0], g.in[0], g.attrs);
}
void leaky_grad_grad(const GradArgs& g) {
  g.grad_in[0] = leaky_relu_grad(g.grad_out[0], g.in[1], g.attrs);
}
void gelu_grad_rule(const GradArgs& g) {
  g.grad_in[0] = gelu_grad(g.grad_out[0], g.in[0], g.attrs);
}
// Second derivative of gelu, for gradients of gradients. Exact: pdf(x) (2 - x^2).
// Approximate: s u' + x/2 s (u'' - 2 t u'^2), with t = tanh(u), s = 1 - t^2.
void gelu_grad_grad(const GradArgs& g) {
  const Tensor &up = g.in[0], &x = g.in[1], &gg = g.grad_out[0];
  g.grad_in[0] = gelu_grad(gg, x, g.attrs);
  Tensor x2 = square(x);
  Tensor second;
  if (g.attrs.i(0) != 0) {
    Tensor t = tanh((x + x * x2 * kGeluK) * kGeluC);
    Tensor s = 1.0 - square(t);
    Tensor du = (x2 * (3 * kGeluK) + 1.0) * kGeluC;
    Tensor ddu = x * (6 * kGeluK * kGeluC);
    second = s * du + x * s * (ddu - t * square(du) * 2.0) * 0.5;
  } else {
    second = exp(x2 * -0.5) * kInvSqrt2Pi * (2.0 - x2);
  }
  g.grad_in[1] = gg * up * second;
}
void sigmoid_grad(const GradArgs& g) {
  const Tensor& y = g.out[0];
  g.grad_in[0] = g.grad_out[0] * (y * (1.0 - y));
}
void tanh_grad(const GradArgs& g) { g.grad_in[0] = g.grad_out[0] * (1.0 - square(g.out[0])); }

// ---- softmax and log_softmax: attrs = {axis} ------------------------------------------------

constexpr AttrField kAxisFields[] = {{"axis", AttrType::kInt}};
constexpr AttrSchema kAxisAttrs{kAxisFields};

template <const char* Name>
void infer_softmax(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_floating(Name, in[0].dtype);
  if (in[0].shape.rank() == 0) {
    throw ShapeError(std::string(Name) + ": needs at least one dim, got shape []");
  }
  normalize_axis(a.i(0), in[0].shape.rank(), Name);
  out[0] = in[0];
}

// The tensor seen as [outer, n, inner] around the axis.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisSplit split_at(const Shape& s, int64_t axis_attr) {
  int axis = normalize_axis(axis_attr, s.rank(), "softmax");
  AxisSplit r;
  for (int d = 0; d < s.rank(); ++d) {
    if (d < axis) r.outer *= s[d];
    if (d == axis) r.n = s[d];
    if (d > axis) r.inner *= s[d];
  }
  return r;
}

template <bool kLog>
void softmax_reference(const KernelArgs& k) {
  AxisSplit sp = split_at(k.in[0].shape(), k.attrs.i(0));
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = ptr<T>(k.in[0]);
    T* o = ptr<T>(k.out[0]);
    for (int64_t a = 0; a < sp.outer; ++a) {
      for (int64_t c = 0; c < sp.inner; ++c) {
        const int64_t base = a * sp.n * sp.inner + c;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < sp.n; ++j) {
          T v = x[base + j * sp.inner];
          m = v > m ? v : m;
        }
        T s = 0;
        for (int64_t j = 0; j < sp.n; ++j) s += std::exp(x[base + j * sp.inner] - m);
        for (int64_t j = 0; j < sp.n; ++j) {
          const int64_t i = base + j * sp.inner;
          o[i] = kLog ? (x[i] - m) - std::log(s) : std::exp(x[i] - m) / s;
        }
      }
    }
  });
}

// kernels::exp_rows_f32, multiversioned (vector_clones.h).
KILN_VECTOR_CLONES void exp_rows(const float* x, int64_t rows, int64_t n, float* m, float* e,
                                 float* s) {
  kernels::exp_rows_f32(x, rows, n, m, e, s);
}

// float32. The last axis (inner == 1) works row by row; other axes vectorize across `inner`
// with per-column running max and sum.
template <bool kLog>
bool softmax_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  AxisSplit sp = split_at(k.in[0].shape(), k.attrs.i(0));
  const float* x = ptr<float>(k.in[0]);
  float* o = ptr<float>(k.out[0]);
  const int64_t n = sp.n, inner = sp.inner;
  if (inner == 1) {
    parallel_range(sp.outer, n, [&](int64_t b, int64_t e) {
      const int64_t block = kernels::rows_per_block(n);
      std::vector<float> mv(block), sv(block), scratch(kLog ? block * n : 0);
      for (int64_t r0 = b; r0 < e; r0 += block) {
        const int64_t rows = std::min(block, e - r0);
        const float* xb = x + r0 * n;
        float* yb = o + r0 * n;
        exp_rows(xb, rows, n, mv.data(), kLog ? scratch.data() : yb, sv.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = xb + r * n;
          float* yr = yb + r * n;
          if (kLog) {
            const float m = mv[r], ls = std::log(sv[r]);
            for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) - ls;
          } else {
            const float inv = 1.0f / sv[r];
            for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
          }
        }
      }
    });
    return true;
  }
  parallel_range(sp.outer, n * inner, [&](int64_t b, int64_t e) {
    std::vector<float> mv(inner), sv(inner);
    float *m = mv.data(), *s = sv.data();
    for (int64_t a = b; a < e; ++a) {
      const float* xa = x + a * n * inner;
      float* ya = o + a * n * inner;
      for (int64_t c = 0; c < inner; ++c) {
        m[c] = -std::numeric_limits<float>::infinity();
        s[c] = 0.0f;
      }
      for (int64_t j = 0; j < n; ++j) {
        const float* row = xa + j * inner;
        for (int64_t c = 0; c < inner; ++c) m[c] = row[c] > m[c] ? row[c] : m[c];
      }
      for (int64_t j = 0; j < n; ++j) {
        const float* row = xa + j * inner;
        float* yrow = ya + j * inner;
        for (int64_t c = 0; c < inner; ++c) {
          float v = exp_f32(row[c] - m[c]);
          if (!kLog) yrow[c] = v;
          s[c] += v;
        }
      }
      for (int64_t c = 0; c < inner; ++c) s[c] = kLog ? std::log(s[c]) : 1.0f / s[c];
      for (int64_t j = 0; j < n; ++j) {
        const float* row = xa + j * inner;
        float* yrow = ya + j * inner;
        for (int64_t c = 0; c < inner; ++c) {
          yrow[c] = kLog ? (row[c] - m[c]) - s[c] : yrow[c] * s[c];
        }
      }
    }
  });
  return true;
}

// y = softmax(x): dx = y * (g - sum(g * y, axis)).
void softmax_grad(const GradArgs& g) {
  const Tensor &y = g.out[0], &up = g.grad_out[0];
  int axis = static_cast<int>(g.attrs.i(0));
  g.grad_in[0] = y * (up - sum(up * y, {axis}, true));
}
// y = log_softmax(x): dx = g - exp(y) * sum(g, axis).
void log_softmax_grad(const GradArgs& g) {
  const Tensor &y = g.out[0], &up = g.grad_out[0];
  int axis = static_cast<int>(g.attrs.i(0));
  g.grad_in[0] = up - exp(y) * sum(up, {axis}, true);
}

}  // namespace

namespace ops {
const OpDef kRelu{.name = "relu",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = infer_unary<kReluName>,
                  .reference = unary_reference<ReluF>,
                  .fast = unary_fast<ReluF, 1>,
                  .grad = relu_grad_rule,
                  .attrs = &kNoAttrs,
                  .elementwise = &kUnaryFn<ReluF>};
const OpDef kReluGrad{.name = "relu_grad",
                      .num_inputs = 2,
                      .num_outputs = 1,
                      .infer = infer_grad_pair<kReluGradName>,
                      .reference = binary_reference<ReluGradF>,
                      .fast = binary_fast<ReluGradF, 2>,
                      .grad = relu_grad_grad,
                      .flags = kLinearInInput0,
                      .attrs = &kNoAttrs,
                      .elementwise = &kBinaryFn<ReluGradF>};
const OpDef kLeakyRelu{.name = "leaky_relu",
                       .num_inputs = 1,
                       .num_outputs = 1,
                       .infer = infer_unary<kLeakyName>,
                       .reference = unary_reference<LeakyF>,
                       .fast = unary_fast<LeakyF, 1>,
                       .grad = leaky_grad_rule,
                       .attrs = &kAlphaAttrs};
const OpDef kLeakyReluGrad{.name = "leaky_relu_grad",
                           .num_inputs = 2,
                           .num_outputs = 1,
                           .infer = infer_grad_pair<kLeakyGradName>,
                           .reference = binary_reference<LeakyGradF>,
                           .fast = binary_fast<LeakyGradF, 2>,
                           .grad = leaky_grad_grad,
                           .attrs = &kAlphaAttrs};
const OpDef kGelu{.name = "gelu",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = infer_unary<kGeluName>,
                  .reference = unary_reference<GeluF<>>,
                  .fast = unary_fast_gelu<GeluF, 12>,
                  .grad = gelu_grad_rule,
                  .attrs = &kGeluAttrs};
const OpDef kGeluGrad{.name = "gelu_grad",
                      .num_inputs = 2,
                      .num_outputs = 1,
                      .infer = infer_grad_pair<kGeluGradName>,
                      .reference = binary_reference<GeluGradF<>>,
                      .fast = binary_fast_gelu<GeluGradF, 16>,
                      .grad = gelu_grad_grad,
                      .attrs = &kGeluAttrs};
const OpDef kSigmoid{.name = "sigmoid",
                     .num_inputs = 1,
                     .num_outputs = 1,
                     .infer = infer_unary<kSigmoidName>,
                     .reference = unary_reference<SigmoidF>,
                     .fast = unary_fast<SigmoidF, 6>,
                     .grad = sigmoid_grad,
                     .attrs = &kNoAttrs,
                     .elementwise = &kUnaryFn<SigmoidF>};
const OpDef kTanh{.name = "tanh",
                  .num_inputs = 1,
                  .num_outputs = 1,
                  .infer = infer_unary<kTanhName>,
                  .reference = unary_reference<TanhF>,
                  .fast = unary_fast<TanhF, 8>,
                  .grad = tanh_grad,
                  .attrs = &kNoAttrs,
                  .elementwise = &kUnaryFn<TanhF>};
const OpDef kSoftmax{.name = "softmax",
                     .num_inputs = 1,
                     .num_outputs = 1,
                     .infer = infer_softmax<kSoftmaxName>,
                     .reference = softmax_reference<false>,
                     .fast = softmax_fast<false>,
                     .grad = softmax_grad,
                     .attrs = &kAxisAttrs};
const OpDef kLogSoftmax{.name = "log_softmax",
                        .num_inputs = 1,
                        .num_outputs = 1,
                        .infer = infer_softmax<kLogSoftmaxName>,
                        .reference = softmax_reference<true>,
                        .fast = softmax_fast<true>,
                        .grad = log_softmax_grad,
                        .attrs = &kAxisAttrs};
}  // namespace ops

Tensor relu(const Tensor& x) { return run_op(ops::kRelu, {x}); }
Tensor leaky_relu(const Tensor& x, double alpha) {
  return run_op(ops::kLeakyRelu, {x}, Attrs().add_float(alpha));
}
Tensor gelu(const Tensor& x, bool approximate) {
  return run_op(ops::kGelu, {x}, Attrs{approximate ? 1 : 0});
}
Tensor sigmoid(const Tensor& x) { return run_op(ops::kSigmoid, {x}); }
Tensor tanh(const Tensor& x) { return run_op(ops::kTanh, {x}); }
Tensor softmax(const Tensor& x, int axis) { return run_op(ops::kSoftmax, {x}, Attrs{axis}); }
Tensor log_softmax(const Tensor& x, int axis) { return run_op(ops::kLogSoftmax, {x}, Attrs{axis}); }

}  // namespace kiln
