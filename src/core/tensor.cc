#include "kiln/tensor.h"

#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "core/random.h"
#include "core/tensor_impl.h"
#include "core/visit_dtype.h"

namespace kiln {
namespace detail {
namespace {

// Freed impls are kept per thread and reused: an eager op then allocates no heap memory. A
// plain array, not a vector: trivially destructible, so tensors freed during thread or process
// exit never touch a destroyed pool.
#ifdef KILN_NO_ALLOC_CACHE
constexpr int kPoolSize = 0;
#else
constexpr int kPoolSize = 256;
#endif
thread_local TensorImpl* pool_free[kPoolSize > 0 ? kPoolSize : 1];
thread_local int pool_count = 0;
thread_local bool pool_closed = false;  // set at thread exit; later frees go straight to delete

// Frees the pooled impls when the thread exits (prefetch threads come and go every epoch).
struct PoolReaper {
  ~PoolReaper() {
    pool_closed = true;
    while (pool_count > 0) delete pool_free[--pool_count];
  }
};

TensorImpl* impl_alloc() {
  if (pool_count > 0) return pool_free[--pool_count];
  return new TensorImpl;
}

}  // namespace

TensorImpl* impl_view(Storage* storage, int64_t offset, const Shape& shape, DType dtype) {
  TensorImpl* p = impl_alloc();
  p->refs.store(1, std::memory_order_relaxed);
  p->dtype = dtype;
  p->requires_grad = false;
  p->is_variable = false;
  p->shape = shape;
  p->storage = storage;
  if (storage) storage_ref(storage);
  p->offset = offset;
  p->tape_claim.store(0, std::memory_order_relaxed);
  p->version.store(0, std::memory_order_relaxed);
  return p;
}

TensorImpl* impl_new(const Shape& shape, DType dtype) {
  for (int64_t d : shape) {
    if (d < 0) throw ShapeError("tensor: cannot allocate shape " + to_string(shape));
  }
  Storage* s = storage_new(shape.numel() * size_of(dtype));
  TensorImpl* p = impl_view(s, 0, shape, dtype);
  storage_unref(s);  // impl_view took its own reference
  return p;
}

void impl_unref(TensorImpl* impl) {
  if (impl->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  impl->token.reset();  // cached entries keyed on this tensor die with it
  if (impl->storage) storage_unref(impl->storage);
  impl->storage = nullptr;
  if (!pool_closed && pool_count < kPoolSize) {
    thread_local PoolReaper reaper;  // a thread that only frees impls still empties its pool
    pool_free[pool_count++] = impl;
  } else {
    delete impl;
  }
}

}  // namespace detail

using detail::TensorImpl;

Tensor::Tensor(const Tensor& o) : impl_(o.impl_) {
  if (impl_) impl_->refs.fetch_add(1, std::memory_order_relaxed);
}

Tensor& Tensor::operator=(const Tensor& o) {
  if (o.impl_) o.impl_->refs.fetch_add(1, std::memory_order_relaxed);
  if (impl_) detail::impl_unref(impl_);
  impl_ = o.impl_;
  return *this;
}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    if (impl_) detail::impl_unref(impl_);
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}

Tensor::~Tensor() {
  if (impl_) detail::impl_unref(impl_);
}

namespace {
void require_defined(const TensorImpl* p, const char* what) {
  if (!p) throw StateError(std::string(what) + ": the tensor is undefined");
}
}  // namespace

const Shape& Tensor::shape() const {
  require_defined(impl_, "shape");
  return impl_->shape;
}

DType Tensor::dtype() const {
  require_defined(impl_, "dtype");
  return impl_->dtype;
}

void* Tensor::raw_data() {
  require_defined(impl_, "data");
  if (!impl_->storage) throw StateError("data: a traced (symbolic) tensor has no data");
  return impl_->bytes();
}

const void* Tensor::raw_data() const { return const_cast<Tensor*>(this)->raw_data(); }

void Tensor::check_dtype(DType want) const {
  if (dtype() != want) {
    throw DTypeError("data: tensor is " + std::string(dtype_name(dtype())) + ", asked for " +
                     std::string(dtype_name(want)));
  }
}

double Tensor::item_double() const {
  if (numel() != 1) {
    throw ValueError("item: tensor of shape " + to_string(shape()) + " has " +
                     std::to_string(numel()) + " elements, not 1");
  }
  double v = 0;
  detail::visit_dtype(
      dtype(), [&]<typename T>() { v = static_cast<double>(*static_cast<const T*>(raw_data())); });
  return v;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  std::vector<T> r(numel());
  detail::visit_dtype(dtype(), [&]<typename S>() {
    const S* p = static_cast<const S*>(raw_data());
    for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<T>(p[i]);
  });
  return r;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int8_t> Tensor::to_vector<int8_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

// Resolves one -1 in `want` against `numel`; throws ShapeError naming `op`.
Shape resolve_reshape(const Shape& from, const Shape& want, const char* op) {
  Shape out = want;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < want.rank(); ++i) {
    if (want[i] == -1) {
      if (infer >= 0)
        throw ShapeError(std::string(op) + ": more than one -1 in " + to_string(want));
      infer = i;
    } else {
      known *= want[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || from.numel() % known != 0) {
      throw ShapeError(std::string(op) + ": cannot reshape " + to_string(from) + " to " +
                       to_string(want));
    }
    out[infer] = from.numel() / known;
  }
  if (out.numel() != from.numel()) {
    throw ShapeError(std::string(op) + ": cannot reshape " + to_string(from) + " (" +
                     std::to_string(from.numel()) + " elements) to " + to_string(want));
  }
  return out;
}

// Tensor::reshape, rows and clone are ops: defined in src/ops/shape.cc and elementwise.cc.

void Tensor::copy_from(const Tensor& src) {
  if (src.shape() != shape() || src.dtype() != dtype()) {
    throw ShapeError("copy_from: source " + to_string(src.shape()) + " " +
                     std::string(dtype_name(src.dtype())) + " does not match " +
                     to_string(shape()) + " " + std::string(dtype_name(dtype())));
  }
  if (nbytes() && src.raw_data() != raw_data()) std::memmove(raw_data(), src.raw_data(), nbytes());
}

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }
void Tensor::set_requires_grad(bool on) {
  require_defined(impl_, "set_requires_grad");
  impl_->requires_grad = on;
}

// ---- creation --------------------------------------------------------------------------

Tensor empty(const Shape& shape, DType dtype) {
  return Tensor::adopt(detail::impl_new(shape, dtype));
}

Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  detail::visit_dtype(dtype, [&]<typename T>() {
    T v = static_cast<T>(value);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = v;
  });
  return t;
}

