// Optimizer updates as stateful ops: each writes a variable (input 0) and its slots in place
// in one fused pass and bumps their versions. The learning rate (float64 scalar) and the step
// count (int64 scalar, steps done before this one) are inputs, not attributes, so a traced
// train step reads their current values on every call and never retraces for them.
//
// Coefficients are computed once per call in double and cast to the variable's type, so the
// inner loops are plain float arithmetic the compiler vectorizes.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "core/tensor_impl.h"
#include "kernels/broadcast.h"
#include "kiln/error.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using detail::ptr;

// Runs fn(T{}) with the variable's element type (float32 or float64; checked by infer).
template <typename Fn>
void with_float_type(DType dt, Fn&& fn) {
  if (dt == DType::kFloat32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

// Updates are memory-bound and a few flops per element: a second thread pays off from about
// 16 Ki elements (measured on the mlp's Adam step: 1 << 14 against 1 << 18, 0.213 against
// 0.246 ms per graph-mode step, 2 threads, Zen 4); below that the team costs more than the loop.
constexpr int64_t kMinParallel = int64_t{1} << 14;

template <typename Fn>
void for_elements(int64_t n, Fn&& fn) {
  if (n < kMinParallel) {
    fn(int64_t{0}, n);
  } else {
    kernels::parallel_range(n, kernels::kParallelThreshold, fn);
  }
}

// p[i] = sqrt(p[i]). Without -fno-math-errno GCC keeps std::sqrt scalar (errno handling adds
// a branch), so vectorize by hand where the target has the instructions.
template <typename T>
void sqrt_inplace(T* p, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(p + i, _mm512_sqrt_ps(_mm512_loadu_ps(p + i)));
  } else {
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(p + i, _mm512_sqrt_pd(_mm512_loadu_pd(p + i)));
  }
#elif defined(__AVX__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, _mm256_sqrt_ps(_mm256_loadu_ps(p + i)));
  } else {
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(p + i, _mm256_sqrt_pd(_mm256_loadu_pd(p + i)));
  }
#endif
  for (; i < n; ++i) p[i] = std::sqrt(p[i]);
}

// Rules that need a square root run in L1-sized chunks: a vectorized pass computing the
// moments (and the values to take roots of), the root pass, then the vectorized weight pass.
constexpr int64_t kChunk = 512;

// Checks the tensors of an update: `n_like` inputs shaped like the variable (input 0), then
// the learning rate and (when has_step) the step count as scalars.
void check_update(const char* op, std::span<const Meta> in, std::span<const int> like, int lr_at,
                  int step_at) {
  const Meta& w = in[0];
  if (w.dtype != DType::kFloat32 && w.dtype != DType::kFloat64) {
    throw DTypeError(std::string(op) + ": the variable has dtype " +
                     std::string(dtype_name(w.dtype)) + "; only float32/float64 train");
  }
  for (int k : like) {
    if (in[k].shape != w.shape || in[k].dtype != w.dtype) {
      throw ShapeError(std::string(op) + ": input " + std::to_string(k) + " is " +
                       to_string(in[k].shape) + " " + std::string(dtype_name(in[k].dtype)) +
                       ", the variable " + to_string(w.shape) + " " +
                       std::string(dtype_name(w.dtype)));
    }
  }
  if (in[lr_at].dtype != DType::kFloat64 || in[lr_at].shape.rank() != 0) {
    throw DTypeError(std::string(op) + ": the learning rate must be a float64 scalar");
  }
  if (step_at >= 0 && (in[step_at].dtype != DType::kInt64 || in[step_at].shape.rank() != 0)) {
    throw DTypeError(std::string(op) + ": the step count must be an int64 scalar");
  }
}

void bump(std::span<const Tensor> written) {
  for (const Tensor& t : written) t.impl()->version.fetch_add(1, std::memory_order_relaxed);
}

// ---- sgd_update(w, g, lr [, m]): attrs = {ints: nesterov, floats: momentum} -----------------
// Keras SGD: w -= lr g; with momentum m = mu m - lr g and w += m (nesterov: w += mu m - lr g).

void sgd_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  if (in.size() != 3 && in.size() != 4) throw ValueError("sgd_update: needs 3 or 4 inputs");
  const int like3[] = {1}, like4[] = {1, 3};
  check_update("sgd_update", in, in.size() == 4 ? std::span<const int>(like4) : like3, 2, -1);
}

void sgd_reference(const KernelArgs& k) {
  const Tensor& value = k.in[0];
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = ptr<T>(value);
    const T* g = ptr<T>(k.in[1]);
    const T lr = static_cast<T>(k.in[2].item<double>());
    if (k.in.size() == 3) {
      for_elements(value.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) w[i] -= lr * g[i];
      });
      return;
    }
    T* m = ptr<T>(k.in[3]);
    const T mu = static_cast<T>(k.attrs.f(0));
    const bool nesterov = k.attrs.i(0) != 0;
    for_elements(value.numel(), [&](int64_t b, int64_t e) {
      if (nesterov) {
        for (int64_t i = b; i < e; ++i) {
          T mi = mu * m[i] - lr * g[i];
          m[i] = mi;
          w[i] += mu * mi - lr * g[i];
        }
      } else {
        for (int64_t i = b; i < e; ++i) {
          T mi = mu * m[i] - lr * g[i];
          m[i] = mi;
          w[i] += mi;
        }
      }
    });
  });
  bump(k.in.subspan(0, 1));
  if (k.in.size() == 4) bump(k.in.subspan(3, 1));
}

// ---- adam_update(w, m, v, g, lr, step): attrs = {floats: beta_1, beta_2, epsilon, decay} ------
// Keras Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// w = w (1 - decay lr) - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), t = step + 1.
// decay > 0 is AdamW's decoupled weight decay, fused into the same pass.

