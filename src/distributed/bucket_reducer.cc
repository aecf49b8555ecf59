// Bucket assignment and the bucketed all-reduce of one step's gradients.
#include "distributed/bucket_reducer.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "kiln/error.h"

namespace kiln::distributed::detail {
namespace {

std::string grad_name(size_t k) { return "gradient " + std::to_string(k); }

template <typename T>
void scale_copy(const T* from, T* to, int64_t n, double scale) {
  const T s = static_cast<T>(scale);
  for (int64_t i = 0; i < n; ++i) to[i] = from[i] * s;
}

// to[0, n) = from[0, n) * scale, in the dtype of both.
void scale_copy(const void* from, void* to, int64_t n, DType dtype, double scale) {
  if (dtype == DType::kFloat64) {
    scale_copy(static_cast<const double*>(from), static_cast<double*>(to), n, scale);
  } else {
    scale_copy(static_cast<const float*>(from), static_cast<float*>(to), n, scale);
  }
}

}  // namespace

std::vector<std::vector<size_t>> assign_buckets(const std::vector<GradientSpec>& grads,
                                                int64_t bucket_bytes) {
  if (bucket_bytes < 1) {
    throw ValueError("distributed: bucket_bytes must be >= 1, got " + std::to_string(bucket_bytes));
  }
  std::vector<std::vector<size_t>> buckets;
  int64_t filled = 0;
  bool open = false;
  for (size_t k = grads.size(); k-- > 0;) {
    const GradientSpec& g = grads[k];
    if (open && g.dtype != grads[buckets.back().front()].dtype) open = false;
    if (!open) {
      buckets.emplace_back();
      filled = 0;
      open = true;
    }
    buckets.back().push_back(k);
    filled += g.shape.numel() * static_cast<int64_t>(size_of(g.dtype));
    if (filled >= bucket_bytes) open = false;
  }
  return buckets;
}

BucketReducer::BucketReducer(Communicator& comm, std::vector<GradientSpec> specs,
                             int64_t bucket_bytes, bool overlap)
    : comm_(comm), specs_(std::move(specs)), overlap_(overlap) {
  for (size_t k = 0; k < specs_.size(); ++k) {
    if (!is_floating(specs_[k].dtype)) {
      throw DTypeError("distributed: " + grad_name(k) + " must be float32 or float64, got " +
                       std::string(dtype_name(specs_[k].dtype)));
    }
  }
  buckets_ = assign_buckets(specs_, bucket_bytes);
  bucket_of_.resize(specs_.size());
  offset_.resize(specs_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t n = 0;
    for (size_t k : buckets_[b]) {
      bucket_of_[k] = b;
      offset_[k] = n;
      n += specs_[k].shape.numel();
    }
    buffers_.push_back(empty(Shape{n}, specs_[buckets_[b].front()].dtype));
    bytes_ += static_cast<int64_t>(buffers_.back().nbytes());
  }
  missing_.resize(buckets_.size());
  reported_.resize(specs_.size());
  defined_.resize(specs_.size());
  waited_ = true;
}

void BucketReducer::begin(double scale) {
  if (in_step_ || !waited_) {
    throw StateError("distributed: a step began before the previous one was waited for");
  }
  in_step_ = true;
  waited_ = false;
  scale_ = scale;
  started_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) missing_[b] = buckets_[b].size();
  std::fill(reported_.begin(), reported_.end(), 0);
}

void BucketReducer::ready(size_t k, const Tensor& grad) {
  if (!in_step_) throw StateError("distributed: " + grad_name(k) + " reported outside a step");
  if (k >= specs_.size()) {
    throw ValueError("distributed: " + grad_name(k) + " is out of range (" +
                     std::to_string(specs_.size()) + " gradients)");
  }
  if (reported_[k]) throw StateError("distributed: " + grad_name(k) + " was reported twice");
  const GradientSpec& spec = specs_[k];
  Tensor& buf = buffers_[bucket_of_[k]];
  char* dst = static_cast<char*>(buf.raw_data()) + offset_[k] * size_of(spec.dtype);
  if (grad.defined()) {
    if (grad.shape() != spec.shape) {
      throw ShapeError("distributed: " + grad_name(k) + " has shape " + to_string(grad.shape()) +
                       ", its variable " + to_string(spec.shape));
    }
    if (grad.dtype() != spec.dtype) {
      throw DTypeError("distributed: " + grad_name(k) + " is " +
                       std::string(dtype_name(grad.dtype())) + ", its variable " +
                       std::string(dtype_name(spec.dtype)));
    }
    scale_copy(grad.raw_data(), dst, spec.shape.numel(), spec.dtype, scale_);
  } else {
    std::fill(dst, dst + spec.shape.numel() * size_of(spec.dtype), 0);
  }
  reported_[k] = 1;
  defined_[k] = grad.defined();
  --missing_[bucket_of_[k]];
  if (overlap_) start_ready_buckets();
  comm_.progress();
}

void BucketReducer::start_ready_buckets() {
  while (started_ < buckets_.size() && missing_[started_] == 0) {
    Tensor& buf = buffers_[started_];
    if (buf.numel() > 0) comm_.start_allreduce(buf.raw_data(), buf.numel(), buf.dtype());
    ++started_;
  }
}

double BucketReducer::wait(const std::string& what) {
  if (!in_step_) throw StateError("distributed: wait() without a step");
  for (size_t k = 0; k < specs_.size(); ++k) {
    if (!reported_[k]) {
      throw StateError("distributed: " + grad_name(k) + " was not reported before wait()");
    }
  }
  start_ready_buckets();
  auto t0 = std::chrono::steady_clock::now();
  comm_.wait_all(what);
  in_step_ = false;
  waited_ = true;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<Tensor> BucketReducer::result(double scale) const {
  if (in_step_ || !waited_) throw StateError("distributed: result() before wait()");
  std::vector<Tensor> out(specs_.size());
  for (size_t k = 0; k < specs_.size(); ++k) {
    if (!defined_[k]) continue;
    const GradientSpec& spec = specs_[k];
    out[k] = empty(spec.shape, spec.dtype);
    const Tensor& buf = buffers_[bucket_of_[k]];
    const char* src = static_cast<const char*>(buf.raw_data()) + offset_[k] * size_of(spec.dtype);
    scale_copy(src, out[k].raw_data(), spec.shape.numel(), spec.dtype, scale);
  }
  return out;
}

}  // namespace kiln::distributed::detail
