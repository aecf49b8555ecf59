// Tensor: a cheap, reference-counted handle to contiguous row-major storage plus shape, dtype
// and byte offset. Copying a Tensor copies the handle, not the data (use clone() for that).
// Image layout throughout kiln is NHWC (batch, height, width, channels), as in Keras.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/error.h"
#include "kiln/shape.h"

namespace kiln {

namespace detail {
struct TensorImpl;
}

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  Tensor(const Tensor& o);
  Tensor(Tensor&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
  Tensor& operator=(const Tensor& o);
  Tensor& operator=(Tensor&& o) noexcept;
  ~Tensor();

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  DType dtype() const;
  int rank() const { return shape().rank(); }
  int64_t numel() const { return shape().numel(); }
  int64_t dim(int i) const { return shape().dim(i); }
  size_t nbytes() const { return numel() * size_of(dtype()); }

  // Typed element access; throws DTypeError when T does not match dtype().
  template <typename T>
  T* data() {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  const T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<const T*>(raw_data());
  }
  void* raw_data();
  const void* raw_data() const;

  // The single element converted to T; throws ValueError unless numel() == 1.
  template <typename T>
  T item() const {
    return static_cast<T>(item_double());
  }
  double item_double() const;
  // All elements converted to T (row-major).
  template <typename T>
  std::vector<T> to_vector() const;

  // reshape, rows and clone are ops: tapes record them (gradients flow through) and traced
  // functions see them. reshape and rows share this tensor's storage (views).
  // A view with the same data and a new shape; one dim may be -1. Throws ShapeError.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of the first dim, as a view (no copy). Throws ValueError when out of range.
  Tensor rows(int64_t begin, int64_t end) const;
  // An independent deep copy.
  Tensor clone() const;
  // Copies `src` (same shape and dtype) into this tensor's storage, in place. Not recorded by
  // tapes: this tensor gets src's values, not a gradient path to it.
  void copy_from(const Tensor& src);

  // Whether tapes record ops on this tensor without watch() (set on trainable variables).
  bool requires_grad() const;
  void set_requires_grad(bool on);

  detail::TensorImpl* impl() const { return impl_; }
  // Takes over one reference of `impl`.
  static Tensor adopt(detail::TensorImpl* impl) {
    Tensor t;
    t.impl_ = impl;
    return t;
  }

 private:
  void check_dtype(DType want) const;
  detail::TensorImpl* impl_ = nullptr;
};

// ---- creation --------------------------------------------------------------------------
Tensor empty(const Shape& shape, DType dtype = float32);  // uninitialized
Tensor zeros(const Shape& shape, DType dtype = float32);
Tensor ones(const Shape& shape, DType dtype = float32);
Tensor full(const Shape& shape, double value, DType dtype = float32);
Tensor scalar(double value, DType dtype = float32);  // rank-0
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// [start, stop) by step, like numpy.arange.
Tensor arange(double start, double stop, double step = 1, DType dtype = float32);
// Copies `values` into a new tensor of `shape` (numel must match; default: 1-D).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape);
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}
// Counter-based (Philox-4x32-10) random numbers: element i depends only on (seed, i), never
// on the thread count.
Tensor random_uniform(const Shape& shape, double low, double high, uint64_t seed,
                      DType dtype = float32);
Tensor random_normal(const Shape& shape, double mean, double stddev, uint64_t seed,
                     DType dtype = float32);

// NumPy-like text: "tensor([[1, 2],\n        [3, 4]], dtype=float32)"; long dims are elided.
std::string to_string(const Tensor& t);

}  // namespace kiln