void adam_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  const int like[] = {1, 2, 3};
  check_update("adam_update", in, like, 4, 5);
}

void adam_reference(const KernelArgs& k) {
  const Tensor& value = k.in[0];
  const double b1 = k.attrs.f(0), b2 = k.attrs.f(1), eps_d = k.attrs.f(2), decay = k.attrs.f(3);
  const double lr = k.in[4].item<double>();
  const double t = static_cast<double>(k.in[5].item<int64_t>() + 1);
  const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = ptr<T>(value);
    T* m = ptr<T>(k.in[1]);
    T* v = ptr<T>(k.in[2]);
    const T* g = ptr<T>(k.in[3]);
    const T a = static_cast<T>(alpha), c1 = static_cast<T>(1 - b1), c2 = static_cast<T>(1 - b2),
            eps = static_cast<T>(eps_d), keep = static_cast<T>(1 - decay * lr);
    for_elements(value.numel(), [&](int64_t b, int64_t e) {
      T root[kChunk];
      for (int64_t c = b; c < e; c += kChunk) {
        const int64_t len = std::min(kChunk, e - c);
        T *wc = w + c, *mc = m + c, *vc = v + c;
        const T* gc = g + c;
        for (int64_t j = 0; j < len; ++j) {
          const T gj = gc[j];
          mc[j] += (gj - mc[j]) * c1;
          const T vj = vc[j] + (gj * gj - vc[j]) * c2;
          vc[j] = vj;
          root[j] = vj;
        }
        sqrt_inplace(root, len);
        for (int64_t j = 0; j < len; ++j) wc[j] = wc[j] * keep - a * mc[j] / (root[j] + eps);
      }
    });
  });
  bump(k.in.subspan(0, 3));
}

// ---- rmsprop_update(w, velocity, g, lr [, momentum]): attrs = {floats: rho, momentum, eps} ----
// Keras RMSprop: v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + eps); with momentum
// m = mu m + inc and w -= m, else w -= inc.

void rmsprop_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  if (in.size() != 4 && in.size() != 5) throw ValueError("rmsprop_update: needs 4 or 5 inputs");
  const int like4[] = {1, 2}, like5[] = {1, 2, 4};
  check_update("rmsprop_update", in, in.size() == 5 ? std::span<const int>(like5) : like4, 3, -1);
}

void rmsprop_reference(const KernelArgs& k) {
  const Tensor& value = k.in[0];
  const bool has_momentum = k.in.size() == 5;
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = ptr<T>(value);
    T* vel = ptr<T>(k.in[1]);
    const T* g = ptr<T>(k.in[2]);
    T* mom = has_momentum ? ptr<T>(k.in[4]) : nullptr;
    const T lr = static_cast<T>(k.in[3].item<double>()), rho = static_cast<T>(k.attrs.f(0)),
            c = static_cast<T>(1 - k.attrs.f(0)), eps = static_cast<T>(k.attrs.f(2)),
            mu = static_cast<T>(k.attrs.f(1));
    for_elements(value.numel(), [&](int64_t b, int64_t e) {
      T root[kChunk];
      for (int64_t i = b; i < e; i += kChunk) {
        const int64_t len = std::min(kChunk, e - i);
        T *wk = w + i, *vk = vel + i;
        const T* gk = g + i;
        for (int64_t j = 0; j < len; ++j) {
          const T vj = rho * vk[j] + c * gk[j] * gk[j];
          vk[j] = vj;
          root[j] = vj + eps;
        }
        sqrt_inplace(root, len);
        if (mom) {
          T* mk = mom + i;
          for (int64_t j = 0; j < len; ++j) {
            mk[j] = mu * mk[j] + lr * gk[j] / root[j];
            wk[j] -= mk[j];
          }
        } else {
          for (int64_t j = 0; j < len; ++j) wk[j] -= lr * gk[j] / root[j];
        }
      }
    });
  });
  bump(k.in.subspan(0, 2));
  if (has_momentum) k.in[4].impl()->version.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

constexpr AttrField kSgdFields[] = {{"nesterov", AttrType::kBool}, {"momentum", AttrType::kFloat}};
constexpr AttrSchema kSgdAttrs{kSgdFields};
constexpr AttrField kAdamFields[] = {{"beta_1", AttrType::kFloat},
                                     {"beta_2", AttrType::kFloat},
                                     {"epsilon", AttrType::kFloat},
                                     {"decay", AttrType::kFloat}};
constexpr AttrSchema kAdamAttrs{kAdamFields};
constexpr AttrField kRmspropFields[] = {
    {"rho", AttrType::kFloat}, {"momentum", AttrType::kFloat}, {"epsilon", AttrType::kFloat}};
constexpr AttrSchema kRmspropAttrs{kRmspropFields};

namespace ops {
constexpr uint32_t kUpdate = kStateful | kNotDifferentiable;
const OpDef kSgdUpdate{.name = "sgd_update",
                       .num_inputs = -1,
                       .num_outputs = 0,
                       .infer = sgd_infer,
                       .reference = sgd_reference,
                       .flags = kUpdate,
                       .attrs = &kSgdAttrs};
const OpDef kAdamUpdate{.name = "adam_update",
                        .num_inputs = 6,
                        .num_outputs = 0,
                        .infer = adam_infer,
                        .reference = adam_reference,
                        .flags = kUpdate,
                        .attrs = &kAdamAttrs};
const OpDef kRmspropUpdate{.name = "rmsprop_update",
                           .num_inputs = -1,
                           .num_outputs = 0,
                           .infer = rmsprop_infer,
                           .reference = rmsprop_reference,
                           .flags = kUpdate,
                           .attrs = &kRmspropAttrs};
}  // namespace ops

}  // namespace kiln
