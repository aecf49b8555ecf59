// Optimizers: validation and slot bookkeeping in the base class, one fused in-place loop per
// update rule. Coefficients are computed once per step in double and cast to the variable's
// type, so the inner loops are plain float arithmetic the compiler vectorizes.
#include "kiln/nn/optimizers.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "core/tensor_impl.h"
#include "kernels/broadcast.h"

namespace kiln {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw ValueError(what);
}

// Runs fn(T*) with the tensor's element type (float32 or float64 only; checked earlier).
template <typename Fn>
void with_float_type(DType dt, Fn&& fn) {
  if (dt == DType::kFloat32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

// Updates are memory-bound and a few flops per element: a second thread only pays off for
// large variables (and an OpenMP team costs much more than the loop on a busy machine).
constexpr int64_t kMinParallel = int64_t{1} << 18;

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

}  // namespace

// ---- Optimizer ------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, double learning_rate, std::vector<std::string> slot_names)
    : name_(std::move(name)), learning_rate_(learning_rate), slot_names_(std::move(slot_names)) {
  require(learning_rate >= 0,
          name_ + ": learning_rate must be >= 0, got " + std::to_string(learning_rate));
}

Optimizer::~Optimizer() = default;

void Optimizer::set_learning_rate(double lr) {
  require(lr >= 0, name_ + ": learning_rate must be >= 0, got " + std::to_string(lr));
  learning_rate_ = lr;
}

std::vector<Variable> Optimizer::variables() const { return slot_order_; }

Variable Optimizer::slot(const Variable& variable, const std::string& slot) const {
  auto it = entries_.find(variable.id());
  if (it == entries_.end()) return {};
  for (size_t i = 0; i < slot_names_.size(); ++i) {
    if (slot_names_[i] == slot) return it->second.slots[i];
  }
  return {};
}

Optimizer::Entry& Optimizer::entry_for(const Variable& v) {
  auto it = entries_.find(v.id());
  if (it != entries_.end()) return it->second;
  Entry e;
  e.variable = v;
  for (const std::string& s : slot_names_) {
    Variable slot(name_ + "/" + v.name() + "/" + s, zeros(v.shape(), v.dtype()),
                  /*trainable=*/false);
    e.slot_values.push_back(slot.value());
    e.slots.push_back(slot);
    slot_order_.push_back(slot);
  }
  return entries_.emplace(v.id(), std::move(e)).first->second;
}

void Optimizer::apply_gradients(const std::vector<Variable>& variables,
                                const std::vector<Tensor>& grads) {
  if (variables.size() != grads.size()) {
    throw ValueError(name_ + ".apply_gradients: " + std::to_string(variables.size()) +
                     " variables but " + std::to_string(grads.size()) + " gradients");
  }
  // Validate everything first so a bad call leaves every variable untouched.
  for (size_t i = 0; i < variables.size(); ++i) {
    const Variable& v = variables[i];
    if (!v.defined()) {
      throw ValueError(name_ + ".apply_gradients: variable " + std::to_string(i) + " is undefined");
    }
    const Tensor& g = grads[i];
    if (!g.defined()) continue;
    if (v.dtype() != DType::kFloat32 && v.dtype() != DType::kFloat64) {
      throw DTypeError(name_ + ".apply_gradients: variable '" + v.name() + "' has dtype " +
                       std::string(dtype_name(v.dtype())) + "; only float32/float64 train");
    }
    if (g.dtype() != v.dtype()) {
      throw DTypeError(name_ + ".apply_gradients: gradient of variable '" + v.name() +
                       "' has dtype " + std::string(dtype_name(g.dtype())) + ", the variable " +
                       std::string(dtype_name(v.dtype())));
    }
    if (g.shape() != v.shape()) {
      throw ShapeError(name_ + ".apply_gradients: gradient of variable '" + v.name() +
                       "' has shape " + to_string(g.shape()) + ", the variable " +
                       to_string(v.shape()));
    }
  }
  const int64_t step = iterations_ + 1;
  for (size_t i = 0; i < variables.size(); ++i) {
    if (!grads[i].defined()) continue;
    Variable v = variables[i];  // a handle: mark_modified() bumps the shared version
    Entry& e = entry_for(v);
    Tensor value = v.value();
    update(value, grads[i], e.slot_values, step);
    v.mark_modified();
    for (Variable& s : e.slots) s.mark_modified();
  }
  iterations_ = step;
}

// ---- SGD --------------------------------------------------------------------------------------

SGD::SGD(double learning_rate, double momentum, bool nesterov)
    : Optimizer("sgd", learning_rate,
                momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{}),
      momentum_(momentum),
      nesterov_(nesterov) {
  require(momentum >= 0 && momentum <= 1,
          "sgd: momentum must be in [0, 1], got " + std::to_string(momentum));
}

void SGD::update(Tensor& value, const Tensor& grad, std::vector<Tensor>& slots, int64_t) {
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = detail::ptr<T>(value);
    const T* g = detail::ptr<T>(grad);
    const T lr = static_cast<T>(learning_rate());
    if (slots.empty()) {
      for_elements(value.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) w[i] -= lr * g[i];
      });
      return;
    }
    T* m = detail::ptr<T>(slots[0]);
    const T mu = static_cast<T>(momentum_);
    const bool nesterov = nesterov_;
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
}

