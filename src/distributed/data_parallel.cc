// Each rank's gradients are of its part of the global batch's mean loss: packed times the
// local example count, summed over ranks, divided by the global count. With equal parts this
// is "sum, then divide by the world size"; unequal parts (a last batch that does not split
// evenly, an empty part) are weighted correctly too.
#include "distributed/data_parallel.h"

#include <string>
#include <utility>
#include <vector>

#include "distributed/bucket_reducer.h"

namespace kiln::distributed::detail {
namespace {

class DataParallel : public kiln::detail::GradientSync {
 public:
  DataParallel(Communicator& comm, const Options& options, Stats& stats)
      : comm_(comm), options_(options), stats_(stats) {}

  int rank() const override { return comm_.rank(); }
  int world_size() const override { return comm_.size(); }

  void broadcast(const std::vector<Variable>& variables) override {
    if (comm_.size() == 1) return;
    std::vector<Tensor> received(variables.size());
    for (size_t k = 0; k < variables.size(); ++k) {
      const Tensor& v = variables[k].value();
      void* data = const_cast<void*>(v.raw_data());  // the root only reads it
      if (comm_.rank() != 0) {
        received[k] = empty(v.shape(), v.dtype());
        data = received[k].raw_data();
      }
      comm_.start_broadcast(data, static_cast<int64_t>(v.nbytes()), 0);
    }
    comm_.wait_all("rank 0's initial weights");
    if (comm_.rank() == 0) return;
    for (size_t k = 0; k < variables.size(); ++k) {
      Variable v = variables[k];  // a handle to the same variable
      v.assign(received[k]);
    }
  }

  void begin_step(const std::vector<Variable>& variables, int64_t examples, double loss,
                  double correct) override {
    ++step_;
    local_ = {static_cast<double>(examples), loss * static_cast<double>(examples), correct};
    if (comm_.size() == 1) {
      grads_.assign(variables.size(), Tensor());
      return;
    }
    std::vector<GradientSpec> specs;
    for (const Variable& v : variables) specs.push_back({v.shape(), v.dtype()});
    if (!reducer_ || !same(specs, reducer_->specs())) {
      reducer_ = std::make_unique<BucketReducer>(comm_, std::move(specs), options_.bucket_bytes,
                                                 options_.overlap);
    }
    sums_ = local_;
    comm_.start_allreduce(sums_.data(), 3, DType::kFloat64);
    reducer_->begin(static_cast<double>(examples));
  }

  void gradient_ready(size_t k, const Tensor& grad) override {
    if (comm_.size() == 1) {
      grads_.at(k) = grad;
    } else {
      reducer_->ready(k, grad);
    }
  }

  std::vector<Tensor> finish_step(Totals* totals) override {
    ++stats_.steps;
    if (comm_.size() == 1) {
      *totals = {local_[0], local_[0] > 0 ? local_[1] / local_[0] : 0, local_[2]};
      return std::move(grads_);
    }
    stats_.wait_seconds += reducer_->wait("the gradients of step " + std::to_string(step_));
    stats_.buckets += static_cast<int64_t>(reducer_->num_buckets());
    stats_.bytes += reducer_->bytes();
    *totals = {sums_[0], sums_[1] / sums_[0], sums_[2]};
    return reducer_->result(1.0 / sums_[0]);
  }

  bool any(bool flag) override {
    if (comm_.size() == 1) return flag;
    double v = flag ? 1 : 0;
    comm_.start_allreduce(&v, 1, DType::kFloat64);
    comm_.wait_all("the stop_training flags after step " + std::to_string(step_));
    return v > 0;
  }

 private:
  static bool same(const std::vector<GradientSpec>& a, const std::vector<GradientSpec>& b) {
    if (a.size() != b.size()) return false;
    for (size_t k = 0; k < a.size(); ++k) {
      if (a[k].shape != b[k].shape || a[k].dtype != b[k].dtype) return false;
    }
    return true;
  }

  Communicator& comm_;
  Options options_;
  Stats& stats_;
  std::unique_ptr<BucketReducer> reducer_;
  int64_t step_ = 0;
  std::vector<double> local_ = std::vector<double>(3), sums_ = std::vector<double>(3);
  std::vector<Tensor> grads_;  // one process: the local gradients as they are
};

}  // namespace

std::unique_ptr<kiln::detail::GradientSync> make_data_parallel(Communicator& comm,
                                                               const Options& options,
                                                               Stats& stats) {
  return std::make_unique<DataParallel>(comm, options, stats);
}

}  // namespace kiln::distributed::detail
