// nn ops: dropout (mask from Philox, recomputed for the gradient, never stored) and
// softmax_cross_entropy with its fused gradient op softmax_cross_entropy_grad.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"
#include "kernels/fast_math.h"
#include "kernels/vector_clones.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using detail::ptr;
using kernels::exp_f32;
using kernels::parallel_range;

// ---- dropout(x, key): attrs = {floats: rate}; key int64 [2] = {seed, counter} -------------
// Marked kRandom: passes never fold or merge it.

constexpr AttrField kDropoutFields[] = {{"rate", AttrType::kFloat}};
constexpr AttrSchema kDropoutAttrs{kDropoutFields};

// Philox stream of dropout masks ("dropout" in ASCII), apart from random_uniform's streams.
constexpr uint64_t kDropoutStream = 0x64726f706f7574ull;

void check_rate(double rate) {
  if (!(rate >= 0 && rate < 1)) {
    throw ValueError("dropout: rate must be in [0, 1), got " + std::to_string(rate));
  }
}

void dropout_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_floating("dropout", in[0].dtype);
  if (in[1].dtype != DType::kInt64 || in[1].shape != Shape{2}) {
    throw ShapeError("dropout: the key must be int64 [2] ({seed, counter}), got " +
                     to_string(in[1].shape) + " " + std::string(dtype_name(in[1].dtype)));
  }
  check_rate(a.f(0));
  out[0] = in[0];
}

// Counter 0 is the seed itself, so dropout(x, rate, seed) keeps the masks it always had.
uint64_t philox_seed(const Tensor& key) {
  const int64_t* k = ptr<int64_t>(key);
  return detail::key_seed(k[0], k[1]);
}

// Element i is kept when uniform value i of the (seed, stream) sequence is >= rate; Philox
// gives four 32-bit words per counter, so element i uses word i % 4 of counter i / 4.
inline bool keep(uint32_t bits, double rate) { return detail::uniform01(bits) >= rate; }

void dropout_reference(const KernelArgs& k) {
  const uint64_t seed = philox_seed(k.in[1]);
  const double rate = k.attrs.f(0);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = ptr<T>(k.in[0]);
    T* o = ptr<T>(k.out[0]);
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    for (int64_t i = 0, n = k.in[0].numel(); i < n; ++i) {
      auto r = detail::philox4x32(seed, kDropoutStream, static_cast<uint64_t>(i / 4));
      o[i] = keep(r[i % 4], rate) ? x[i] * scale : T(0);
    }
  });
}

// One Philox call per four elements, blocks split across threads.
bool dropout_fast(const KernelArgs& k) {
  const uint64_t seed = philox_seed(k.in[1]);
  const double rate = k.attrs.f(0);
  const int64_t n = k.in[0].numel();
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = ptr<T>(k.in[0]);
    T* o = ptr<T>(k.out[0]);
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    parallel_range((n + 3) / 4, 64, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        auto r = detail::philox4x32(seed, kDropoutStream, static_cast<uint64_t>(blk));
        const int64_t base = blk * 4;
        for (int j = 0; j < 4 && base + j < n; ++j) {
          o[base + j] = keep(r[j], rate) ? x[base + j] * scale : T(0);
        }
      }
    });
  });
  return true;
}

// The same mask applied to the gradient: recomputed from (key, index). The key gets none.
void dropout_grad(const GradArgs& g) {
  g.grad_in[0] = run_op(ops::kDropout, {g.grad_out[0], g.in[1]}, g.attrs);
}

// ---- softmax_cross_entropy(logits [N, C], labels [N]) -> [N] ---------------------------------

constexpr const char* kSce = "softmax_cross_entropy";
constexpr const char* kSceGrad = "softmax_cross_entropy_grad";

void check_logits_labels(const char* op, std::span<const Meta> in) {
  require_floating(op, in[0].dtype);
  if (in[1].dtype != DType::kInt32 && in[1].dtype != DType::kInt64) {
    throw DTypeError(std::string(op) + ": labels must be int32 or int64, got " +
                     std::string(dtype_name(in[1].dtype)));
  }
  const Shape &ls = in[0].shape, &ys = in[1].shape;
  if (ls.rank() != 2 || ys.rank() != 1 || ys[0] != ls[0]) {
    throw ShapeError(std::string(op) + ": expected logits [N, C] and labels [N], got shapes " +
                     shapes_str(in.subspan(0, 2)));
  }
}

