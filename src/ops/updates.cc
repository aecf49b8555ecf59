// Optimizer updates as stateful ops: each writes a variable (input 0) and its slots in place
// in one fused pass and bumps their versions. The learning rate (float64 scalar) and the step
// count (int64 scalar, steps done before this one) are inputs, not attributes, so a traced
// train step reads their current values on every call and never retraces for them.
//
// Coefficients are computed once per call in double and cast to the variable's type, so the
// inner loops are plain float arithmetic the compiler vectorizes. The *_multi ops apply one rule
// to several variables in one pass (PyTorch's foreach/fused optimizers); see their section.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include <omp.h>

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

// The per-element SGD rule over [b, e); m null without momentum. Shared by sgd_update and
// sgd_update_multi, so both give the same bits.
template <typename T>
void sgd_range(T* w, const T* g, T* m, T lr, T mu, bool nesterov, int64_t b, int64_t e) {
  if (!m) {
    for (int64_t i = b; i < e; ++i) w[i] -= lr * g[i];
  } else if (nesterov) {
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
}

void sgd_reference(const KernelArgs& k) {
  const Tensor& value = k.in[0];
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = ptr<T>(value);
    const T* g = ptr<T>(k.in[1]);
    T* m = k.in.size() == 4 ? ptr<T>(k.in[3]) : nullptr;
    const T lr = static_cast<T>(k.in[2].item<double>());
    const T mu = static_cast<T>(k.attrs.f(0));
    const bool nesterov = k.attrs.i(0) != 0;
    for_elements(value.numel(),
                 [&](int64_t b, int64_t e) { sgd_range(w, g, m, lr, mu, nesterov, b, e); });
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

// Adam's coefficients for one call, computed once in double.
struct AdamCoeffs {
  double alpha, c1, c2, eps, keep;
};
AdamCoeffs adam_coeffs(const Attrs& attrs, double lr, int64_t step) {
  const double b1 = attrs.f(0), b2 = attrs.f(1);
  const double t = static_cast<double>(step + 1);
  return {lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t)), 1 - b1, 1 - b2, attrs.f(2),
          1 - attrs.f(3) * lr};
}

// The per-element Adam rule over [b, e), shared by adam_update and adam_update_multi.
template <typename T>
void adam_range(T* w, T* m, T* v, const T* g, const AdamCoeffs& k, int64_t b, int64_t e) {
  const T a = static_cast<T>(k.alpha), c1 = static_cast<T>(k.c1), c2 = static_cast<T>(k.c2),
          eps = static_cast<T>(k.eps), keep = static_cast<T>(k.keep);
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
}

void adam_reference(const KernelArgs& k) {
  const Tensor& value = k.in[0];
  const AdamCoeffs coeffs = adam_coeffs(k.attrs, k.in[4].item<double>(), k.in[5].item<int64_t>());
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = ptr<T>(value);
    T* m = ptr<T>(k.in[1]);
    T* v = ptr<T>(k.in[2]);
    const T* g = ptr<T>(k.in[3]);
    for_elements(value.numel(),
                 [&](int64_t b, int64_t e) { adam_range(w, m, v, g, coeffs, b, e); });
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

// The per-element RMSprop rule over [b, e); mom null without momentum. Shared by
// rmsprop_update and rmsprop_update_multi.
template <typename T>
void rmsprop_range(T* w, T* vel, const T* g, T* mom, T lr, T rho, T c, T eps, T mu, int64_t b,
                   int64_t e) {
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
      rmsprop_range(w, vel, g, mom, lr, rho, c, eps, mu, b, e);
    });
  });
  bump(k.in.subspan(0, 2));
  if (has_momentum) k.in[4].impl()->version.fetch_add(1, std::memory_order_relaxed);
}

// ---- multi-tensor updates: one op, one pass over many variables -------------------------------
// adam_update_multi(w_0, m_0, v_0, g_0, ..., lr, step)     attrs as adam_update
// sgd_update_multi(w_0, g_0 [, m_0], ..., lr)               attrs = {nesterov, momentum_slot,
//                                                            floats: momentum}
// rmsprop_update_multi(w_0, vel_0, g_0 [, mom_0], ..., lr)  attrs = {momentum_slot, floats:
//                                                            rho, momentum, epsilon}
// Each group is one variable with its gradient and slots, in the single-variable op's order
// (minus the scalars, which come last). The kernel splits the concatenated elements of every
// group evenly across threads in one parallel region (small variables no longer run alone,
// and a step forks once per op instead of once per large variable), and applies the same
// per-element code as the single-variable op: the results are bit-for-bit the same. An op
// takes at most 16 inputs (the dispatcher's limit), so an optimizer uses as many ops as it
// needs (kMaxGroups below).