Tensor zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.nbytes()) std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1, dtype); }
Tensor scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }

Tensor arange(double start, double stop, double step, DType dtype) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step)) {
    throw ValueError("arange: step must be non-zero and bounds finite");
  }
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((stop - start) / step)));
  Tensor t = empty(Shape{n}, dtype);
  detail::visit_dtype(dtype, [&]<typename T>() {
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + i * step);
  });
  return t;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  if (static_cast<int64_t>(values.size()) != shape.numel()) {
    throw ShapeError("from_vector: " + std::to_string(values.size()) +
                     " values do not fill shape " + to_string(shape));
  }
  Tensor t = empty(shape, dtype_of<T>());
  T* p = static_cast<T*>(t.raw_data());
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}
template Tensor from_vector(const std::vector<float>&, const Shape&);
template Tensor from_vector(const std::vector<double>&, const Shape&);
template Tensor from_vector(const std::vector<int32_t>&, const Shape&);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&);
template Tensor from_vector(const std::vector<int8_t>&, const Shape&);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&);
template Tensor from_vector(const std::vector<bool>&, const Shape&);

namespace {
Tensor from_doubles(const Shape& shape, DType dtype, const std::vector<double>& v) {
  Tensor t = empty(shape, dtype);
  detail::visit_dtype(dtype, [&]<typename T>() {
    T* p = static_cast<T*>(t.raw_data());
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(v[i]);
  });
  return t;
}
}  // namespace

Tensor random_uniform(const Shape& shape, double low, double high, uint64_t seed, DType dtype) {
  if (!(low <= high)) throw ValueError("random_uniform: low must be <= high");
  std::vector<double> v(shape.numel());
  detail::philox_uniform(seed, 0, shape.numel(), v.data());
  for (double& x : v) x = low + (high - low) * x;
  return from_doubles(shape, dtype, v);
}

Tensor random_normal(const Shape& shape, double mean, double stddev, uint64_t seed, DType dtype) {
  if (!(stddev >= 0)) throw ValueError("random_normal: stddev must be >= 0");
  std::vector<double> v(shape.numel());
  detail::philox_normal(seed, 1, shape.numel(), v.data());
  for (double& x : v) x = mean + stddev * x;
  return from_doubles(shape, dtype, v);
}

// ---- printing ----------------------------------------------------------------------------

namespace {

template <typename T>
std::string format_elem(T v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "True" : "False";
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    std::ostringstream os;
    os.precision(4);
    os << v;
    std::string s = os.str();
    if (s.find_first_of(".e") == std::string::npos) s += ".";
    return s;
  } else {
    return std::to_string(static_cast<int64_t>(v));
  }
}

template <typename T>
void print_dim(std::ostringstream& os, const T* p, const Shape& s, int d, int64_t offset,
               int indent) {
  constexpr int64_t kEdge = 3, kMax = 1000;
  bool elide = s.numel() > kMax;
  int64_t n = s[d];
  int64_t stride = 1;
  for (int i = d + 1; i < s.rank(); ++i) stride *= s[i];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (elide && n > 2 * kEdge && i == kEdge) {
      os << "...";
      i = n - kEdge - 1;
      if (d + 1 < s.rank()) {
        os << ",\n" << std::string(indent + d + 1, ' ');
      } else {
        os << ", ";
      }
      continue;
    }
    if (d + 1 == s.rank()) {
      os << format_elem(p[offset + i]);
    } else {
      print_dim(os, p, s, d + 1, offset + i * stride, indent);
    }
    if (i + 1 < n) {
      if (d + 1 == s.rank()) {
        os << ", ";
      } else {
        os << "," << std::string(s.rank() - d - 1, '\n') << std::string(indent + d + 1, ' ');
      }
    }
  }
  os << "]";
}

}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  if (!t.impl()->storage) {
    os << "<symbolic> shape=" << to_string(t.shape());
  } else {
    detail::visit_dtype(t.dtype(), [&]<typename T>() {
      const T* p = static_cast<const T*>(t.raw_data());
      if (t.rank() == 0) {
        os << format_elem(p[0]);
      } else {
        print_dim(os, p, t.shape(), 0, 0, 7);
      }
    });
  }
  os << ", dtype=" << dtype_name(t.dtype()) << ")";
  return os.str();
}

}  // namespace kiln