void sce_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  check_logits_labels(kSce, in);
  out[0] = {Shape{in[0].shape[0]}, in[0].dtype};
}

// inputs (logits, labels, g [N]) -> d loss / d logits [N, C]
void sce_grad_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  check_logits_labels(kSceGrad, in);
  require_same_dtype(kSceGrad, in[0].dtype, in[2].dtype);
  if (in[2].shape != Shape{in[0].shape[0]}) {
    throw ShapeError(std::string(kSceGrad) + ": expected gradient [N] for logits [N, C], got " +
                     "shapes " + shapes_str(in));
  }
  out[0] = in[0];
}

// Calls f(const L* labels) with L the labels' integer type.
template <typename F>
void with_labels(const Tensor& labels, F&& f) {
  if (labels.dtype() == DType::kInt32) {
    f(ptr<int32_t>(labels));
  } else {
    f(ptr<int64_t>(labels));
  }
}

// Validated before any (possibly threaded) work, so kernels never throw inside OpenMP.
template <typename L>
void check_label_values(const L* y, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] < 0 || y[i] >= c) {
      throw ValueError(std::string(kSce) + ": label " + std::to_string(y[i]) + " of example " +
                       std::to_string(i) + " is outside [0, C) with C = " + std::to_string(c));
    }
  }
}

// loss_i = log(sum_j exp(x_ij - m_i)) - (x_iy - m_i), m_i the row max.
void sce_reference(const KernelArgs& k) {
  const int64_t n = k.in[0].dim(0), c = k.in[0].dim(1);
  with_labels(k.in[1], [&](const auto* y) {
    check_label_values(y, n, c);
    detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
      const T* x = ptr<T>(k.in[0]);
      T* o = ptr<T>(k.out[0]);
      for (int64_t i = 0; i < n; ++i) {
        const T* row = x + i * c;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < c; ++j) m = row[j] > m ? row[j] : m;
        T s = 0;
        for (int64_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
        o[i] = std::log(s) - (row[y[i]] - m);
      }
    });
  });
}

// kernels::exp_rows_f32, multiversioned (vector_clones.h).
KILN_VECTOR_CLONES void exp_rows(const float* x, int64_t rows, int64_t n, float* m, float* e,
                                 float* s) {
  kernels::exp_rows_f32(x, rows, n, m, e, s);
}

bool sce_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  const int64_t n = k.in[0].dim(0), c = k.in[0].dim(1);
  with_labels(k.in[1], [&](const auto* y) {
    check_label_values(y, n, c);
    const float* x = ptr<float>(k.in[0]);
    float* o = ptr<float>(k.out[0]);
    parallel_range(n, c, [&](int64_t b, int64_t e) {
      const int64_t block = kernels::rows_per_block(c);
      std::vector<float> m(block), s(block), ex(block * c);
      for (int64_t r0 = b; r0 < e; r0 += block) {
        const int64_t rows = std::min(block, e - r0);
        exp_rows(x + r0 * c, rows, c, m.data(), ex.data(), s.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = r0 + r;
          o[i] = std::log(s[r]) - (x[i * c + y[i]] - m[r]);
        }
      }
    });
  });
  return true;
}

// d logits = (softmax(logits) - one_hot(labels)) * g[:, None]
void sce_grad_reference(const KernelArgs& k) {
  const int64_t n = k.in[0].dim(0), c = k.in[0].dim(1);
  with_labels(k.in[1], [&](const auto* y) {
    check_label_values(y, n, c);
    detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
      const T* x = ptr<T>(k.in[0]);
      const T* g = ptr<T>(k.in[2]);
      T* o = ptr<T>(k.out[0]);
      for (int64_t i = 0; i < n; ++i) {
        const T* row = x + i * c;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < c; ++j) m = row[j] > m ? row[j] : m;
        T s = 0;
        for (int64_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
        for (int64_t j = 0; j < c; ++j) {
          T p = std::exp(row[j] - m) / s;
          o[i * c + j] = (p - (j == y[i] ? T(1) : T(0))) * g[i];
        }
      }
    });
  });
}

