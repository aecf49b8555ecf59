// Bucket assignment and the reducer's packing, ordering and errors, in one process: a
// recording communicator stands in for MPI (tests/distributed/mpi_checks.cc reduces for real).
#include "distributed/bucket_reducer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "testing/op_check.h"

namespace kiln::distributed::detail {
namespace {

using kiln::testing::all_close;
using kiln::testing::expect_error;

// Records the all-reduces started (element counts) and doubles every buffer on wait_all(),
// as a sum over two ranks holding the same values would.
class RecordingComm : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  void start_allreduce(void* data, int64_t count, DType dtype) override {
    started.push_back(count);
    pending.push_back({data, count, dtype});
  }
  void start_broadcast(void*, int64_t, int) override {}
  void progress() override { ++progress_calls; }
  void wait_all(const std::string& what) override {
    waited_for = what;
    for (const Op& op : pending) {
      for (int64_t i = 0; i < op.count; ++i) {
        if (op.dtype == DType::kFloat64) {
          static_cast<double*>(op.data)[i] *= 2;
        } else {
          static_cast<float*>(op.data)[i] *= 2;
        }
      }
    }
    pending.clear();
  }
  void set_timeout(double) override {}
  void shut_down() override {}
  [[noreturn]] void abort(const std::string& m) override { throw Error(m); }

