// Dataset: batching, shuffle determinism, maps and errors (prefetch: dataset_threads_test.cc).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "data/numbered_dataset.h"
#include "kiln/data.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::epoch_labels;
using testing::expect_error;
using testing::flatten;
using testing::numbered;

TEST(Dataset, BatchesInOrderWithRemainder) {
  Dataset ds = numbered(10).batch(4);
  EXPECT_EQ(ds.num_examples(), 10);
  EXPECT_EQ(ds.num_batches(), 3);
  auto it = ds.begin_epoch(0);
  auto b0 = it.next();
  ASSERT_TRUE(b0);
  EXPECT_EQ(b0->x.shape(), (Shape{4, 2, 2, 1}));
  EXPECT_EQ(b0->x.dtype(), float32);
  EXPECT_EQ(b0->y.shape(), (Shape{4}));
  EXPECT_EQ(b0->y.dtype(), int32);
  EXPECT_EQ(epoch_labels(ds, 0),
            (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
}

TEST(Dataset, DropRemainderAndDefaultBatchOfOne) {
  Dataset ds = numbered(10).batch(4, /*drop_remainder=*/true);
  EXPECT_EQ(ds.num_batches(), 2);
  EXPECT_EQ(epoch_labels(ds, 0), (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  Dataset one = numbered(3);
  EXPECT_EQ(epoch_labels(one, 0), (std::vector<std::vector<int>>{{0}, {1}, {2}}));
  EXPECT_EQ(numbered(3).batch(5, true).num_batches(), 0);
  EXPECT_TRUE(epoch_labels(numbered(3).batch(5, true), 0).empty());
}

TEST(Dataset, EmptyDatasetYieldsNothing) {
  Dataset ds = Dataset(empty(Shape{0, 2}), empty(Shape{0}, int32)).batch(2).prefetch(2);
  auto it = ds.begin_epoch(0);
  EXPECT_FALSE(it.next());
  EXPECT_FALSE(it.next());
}

TEST(Dataset, ShuffleIsDeterministicPerSeedAndEpoch) {
  Dataset ds = numbered(50).shuffle(7).batch(8);
  auto e0 = flatten(epoch_labels(ds, 0));
  EXPECT_EQ(e0, flatten(epoch_labels(ds, 0)));
  EXPECT_EQ(e0, flatten(epoch_labels(numbered(50).batch(8).shuffle(7), 0)));  // builder order
  auto e1 = flatten(epoch_labels(ds, 1));
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, flatten(epoch_labels(numbered(50).shuffle(8).batch(8), 0)));
  // Each epoch is a permutation, and not the identity.
  std::vector<int> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> identity(50);
  for (int i = 0; i < 50; ++i) identity[i] = i;
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(e0, identity);
  std::sort(e1.begin(), e1.end());
  EXPECT_EQ(e1, identity);
}

TEST(Dataset, ShuffleOrderIsPinned) {
  // Pins the generator: a change here silently changes every user's training run.
  EXPECT_EQ(flatten(epoch_labels(numbered(8).shuffle(1), 0)),
            (std::vector<int>{0, 5, 2, 7, 3, 4, 1, 6}));
  EXPECT_EQ(flatten(epoch_labels(numbered(8).shuffle(1).batch(3), 3)),
            (std::vector<int>{7, 3, 4, 1, 0, 2, 6, 5}));
}

TEST(Dataset, MapsRunInOrderAndNormalize) {
  Dataset ds = numbered(4)
                   .batch(2)
                   .map([](Batch b) {
                     b.y = full(b.y.shape(), 100, int32);
                     return b;
                   })
                   .normalize(1.0, 2.0);
  auto it = ds.begin_epoch(0);
  auto b = it.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->y.to_vector<int>(), (std::vector<int>{100, 100}));
  std::vector<float> x = b->x.to_vector<float>();
  EXPECT_FLOAT_EQ(x[0], -0.5f);  // (0 - 1) / 2
  EXPECT_FLOAT_EQ(x[4], 0.0f);   // (1 - 1) / 2
}

TEST(Dataset, NormalizeLeavesTheSourceUntouched) {
  Tensor x = full(Shape{2, 3}, 4.0, float64);
  Dataset ds = Dataset(x, zeros(Shape{2}, int32)).batch(2).normalize(2.0, 0.5);
  auto it = ds.begin_epoch(0);
  EXPECT_EQ(it.next()->x.to_vector<double>(), std::vector<double>(6, 4.0));
  EXPECT_EQ(x.to_vector<double>(), std::vector<double>(6, 4.0));
}

TEST(Dataset, NormalizeNeedsFloatingImages) {
  Dataset ds = Dataset(zeros(Shape{2, 2}, uint8), zeros(Shape{2}, int32)).normalize(0, 1);
  auto it = ds.begin_epoch(0);
  expect_error<DTypeError>([&] { it.next(); }, {"normalize", "uint8"});
}

TEST(Dataset, ShardsSplitEveryShuffledBatchAcrossParts) {
  Dataset whole = numbered(10).shuffle(3).batch(4);
  std::vector<std::vector<int>> parts[3];
  for (int i = 0; i < 3; ++i) {
    Dataset part = whole.shard(3, i).prefetch(i == 1 ? 2 : 0);
    EXPECT_EQ(part.num_batches(), whole.num_batches());
    parts[i] = epoch_labels(part, 1);
  }
  std::vector<std::vector<int>> batches = epoch_labels(whole, 1);
  ASSERT_EQ(batches.size(), 3u);
  for (size_t b = 0; b < batches.size(); ++b) {
    std::vector<int> joined;  // the parts, in rank order, are the global batch
    for (int i = 0; i < 3; ++i) joined.insert(joined.end(), parts[i][b].begin(), parts[i][b].end());
    EXPECT_EQ(joined, batches[b]);
  }
  // 4 rows -> 1, 1, 2; the last batch of 2 rows -> 0, 1, 1 (an empty part).
  EXPECT_EQ(parts[0][0].size(), 1u);
  EXPECT_EQ(parts[2][0].size(), 2u);
  EXPECT_TRUE(parts[0][2].empty());
  EXPECT_EQ(numbered(10).batch(4).shard(1, 0).num_batches(), 3);
}

TEST(DatasetErrors, BadConstructionAndArguments) {
  expect_error<ShapeError>(
      [] {
        Dataset(zeros(Shape{3, 2}), zeros(Shape{4}, int32));
      },
      {"Dataset", "[3, 2]", "[4]", "first dim"});
  expect_error<ShapeError>([] { Dataset(scalar(1), zeros(Shape{1}, int32)); }, {"[]", "[1]"});
  expect_error<ValueError>([] { Dataset(Tensor(), zeros(Shape{1}, int32)); }, {"defined"});
  Dataset ds = numbered(4);
  expect_error<ValueError>([&] { ds.batch(0); }, {"batch", ">= 1", "got 0"});
  expect_error<ValueError>([&] { ds.prefetch(-1); }, {"prefetch", "got -1"});
  expect_error<ValueError>([&] { ds.normalize(0, 0); }, {"normalize", "stddev"});
  expect_error<ValueError>([&] { ds.map(nullptr); }, {"map", "empty"});
  expect_error<ValueError>([&] { ds.begin_epoch(-1); }, {"epoch", "got -1"});
  expect_error<ValueError>([&] { ds.shard(0, 0); }, {"shard", "num_shards >= 1", "got 0 and 0"});
  expect_error<ValueError>([&] { ds.shard(2, 2); }, {"shard", "index < num_shards", "got 2 and 2"});
  expect_error<ValueError>([&] { ds.shard(2, -1); }, {"shard", "got 2 and -1"});
}

}  // namespace
}  // namespace kiln
