// Losses, Keras-style: a Loss object maps (y_true, y_pred) to a scalar, the mean over the
// batch of the per-example losses, built from kiln ops so tapes differentiate it.
//
//   kiln::SparseCategoricalCrossentropy loss;         // from_logits = true
//   Tensor l = loss(labels, logits);                   // rank-0, dtype of logits
//
// The free functions return the per-example losses ([N] for an [N, ...] prediction: the mean
// over the non-batch axes), as Keras' loss functions do.
#pragma once

#include <string>

#include "kiln/tensor.h"

namespace kiln {

// Cross-entropy between integer labels y_true ([N] or [N, 1]; int32, int64, or floats holding
// integers) and y_pred [N, C]: logits when from_logits (via softmax_cross_entropy, stable),
// else probabilities (clipped to [1e-7, 1 - 1e-7] and renormalized per row). -> [N].
// Throws ShapeError naming both shapes when they do not fit, ValueError for a label outside
// [0, C).
Tensor sparse_categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred,
                                       bool from_logits = true);
// (y_pred - y_true)^2 averaged over the non-batch axes. y_true may be [N] for y_pred [N, 1].
Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred);
// Binary cross-entropy with targets y_true in [0, 1]. from_logits: y_pred are logits and the
// loss is computed as a two-class log-softmax (stable for any magnitude, smooth at 0); else
// y_pred are probabilities, clipped to [1e-7, 1 - 1e-7]. Averaged over the non-batch axes.
Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred, bool from_logits = false);

class Loss {
 public:
  virtual ~Loss() = default;
  // The batch mean of the per-example losses, a rank-0 tensor of y_pred's dtype.
  virtual Tensor operator()(const Tensor& y_true, const Tensor& y_pred) const = 0;
  // Keras' snake-case name, e.g. "sparse_categorical_crossentropy".
  virtual std::string name() const = 0;
};

class SparseCategoricalCrossentropy : public Loss {
 public:
  explicit SparseCategoricalCrossentropy(bool from_logits = true) : from_logits_(from_logits) {}
  Tensor operator()(const Tensor& y_true, const Tensor& y_pred) const override;
  std::string name() const override { return "sparse_categorical_crossentropy"; }
  bool from_logits() const { return from_logits_; }

 private:
  bool from_logits_;
};

class MeanSquaredError : public Loss {
 public:
  Tensor operator()(const Tensor& y_true, const Tensor& y_pred) const override;
  std::string name() const override { return "mean_squared_error"; }
};

class BinaryCrossentropy : public Loss {
 public:
  explicit BinaryCrossentropy(bool from_logits = false) : from_logits_(from_logits) {}
  Tensor operator()(const Tensor& y_true, const Tensor& y_pred) const override;
  std::string name() const override { return "binary_crossentropy"; }
  bool from_logits() const { return from_logits_; }

 private:
  bool from_logits_;
};

}  // namespace kiln
