// Gradient buckets: which gradients are reduced together, and the reducer that packs each
// bucket as its gradients become final, starts its all-reduce, and unpacks the sums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "kiln/shape.h"
#include "kiln/tensor.h"

namespace kiln::distributed::detail {

struct GradientSpec {
  Shape shape;
  DType dtype;  // float32 or float64
};

// Splits gradients 0..n-1 into buckets, walking them in reverse order (the order a backward
// pass finishes them): a gradient joins the open bucket unless its dtype differs; a bucket
// closes once it holds >= bucket_bytes bytes, so one larger than bucket_bytes is alone in its
// bucket. Each bucket lists its gradients in the order they joined. Zero-sized gradients join
// like any other (a bucket of only those reduces nothing). ValueError for bucket_bytes < 1.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<GradientSpec>& grads,
                                                int64_t bucket_bytes);

// One step at a time: begin(), ready() once per gradient in any order, wait(), result().
// Buckets start in bucket order (a bucket whose gradients are all in waits for the buckets
// before it), so every rank issues the same collectives in the same order whatever order its
// gradients arrive in. Not thread-safe.
class BucketReducer {
 public:
  // Throws DTypeError naming the gradient when a spec is not float32/float64, ValueError for
  // bucket_bytes < 1. `comm` must outlive the reducer.
  BucketReducer(Communicator& comm, std::vector<GradientSpec> specs, int64_t bucket_bytes,
                bool overlap);

  const std::vector<GradientSpec>& specs() const { return specs_; }
  size_t num_buckets() const { return buckets_.size(); }

  // Starts a step; gradients are multiplied by `scale` as they are packed. Throws StateError
  // when the previous step was not finished with wait().
  void begin(double scale);
  // The local gradient k is final (undefined: reduced as zeros, and undefined in result()).
  // With overlap, starts every bucket now complete whose predecessors have started. Throws
  // StateError outside a step or when k was already reported, ValueError when k is out of
  // range, ShapeError / DTypeError naming k and both shapes or dtypes on a mismatch.
  void ready(size_t k, const Tensor& grad);
  // Starts the buckets not started yet and waits for all (communicator timeouts apply);
  // StateError unless every gradient was reported. Returns the seconds spent waiting.
  double wait(const std::string& what);
  // The summed gradients times `scale`, new tensors of each spec's shape; after wait().
  std::vector<Tensor> result(double scale) const;

  int64_t bytes() const { return bytes_; }

 private:
  void start_ready_buckets();

  Communicator& comm_;
  std::vector<GradientSpec> specs_;
  bool overlap_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<Tensor> buffers_;    // one flat buffer per bucket
  std::vector<size_t> bucket_of_;  // gradient -> bucket
  std::vector<int64_t> offset_;    // gradient -> element offset in its bucket's buffer
  std::vector<size_t> missing_;    // per bucket: gradients not reported yet this step
  std::vector<char> reported_, defined_;
  size_t started_ = 0;  // buckets started this step (a prefix)
  bool in_step_ = false, waited_ = false;
  double scale_ = 1;
  int64_t bytes_ = 0;
};

}  // namespace kiln::distributed::detail
