// Data-parallel training figures: epochs of the mlp or cnn on Fashion-MNIST (Adam 1e-3, global
// batch 64, no validation) over the ranks of mpirun, or in one process. Rank 0 prints one JSON
// line per epoch: seconds, ms per step and the ms per step spent waiting for gradient buckets
// after the backward pass (what the overlap leaves exposed). With --allreduce it instead times
// sum all-reduces of a buffer of the model's gradient size (the cost model's link figures).
//
//   mpirun -np 2 --bind-to core kiln_distributed_bench --model mlp --threads 1 [--no-overlap]
//   kiln_distributed_bench --model mlp --threads 2          # 1 rank x 2 threads
//   mpirun -np 2 kiln_distributed_bench --model mlp --allreduce
//   kiln_distributed_bench --model cnn --threads 1 --batch 8 --examples 8000   # compute time
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <kiln/data.h>
#include <kiln/distributed.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "distributed/communicator.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model = "mlp", data;
  int epochs = 2, threads = 1;
  int64_t batch = 64;
  int64_t examples = 0;  // 0: all 60000
  bool overlap = true, allreduce = false;
  double bucket_mb = 25;
};

class EpochLine : public kiln::Callback {
 public:
  EpochLine(const Args& a, int64_t steps) : a_(a), steps_(steps) {}
  void on_epoch_begin(int, const kiln::Logs&) override { kiln::distributed::reset_stats(); }
  void on_epoch_end(int epoch, const kiln::Logs& logs) override {
    kiln::distributed::Stats s = kiln::distributed::stats();
    double sec = logs.at("seconds");
    std::printf(
        "{\"model\":\"%s\",\"ranks\":%d,\"threads\":%d,\"batch\":%lld,\"overlap\":%s,"
        "\"bucket_mb\":%g,\"epoch\":%d,\"seconds\":%.4f,\"ms_per_step\":%.4f,"
        "\"wait_ms_per_step\":%.4f,\"buckets_per_step\":%.2f,\"grad_bytes\":%lld,"
        "\"loss\":%.6f}\n",
        a_.model.c_str(), kiln::distributed::world_size(), a_.threads,
        static_cast<long long>(a_.batch), a_.overlap ? "true" : "false", a_.bucket_mb, epoch + 1,
        sec, 1e3 * sec / static_cast<double>(steps_),
        s.steps ? 1e3 * s.wait_seconds / static_cast<double>(s.steps) : 0.0,
        s.steps ? static_cast<double>(s.buckets) / static_cast<double>(s.steps) : 0.0,
        static_cast<long long>(s.steps ? s.bytes / s.steps : 0), logs.at("loss"));
    std::fflush(stdout);
  }

 private:
  Args a_;
  int64_t steps_;
};

int64_t gradient_bytes(kiln::Layer& model) {
  int64_t n = 0;
  for (const kiln::Variable& v : model.trainable_weights()) n += v.value().nbytes();
  return n;
}

// Median, min and max of `reps` timed all-reduces of the model's gradient bytes.
void time_allreduce(const Args& a, int64_t bytes) {
  auto* comm = kiln::distributed::detail::current_communicator();
  std::vector<float> buf(bytes / 4, 1.0f);
  std::vector<double> us;
  for (int r = 0; r < 60; ++r) {
    Clock::time_point t0 = Clock::now();
    comm->start_allreduce(buf.data(), static_cast<int64_t>(buf.size()), kiln::float32);
    comm->wait_all("a timed all-reduce");
    if (r >= 10) us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::vector<double> small;
  float one = 1;
  for (int r = 0; r < 210; ++r) {
    Clock::time_point t0 = Clock::now();
    comm->start_allreduce(&one, 1, kiln::float32);
    comm->wait_all("a timed all-reduce");
    if (r >= 10)
      small.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  std::sort(small.begin(), small.end());
  if (kiln::distributed::rank() == 0) {
    std::printf(
        "{\"allreduce_bytes\":%lld,\"ranks\":%d,\"us_median\":%.1f,\"us_min\":%.1f,"
        "\"us_max\":%.1f,\"one_float_us_median\":%.2f}\n",
        static_cast<long long>(bytes), kiln::distributed::world_size(), us[us.size() / 2],
        us.front(), us.back(), small[small.size() / 2]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--model")
      a.model = value();
    else if (k == "--epochs")
      a.epochs = std::atoi(value().c_str());
    else if (k == "--threads")
      a.threads = std::atoi(value().c_str());
    else if (k == "--batch")
      a.batch = std::atoll(value().c_str());
    else if (k == "--examples")
      a.examples = std::atoll(value().c_str());
    else if (k == "--bucket-mb")
      a.bucket_mb = std::atof(value().c_str());
    else if (k == "--data")
      a.data = value();
    else if (k == "--no-overlap")
      a.overlap = false;
    else if (k == "--allreduce")
      a.allreduce = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--model mlp|cnn] [--epochs N] [--threads T] [--batch B] "
                   "[--bucket-mb X] [--examples N] [--no-overlap] [--allreduce] [--data DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  kiln::set_num_threads(a.threads);
  kiln::distributed::Options o;
  o.overlap = a.overlap;
  o.bucket_bytes = static_cast<int64_t>(a.bucket_mb * (1 << 20));
  kiln::distributed::init(o);
  kiln::set_global_seed(0);
  auto model = a.model == "cnn" ? kiln::make_cnn() : kiln::make_mlp();
  if (a.allreduce) {
    time_allreduce(a, gradient_bytes(*model));
    return 0;
  }
  kiln::FashionMnist d = kiln::load_fashion_mnist(a.data);
  kiln::Tensor x = d.train_images, y = d.train_labels;
  if (a.examples > 0 && a.examples < x.dim(0)) {  // a shorter "epoch" for small batches
    x = x.rows(0, a.examples);
    y = y.rows(0, a.examples);
  }
  kiln::Dataset train = kiln::Dataset(x, y).shuffle(0).batch(a.batch).prefetch(2);
  kiln::Adam opt(1e-3);
  kiln::FitOptions fo;
  fo.epochs = a.epochs;
  fo.verbose = 0;
  fo.accuracy = true;
  fo.distributed = true;
  fo.callbacks.push_back(std::make_shared<EpochLine>(a, train.num_batches()));
  kiln::fit(*model, opt, kiln::SparseCategoricalCrossentropy(), train, fo);
  return 0;
}