// ---- Adam / AdamW -------------------------------------------------------------------------------

Adam::Adam(double learning_rate, double beta_1, double beta_2, double epsilon)
    : Adam("adam", learning_rate, beta_1, beta_2, epsilon) {}

Adam::Adam(std::string name, double learning_rate, double beta_1, double beta_2, double epsilon)
    : Optimizer(name, learning_rate, {"m", "v"}),
      beta_1_(beta_1),
      beta_2_(beta_2),
      epsilon_(epsilon) {
  require(beta_1 >= 0 && beta_1 < 1,
          name + ": beta_1 must be in [0, 1), got " + std::to_string(beta_1));
  require(beta_2 >= 0 && beta_2 < 1,
          name + ": beta_2 must be in [0, 1), got " + std::to_string(beta_2));
  require(epsilon >= 0, name + ": epsilon must be >= 0, got " + std::to_string(epsilon));
}

void Adam::update(Tensor& value, const Tensor& grad, std::vector<Tensor>& slots, int64_t step) {
  adam_step(value, grad, slots, step, 0.0);
}

void Adam::adam_step(Tensor& value, const Tensor& grad, std::vector<Tensor>& slots, int64_t step,
                     double decay) {
  const double lr = learning_rate();
  const double alpha = lr * std::sqrt(1 - std::pow(beta_2_, static_cast<double>(step))) /
                       (1 - std::pow(beta_1_, static_cast<double>(step)));
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = detail::ptr<T>(value);
    const T* g = detail::ptr<T>(grad);
    T* m = detail::ptr<T>(slots[0]);
    T* v = detail::ptr<T>(slots[1]);
    const T a = static_cast<T>(alpha), c1 = static_cast<T>(1 - beta_1_),
            c2 = static_cast<T>(1 - beta_2_), eps = static_cast<T>(epsilon_),
            keep = static_cast<T>(1 - decay * lr);
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
}

AdamW::AdamW(double learning_rate, double weight_decay, double beta_1, double beta_2,
             double epsilon)
    : Adam("adamw", learning_rate, beta_1, beta_2, epsilon), weight_decay_(weight_decay) {
  require(weight_decay >= 0,
          "adamw: weight_decay must be >= 0, got " + std::to_string(weight_decay));
}

void AdamW::update(Tensor& value, const Tensor& grad, std::vector<Tensor>& slots, int64_t step) {
  adam_step(value, grad, slots, step, weight_decay_);
}

// ---- RMSprop ----------------------------------------------------------------------------------

RMSprop::RMSprop(double learning_rate, double rho, double momentum, double epsilon)
    : Optimizer("rmsprop", learning_rate,
                momentum > 0 ? std::vector<std::string>{"velocity", "momentum"}
                             : std::vector<std::string>{"velocity"}),
      rho_(rho),
      momentum_(momentum),
      epsilon_(epsilon) {
  require(rho >= 0 && rho < 1, "rmsprop: rho must be in [0, 1), got " + std::to_string(rho));
  require(momentum >= 0 && momentum <= 1,
          "rmsprop: momentum must be in [0, 1], got " + std::to_string(momentum));
  require(epsilon >= 0, "rmsprop: epsilon must be >= 0, got " + std::to_string(epsilon));
}

void RMSprop::update(Tensor& value, const Tensor& grad, std::vector<Tensor>& slots, int64_t) {
  with_float_type(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = detail::ptr<T>(value);
    const T* g = detail::ptr<T>(grad);
    T* vel = detail::ptr<T>(slots[0]);
    T* mom = slots.size() > 1 ? detail::ptr<T>(slots[1]) : nullptr;
    const T lr = static_cast<T>(learning_rate()), rho = static_cast<T>(rho_),
            c = static_cast<T>(1 - rho_), eps = static_cast<T>(epsilon_),
            mu = static_cast<T>(momentum_);
    for_elements(value.numel(), [&](int64_t b, int64_t e) {
      T root[kChunk];
      for (int64_t k = b; k < e; k += kChunk) {
        const int64_t len = std::min(kChunk, e - k);
        T *wk = w + k, *vk = vel + k;
        const T* gk = g + k;
        for (int64_t j = 0; j < len; ++j) {
          const T vj = rho * vk[j] + c * gk[j] * gk[j];
          vk[j] = vj;
          root[j] = vj + eps;
        }
        sqrt_inplace(root, len);
        if (mom) {
          T* mk = mom + k;
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
}

}  // namespace kiln