bool sce_grad_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  const int64_t n = k.in[0].dim(0), c = k.in[0].dim(1);
  with_labels(k.in[1], [&](const auto* y) {
    check_label_values(y, n, c);
    const float* x = ptr<float>(k.in[0]);
    const float* g = ptr<float>(k.in[2]);
    float* o = ptr<float>(k.out[0]);
    parallel_range(n, c, [&](int64_t b, int64_t e) {
      const int64_t block = kernels::rows_per_block(c);
      std::vector<float> m(block), s(block);
      for (int64_t r0 = b; r0 < e; r0 += block) {
        const int64_t rows = std::min(block, e - r0);
        exp_rows(x + r0 * c, rows, c, m.data(), o + r0 * c, s.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = r0 + r;
          float* orow = o + i * c;
          const float scale = g[i] / s[r];
          for (int64_t j = 0; j < c; ++j) orow[j] *= scale;
          orow[y[i]] -= g[i];
        }
      }
    });
  });
  return true;
}

Tensor sce_grad_op(const Tensor& logits, const Tensor& labels, const Tensor& g) {
  return run_op(ops::kSoftmaxCrossEntropyGrad, {logits, labels, g});
}

// No gradient for the labels.
void sce_grad(const GradArgs& g) { g.grad_in[0] = sce_grad_op(g.in[0], g.in[1], g.grad_out[0]); }

// For gradients of gradients. out = (P - Y) * g with P = softmax(x), Y = one_hot(labels):
// d/dx = g * P * (G - sum(G * P)) (softmax's rule, rows scaled by g), d/dg = sum(G * (P - Y)).
void sce_grad_grad(const GradArgs& g) {
  const Tensor &x = g.in[0], &labels = g.in[1], &up = g.in[2], &gg = g.grad_out[0];
  const int64_t c = x.dim(1);
  Tensor p = softmax(x, 1);
  Tensor col = reshape(up, Shape{-1, 1});  // -1, not n: a traced graph serves every batch
  g.grad_in[0] = col * p * (gg - sum(gg * p, {1}, true));
  g.grad_in[2] = sum(gg * (p - one_hot(labels, c, x.dtype())), {1});
}

}  // namespace

namespace ops {
const OpDef kDropout{.name = "dropout",
                     .num_inputs = 2,
                     .num_outputs = 1,
                     .infer = dropout_infer,
                     .reference = dropout_reference,
                     .fast = dropout_fast,
                     .grad = dropout_grad,
                     .flags = kRandom,
                     .attrs = &kDropoutAttrs};
const OpDef kSoftmaxCrossEntropy{.name = "softmax_cross_entropy",
                                 .num_inputs = 2,
                                 .num_outputs = 1,
                                 .infer = sce_infer,
                                 .reference = sce_reference,
                                 .fast = sce_fast,
                                 .grad = sce_grad,
                                 .attrs = &kNoAttrs};
const OpDef kSoftmaxCrossEntropyGrad{.name = "softmax_cross_entropy_grad",
                                     .num_inputs = 3,
                                     .num_outputs = 1,
                                     .infer = sce_grad_infer,
                                     .reference = sce_grad_reference,
                                     .fast = sce_grad_fast,
                                     .grad = sce_grad_grad,
                                     .attrs = &kNoAttrs};
}  // namespace ops

Tensor dropout(const Tensor& x, double rate, const Tensor& key, bool training) {
  check_rate(rate);
  if (x.defined()) require_floating("dropout", x.dtype());
  if (!training || rate == 0) return x;
  Attrs a;
  a.add_float(rate);
  return run_op(ops::kDropout, {x, key}, a);
}

Tensor dropout(const Tensor& x, double rate, uint64_t seed, bool training) {
  check_rate(rate);
  if (x.defined()) require_floating("dropout", x.dtype());
  if (!training || rate == 0) return x;
  Tensor key = empty(Shape{2}, DType::kInt64);
  ptr<int64_t>(key)[0] = static_cast<int64_t>(seed);
  ptr<int64_t>(key)[1] = 0;
  return dropout(x, rate, key, training);
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  return run_op(ops::kSoftmaxCrossEntropy, {logits, labels});
}

}  // namespace kiln