  struct Op {
    void* data;
    int64_t count;
    DType dtype;
  };
  std::vector<int64_t> started;
  std::vector<Op> pending;
  int progress_calls = 0;
  std::string waited_for;
};

std::vector<GradientSpec> specs(const std::vector<int64_t>& sizes, DType dt = float32) {
  std::vector<GradientSpec> out;
  for (int64_t n : sizes) out.push_back({Shape{n}, dt});
  return out;
}

using Buckets = std::vector<std::vector<size_t>>;

TEST(AssignBuckets, ReverseOrderVaryingSizes) {
  // 4-byte floats: 10, 1000, 3, 50 elements with 400-byte buckets, walked from the last:
  // 200 + 12 bytes leave the bucket open, the 4000-byte gradient joins it and closes it.
  EXPECT_EQ(assign_buckets(specs({10, 1000, 3, 50}), 400), (Buckets{{3, 2, 1}, {0}}));
  EXPECT_EQ(assign_buckets(specs({10, 1000, 3, 50}), 200), (Buckets{{3}, {2, 1}, {0}}));
  // Big enough for everything: one bucket, in reverse order.
  EXPECT_EQ(assign_buckets(specs({10, 1000, 3, 50}), 25 << 20), (Buckets{{3, 2, 1, 0}}));
}

TEST(AssignBuckets, BucketSmallerThanOneGradient) {
  // Every gradient exceeds 1 byte: each gets a bucket of its own.
  EXPECT_EQ(assign_buckets(specs({5, 7, 9}), 1), (Buckets{{2}, {1}, {0}}));
}

TEST(AssignBuckets, EmptyGradientsAndNoGradients) {
  EXPECT_TRUE(assign_buckets({}, 100).empty());
  // Zero-sized gradients join the open bucket; a bucket of only those holds 0 bytes.
  EXPECT_EQ(assign_buckets(specs({0, 0}), 4), (Buckets{{1, 0}}));
  EXPECT_EQ(assign_buckets(specs({0, 8, 0}), 4), (Buckets{{2, 1}, {0}}));
}

TEST(AssignBuckets, DtypeChangeClosesTheBucket) {
  std::vector<GradientSpec> s = specs({1, 1});
  s.push_back({Shape{1}, float64});
  EXPECT_EQ(assign_buckets(s, 1 << 20), (Buckets{{2}, {1, 0}}));
}

TEST(BucketReducer, SumsScalesAndUnpacksInShape) {
  RecordingComm comm;
  std::vector<GradientSpec> s = {{Shape{2, 3}, float32}, {Shape{4}, float32}, {Shape{1}, float64}};
  BucketReducer r(comm, s, 16, /*overlap=*/true);
  ASSERT_EQ(r.num_buckets(), 3u);  // {2} f64, {1} 16 bytes, {0}
  EXPECT_EQ(r.bytes(), 8 + 16 + 24);
  r.begin(/*scale=*/3);
  r.ready(2, from_vector<double>({0.5}));
  r.ready(1, from_vector<float>({1, 2, 3, 4}));
  r.ready(0, from_vector<float>({1, 2, 3, 4, 5, 6}).reshape(Shape{2, 3}));
  r.wait("the gradients of step 1");
  EXPECT_EQ(comm.waited_for, "the gradients of step 1");
  std::vector<Tensor> g = r.result(0.5);  // x3 packed, x2 summed, x0.5: x3 overall
  EXPECT_EQ(g[0].shape(), (Shape{2, 3}));
  EXPECT_TRUE(all_close(g[0], from_vector<float>({3, 6, 9, 12, 15, 18}).reshape(Shape{2, 3})));
  EXPECT_TRUE(all_close(g[1], from_vector<float>({3, 6, 9, 12})));
  EXPECT_EQ(g[2].dtype(), float64);
  EXPECT_TRUE(all_close(g[2], from_vector<double>({1.5})));
}

TEST(BucketReducer, StartsBucketsInOrderAsSoonAsTheyAreComplete) {
  RecordingComm comm;
  BucketReducer r(comm, specs({4, 4, 4}), 16, /*overlap=*/true);  // buckets {2}, {1}, {0}
  r.begin(1);
  r.ready(1, ones(Shape{4}));  // bucket 1 is complete but bucket 0 ({2}) is not: wait
  EXPECT_TRUE(comm.started.empty());
  r.ready(2, ones(Shape{4}));  // now buckets 0 and 1 start, in order
  EXPECT_EQ(comm.started, (std::vector<int64_t>{4, 4}));
  r.ready(0, ones(Shape{4}));
  EXPECT_EQ(comm.started.size(), 3u);  // during the "backward pass", before wait()
  EXPECT_GE(comm.progress_calls, 3);
  r.wait("x");
  EXPECT_TRUE(all_close(r.result(1)[0], full(Shape{4}, 2.0)));
}

TEST(BucketReducer, WithoutOverlapEverythingStartsInWait) {
  RecordingComm comm;
  BucketReducer r(comm, specs({4, 4}), 1, /*overlap=*/false);
  r.begin(1);
  r.ready(1, ones(Shape{4}));
  r.ready(0, ones(Shape{4}));
  EXPECT_TRUE(comm.started.empty());
  r.wait("x");
  EXPECT_EQ(comm.started.size(), 2u);
}

TEST(BucketReducer, UndefinedAndEmptyGradients) {
  RecordingComm comm;
  // Bucket {2, 1} holds a 0-element gradient and an undefined one; bucket {0} is all empty.
  std::vector<GradientSpec> s = {{Shape{0}, float32}, {Shape{3}, float32}, {Shape{0, 2}, float32}};
  BucketReducer r(comm, s, 4, /*overlap=*/true);
  r.begin(1);
  r.ready(0, zeros(Shape{0}));
  r.ready(2, zeros(Shape{0, 2}));
  r.ready(1, Tensor());
  r.wait("x");
  EXPECT_EQ(comm.started, (std::vector<int64_t>{3}));  // the empty bucket sends nothing
  std::vector<Tensor> g = r.result(1);
  EXPECT_EQ(g[0].shape(), (Shape{0}));
  EXPECT_FALSE(g[1].defined());
  EXPECT_EQ(g[2].shape(), (Shape{0, 2}));
  // Steps repeat with the same buffers.
  r.begin(2);
  for (size_t k : {0, 1, 2}) r.ready(k, zeros(s[k].shape));
  r.wait("x");
  EXPECT_TRUE(all_close(r.result(1)[1], zeros(Shape{3})));
}

TEST(BucketReducer, Errors) {
  RecordingComm comm;
  expect_error<DTypeError>(
      [&] {
        BucketReducer(comm, {{Shape{2}, int32}}, 8, true);
      },
      {"gradient 0", "float32 or float64", "int32"});
  expect_error<ValueError>([&] { BucketReducer(comm, specs({2}), 0, true); },
                           {"bucket_bytes", ">= 1", "got 0"});
  BucketReducer r(comm, specs({2, 3}), 8, true);
  expect_error<StateError>([&] { r.ready(0, ones(Shape{2})); }, {"gradient 0", "outside a step"});
  expect_error<StateError>([&] { r.wait("x"); }, {"wait() without a step"});
  r.begin(1);
  expect_error<StateError>([&] { r.begin(1); }, {"before the previous one"});
  expect_error<ValueError>([&] { r.ready(5, ones(Shape{2})); },
                           {"gradient 5", "out of range", "2 gradients"});
  expect_error<ShapeError>([&] { r.ready(0, ones(Shape{3})); },
                           {"gradient 0", "shape [3]", "variable [2]"});
  expect_error<DTypeError>([&] { r.ready(0, ones(Shape{2}, float64)); },
                           {"gradient 0", "float64", "float32"});
  r.ready(0, ones(Shape{2}));
  expect_error<StateError>([&] { r.ready(0, ones(Shape{2})); }, {"gradient 0", "twice"});
  expect_error<StateError>([&] { r.wait("x"); }, {"gradient 1", "not reported"});
  expect_error<StateError>([&] { r.result(1); }, {"result() before wait()"});
}

}  // namespace
}  // namespace kiln::distributed::detail
