// Metrics read tensor data directly: no ops, nothing recorded on tapes.
#include "kiln/nn/metrics.h"

#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"

namespace kiln {
namespace {

bool is_float(DType t) { return t == DType::kFloat32 || t == DType::kFloat64; }
bool is_int(DType t) { return t == DType::kInt32 || t == DType::kInt64; }

}  // namespace

void Accuracy::update(const Tensor& y_true, const Tensor& y_pred) {
  bool ok = y_pred.rank() == 2 && y_true.rank() >= 1 && y_true.rank() <= 2 &&
            y_true.dim(0) == y_pred.dim(0) && (y_true.rank() == 1 || y_true.dim(1) == 1);
  if (!ok) {
    throw ShapeError(name_ + ": expected y_true [N] or [N, 1] and y_pred [N, C], got " +
                     to_string(y_true.shape()) + " and " + to_string(y_pred.shape()));
  }
  if (!is_float(y_pred.dtype())) {
    throw DTypeError(name_ + ": y_pred must be float32 or float64, got " +
                     std::string(dtype_name(y_pred.dtype())));
  }
  if (!is_float(y_true.dtype()) && !is_int(y_true.dtype())) {
    throw DTypeError(name_ + ": y_true must be int32, int64, float32 or float64, got " +
                     std::string(dtype_name(y_true.dtype())));
  }
  const int64_t n = y_pred.dim(0), c = y_pred.dim(1);
  if (c == 0) {
    total_ += n;  // no classes: nothing can be right
    return;
  }
  int64_t correct = 0;
  detail::visit_floating(y_pred.dtype(), [&]<typename P>() {
    const P* p = detail::ptr<P>(y_pred);
    detail::visit_dtype(y_true.dtype(), [&]<typename L>() {
      if constexpr (std::is_arithmetic_v<L> && !std::is_same_v<L, bool>) {
        const L* lab = detail::ptr<L>(y_true);
        for (int64_t i = 0; i < n; ++i) {
          const P* row = p + i * c;
          int64_t best = 0;
          for (int64_t j = 1; j < c; ++j) {
            if (row[j] > row[best]) best = j;
          }
          correct += static_cast<double>(lab[i]) == static_cast<double>(best);
        }
      }
    });
  });
  correct_ += correct;
  total_ += n;
}

void Mean::update(double value, double weight) {
  if (!(weight >= 0)) {
    throw ValueError(name_ + ": weight must be >= 0, got " + std::to_string(weight));
  }
  sum_ += value * weight;
  weight_ += weight;
}

void Mean::update(const Tensor&, const Tensor& values) {
  const int64_t n = values.numel();
  if (n == 0) return;
  if (values.dtype() == DType::kBool) {
    throw DTypeError(name_ + ": values must be numbers, got bool");
  }
  double s = 0;
  detail::visit_dtype(values.dtype(), [&]<typename T>() {
    const T* v = detail::ptr<T>(values);
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]);
  });
  sum_ += s;
  weight_ += static_cast<double>(n);
}

}  // namespace kiln