// The groups of a multi-tensor op: `width` tensors each, before `tail` scalars.
struct Groups {
  int width, count;
};

// Checks a multi-tensor op's inputs: groups of `width` (the variable first, then slots and
// the gradient, every one shaped like the variable), then the learning rate and, when
// has_step, the step count.
Groups check_groups(const char* op, std::span<const Meta> in, int width, bool has_step) {
  const int tail = has_step ? 2 : 1;
  const int n = static_cast<int>(in.size()) - tail;
  if (n < width || n % width != 0) {
    throw ValueError(std::string(op) + ": needs groups of " + std::to_string(width) +
                     " tensors then " +
                     (has_step ? "the learning rate and step" : "the learning rate") + ", got " +
                     std::to_string(in.size()) + " inputs");
  }
  int like[4];
  for (int k = 1; k < width; ++k) like[k - 1] = k;
  Meta group[6];
  for (int first = 0; first < n; first += width) {
    for (int k = 0; k < width; ++k) group[k] = in[first + k];
    group[width] = in[n];
    if (has_step) group[width + 1] = in[n + 1];
    try {
      check_update(op, std::span<const Meta>(group, width + tail),
                   std::span<const int>(like, width - 1), width, has_step ? width + 1 : -1);
    } catch (const Error& e) {
      const std::string what = e.what();
      const std::string where = std::string(op) + ": group " + std::to_string(first / width) +
                                " (inputs " + std::to_string(first) + ".." +
                                std::to_string(first + width - 1) +
                                "):" + what.substr(std::string(op).size() + 1);
      if (dynamic_cast<const DTypeError*>(&e)) throw DTypeError(where);
      throw ShapeError(where);
    }
  }
  return {width, n / width};
}

// Calls fn(group, begin, end) over every group's elements: all of them on this thread when
// the total is small, else the concatenation split evenly across the threads of one region.
template <typename Fn>
void for_groups(std::span<const Tensor> in, Groups gr, Fn&& fn) {
  int64_t sizes[16], total = 0;
  for (int k = 0; k < gr.count; ++k) total += sizes[k] = in[k * gr.width].numel();
  auto run = [&](int64_t b, int64_t e) {  // [b, e) of the concatenation
    int64_t start = 0;
    for (int k = 0; k < gr.count && start < e; start += sizes[k], ++k) {
      const int64_t lo = std::max(b, start), hi = std::min(e, start + sizes[k]);
      if (lo < hi) fn(k, lo - start, hi - start);
    }
  };
  if (total < kMinParallel || omp_get_max_threads() == 1) {
    run(0, total);
    return;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    // Cut at multiples of 64 elements so no two threads share a cache line.
    const int64_t chunk = ((total + nt - 1) / nt + 63) / 64 * 64;
    run(std::min(total, t * chunk), std::min(total, (t + 1) * chunk));
  }
}

void bump_groups(std::span<const Tensor> in, Groups gr, std::span<const int> written) {
  for (int k = 0; k < gr.count; ++k)
    for (int j : written)
      in[k * gr.width + j].impl()->version.fetch_add(1, std::memory_order_relaxed);
}

// Inputs are checked to share the first variable's dtype, so one T serves every group.
void check_one_dtype(const char* op, std::span<const Meta> in, Groups gr) {
  for (int k = 1; k < gr.count; ++k) {
    if (in[k * gr.width].dtype != in[0].dtype) {
      throw DTypeError(std::string(op) + ": group " + std::to_string(k) + "'s variable is " +
                       std::string(dtype_name(in[k * gr.width].dtype)) + ", group 0's " +
                       std::string(dtype_name(in[0].dtype)) + ": one dtype per op");
    }
  }
}

void adam_multi_infer(std::span<const Meta> in, const Attrs&, std::span<Meta>) {
  check_one_dtype("adam_update_multi", in, check_groups("adam_update_multi", in, 4, true));
}

