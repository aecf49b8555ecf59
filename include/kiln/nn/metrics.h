// Streaming metrics: update() per batch, result() so far, reset() between epochs. They read
// tensors directly (no ops), so updating them inside a training step records nothing on a tape
// and costs one pass over the batch.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/tensor.h"

namespace kiln {

class Metric {
 public:
  virtual ~Metric() = default;
  // Accumulates one batch.
  virtual void update(const Tensor& y_true, const Tensor& y_pred) = 0;
  // The value over everything since the last reset(); 0 when nothing was accumulated.
  virtual double result() const = 0;
  virtual void reset() = 0;
  // The key in training logs, e.g. "accuracy".
  virtual std::string name() const = 0;
};

// Sparse categorical accuracy: the fraction of rows whose argmax over y_pred [N, C] (float32 or
// float64; ties pick the first maximum, like numpy.argmax) equals the label y_true ([N] or
// [N, 1]; int32, int64, float32 or float64). Throws ShapeError naming both shapes when they do
// not fit, DTypeError for other dtypes.
class Accuracy : public Metric {
 public:
  explicit Accuracy(std::string name = "accuracy") : name_(std::move(name)) {}
  void update(const Tensor& y_true, const Tensor& y_pred) override;
  double result() const override { return total_ == 0 ? 0.0 : double(correct_) / total_; }
  void reset() override { correct_ = total_ = 0; }
  std::string name() const override { return name_; }
  int64_t count() const { return total_; }

 private:
  std::string name_;
  int64_t correct_ = 0, total_ = 0;
};

// Weighted running mean of values (e.g. the loss per batch, weighted by the batch size).
class Mean : public Metric {
 public:
  explicit Mean(std::string name = "mean") : name_(std::move(name)) {}
  // Adds `value` with `weight` (>= 0, else ValueError).
  void update(double value, double weight = 1.0);
  // Adds the mean of `values` (any shape, float or int) weighted by its element count; y_true
  // is ignored (present for the Metric interface).
  void update(const Tensor& y_true, const Tensor& values) override;
  double result() const override { return weight_ == 0 ? 0.0 : sum_ / weight_; }
  void reset() override { sum_ = weight_ = 0; }
  std::string name() const override { return name_; }
  double total_weight() const { return weight_; }

 private:
  std::string name_;
  double sum_ = 0, weight_ = 0;
};

}  // namespace kiln
