// Losses written with kiln ops, so the tape differentiates them like any other computation.
#include "kiln/nn/losses.h"

#include <string>
#include <vector>

#include "kiln/ops.h"

namespace kiln {
namespace {

constexpr double kEpsilon = 1e-7;  // Keras' backend epsilon, used for clipping probabilities

bool is_float(DType t) { return t == DType::kFloat32 || t == DType::kFloat64; }

void require_float_pred(const char* loss, const Tensor& y_pred) {
  if (!is_float(y_pred.dtype())) {
    throw DTypeError(std::string(loss) + ": y_pred must be float32 or float64, got " +
                     std::string(dtype_name(y_pred.dtype())));
  }
}

// Mean over every axis but the first: per-example values for an [N, ...] tensor.
Tensor per_example_mean(const Tensor& x) {
  if (x.rank() < 2) return x;
  std::vector<int> axes;
  for (int i = 1; i < x.rank(); ++i) axes.push_back(i);
  return mean(x, axes);
}

// y_true converted to y_pred's dtype and shape; [N] is accepted for [N, 1].
Tensor dense_targets(const char* loss, const Tensor& y_true, const Tensor& y_pred) {
  Tensor t = y_true;
  if (t.shape() != y_pred.shape()) {
    bool squeezed = y_pred.rank() >= 1 && y_pred.dim(-1) == 1 && t.rank() == y_pred.rank() - 1 &&
                    t.numel() == y_pred.numel();
    if (!squeezed) {
      throw ShapeError(std::string(loss) + ": y_true shape " + to_string(y_true.shape()) +
                       " does not match y_pred shape " + to_string(y_pred.shape()));
    }
    t = reshape(t, y_pred.shape());
  }
  return t.dtype() == y_pred.dtype() ? t : cast(t, y_pred.dtype());
}

Tensor clip_probabilities(const Tensor& p) {
  return minimum(maximum(p, scalar_like(kEpsilon, p)), scalar_like(1 - kEpsilon, p));
}

}  // namespace

Tensor sparse_categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred,
                                       bool from_logits) {
  const char* name = "sparse_categorical_crossentropy";
  require_float_pred(name, y_pred);
  Tensor labels = y_true;
  bool ok = y_pred.rank() == 2 && labels.rank() >= 1 && labels.rank() <= 2 &&
            labels.dim(0) == y_pred.dim(0) && (labels.rank() == 1 || labels.dim(1) == 1);
  if (!ok) {
    throw ShapeError(std::string(name) + ": expected y_true [N] or [N, 1] and y_pred [N, C], got " +
                     to_string(y_true.shape()) + " and " + to_string(y_pred.shape()));
  }
  if (labels.rank() == 2) labels = reshape(labels, {labels.dim(0)});
  if (labels.dtype() != DType::kInt32 && labels.dtype() != DType::kInt64) {
    labels = cast(labels, DType::kInt64);  // Keras accepts float labels holding integers
  }
  // softmax_cross_entropy renormalizes, so log-probabilities act as logits.
  Tensor logits = from_logits ? y_pred : log(clip_probabilities(y_pred));
  return softmax_cross_entropy(logits, labels);
}

Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred) {
  require_float_pred("mean_squared_error", y_pred);
  Tensor t = dense_targets("mean_squared_error", y_true, y_pred);
  return per_example_mean(square(y_pred - t));
}

namespace {
// Elementwise binary cross-entropy, y_pred's shape.
Tensor binary_crossentropy_elements(const Tensor& y_true, const Tensor& y_pred, bool from_logits) {
  require_float_pred("binary_crossentropy", y_pred);
  Tensor z = dense_targets("binary_crossentropy", y_true, y_pred);
  if (!from_logits) {
    Tensor p = clip_probabilities(y_pred);
    return -(z * log(p) + (1.0 - z) * log(1.0 - p));
  }
  // log sigmoid(x) and log(1 - sigmoid(x)) are the log-softmax of the logits (0, x): stable
  // for large |x|, and unlike max(x,0) - xz + log(1+exp(-|x|)) it has no kink at x = 0.
  Shape s = y_pred.shape();
  s.push_back(1);
  Tensor x = reshape(y_pred, s), zz = reshape(z, s);
  Tensor logp = log_softmax(concat({zeros_like(x), x}, -1), -1);
  Tensor targets = concat({1.0 - zz, zz}, -1);
  return -sum(targets * logp, {-1});
}
}  // namespace

Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred, bool from_logits) {
  return per_example_mean(binary_crossentropy_elements(y_true, y_pred, from_logits));
}

Tensor SparseCategoricalCrossentropy::operator()(const Tensor& y_true, const Tensor& y_pred) const {
  return mean(sparse_categorical_crossentropy(y_true, y_pred, from_logits_));
}

// Every example has the same number of elements, so the mean of all elements equals the mean
// of the per-example means and needs one reduction instead of two.
Tensor MeanSquaredError::operator()(const Tensor& y_true, const Tensor& y_pred) const {
  require_float_pred("mean_squared_error", y_pred);
  return mean(square(y_pred - dense_targets("mean_squared_error", y_true, y_pred)));
}

Tensor BinaryCrossentropy::operator()(const Tensor& y_true, const Tensor& y_pred) const {
  return mean(binary_crossentropy_elements(y_true, y_pred, from_logits_));
}

}  // namespace kiln