void adam_multi_reference(const KernelArgs& k) {
  const Groups gr{4, static_cast<int>(k.in.size() - 2) / 4};
  const AdamCoeffs coeffs =
      adam_coeffs(k.attrs, k.in[k.in.size() - 2].item<double>(), k.in.back().item<int64_t>());
  with_float_type(k.in[0].dtype(), [&](auto zero) {
    using T = decltype(zero);
    for_groups(k.in, gr, [&](int g, int64_t b, int64_t e) {
      const Tensor* t = &k.in[g * 4];
      adam_range(ptr<T>(t[0]), ptr<T>(t[1]), ptr<T>(t[2]), ptr<T>(t[3]), coeffs, b, e);
    });
  });
  const int written[] = {0, 1, 2};
  bump_groups(k.in, gr, written);
}

void sgd_multi_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta>) {
  const char* op = "sgd_update_multi";
  check_one_dtype(op, in, check_groups(op, in, a.i(1) ? 3 : 2, false));
}

void sgd_multi_reference(const KernelArgs& k) {
  const int width = k.attrs.i(1) ? 3 : 2;
  const Groups gr{width, static_cast<int>(k.in.size() - 1) / width};
  const bool nesterov = k.attrs.i(0) != 0;
  with_float_type(k.in[0].dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T lr = static_cast<T>(k.in.back().item<double>()), mu = static_cast<T>(k.attrs.f(0));
    for_groups(k.in, gr, [&](int g, int64_t b, int64_t e) {
      const Tensor* t = &k.in[g * width];
      sgd_range(ptr<T>(t[0]), ptr<T>(t[1]), width == 3 ? ptr<T>(t[2]) : nullptr, lr, mu, nesterov,
                b, e);
    });
  });
  const int written[] = {0, 2};
  bump_groups(k.in, gr, std::span<const int>(written, width == 3 ? 2 : 1));
}

void rmsprop_multi_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta>) {
  const char* op = "rmsprop_update_multi";
  check_one_dtype(op, in, check_groups(op, in, a.i(0) ? 4 : 3, false));
}

void rmsprop_multi_reference(const KernelArgs& k) {
  const int width = k.attrs.i(0) ? 4 : 3;
  const Groups gr{width, static_cast<int>(k.in.size() - 1) / width};
  with_float_type(k.in[0].dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T lr = static_cast<T>(k.in.back().item<double>()), rho = static_cast<T>(k.attrs.f(0)),
            c = static_cast<T>(1 - k.attrs.f(0)), eps = static_cast<T>(k.attrs.f(2)),
            mu = static_cast<T>(k.attrs.f(1));
    for_groups(k.in, gr, [&](int g, int64_t b, int64_t e) {
      const Tensor* t = &k.in[g * width];
      rmsprop_range(ptr<T>(t[0]), ptr<T>(t[1]), ptr<T>(t[2]), width == 4 ? ptr<T>(t[3]) : nullptr,
                    lr, rho, c, eps, mu, b, e);
    });
  });
  const int written[] = {0, 1, 3};
  bump_groups(k.in, gr, std::span<const int>(written, width == 4 ? 3 : 2));
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
constexpr AttrField kSgdMultiFields[] = {{"nesterov", AttrType::kBool},
                                         {"momentum_slot", AttrType::kBool},
                                         {"momentum", AttrType::kFloat}};
constexpr AttrSchema kSgdMultiAttrs{kSgdMultiFields};
constexpr AttrField kRmspropMultiFields[] = {{"momentum_slot", AttrType::kBool},
                                             {"rho", AttrType::kFloat},
                                             {"momentum", AttrType::kFloat},
                                             {"epsilon", AttrType::kFloat}};
constexpr AttrSchema kRmspropMultiAttrs{kRmspropMultiFields};

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
const OpDef kAdamUpdateMulti{.name = "adam_update_multi",
                             .num_inputs = -1,
                             .num_outputs = 0,
                             .infer = adam_multi_infer,
                             .reference = adam_multi_reference,
                             .flags = kUpdate,
                             .attrs = &kAdamAttrs};
const OpDef kSgdUpdateMulti{.name = "sgd_update_multi",
                            .num_inputs = -1,
                            .num_outputs = 0,
                            .infer = sgd_multi_infer,
                            .reference = sgd_multi_reference,
                            .flags = kUpdate,
                            .attrs = &kSgdMultiAttrs};
const OpDef kRmspropUpdateMulti{.name = "rmsprop_update_multi",
                                .num_inputs = -1,
                                .num_outputs = 0,
                                .infer = rmsprop_multi_infer,
                                .reference = rmsprop_multi_reference,
                                .flags = kUpdate,
                                .attrs = &kRmspropMultiAttrs};
}  // namespace ops

}  // namespace kiln
