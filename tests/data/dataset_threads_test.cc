// Dataset prefetch: a producer thread per epoch; ordering, bounds, early stop, errors.
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "data/numbered_dataset.h"
#include "kiln/data.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::epoch_labels;
using testing::expect_error;
using testing::numbered;

TEST(Dataset, PrefetchOrderEqualsSynchronousOrder) {
  Dataset base = numbered(37).shuffle(3).batch(5).map([](Batch b) { return b; });
  for (int64_t epoch : {0, 1}) {
    auto want = epoch_labels(base, epoch);
    for (int64_t depth : {1, 2, 8}) {
      EXPECT_EQ(epoch_labels(base.prefetch(depth), epoch), want) << "depth " << depth;
    }
  }
}

TEST(Dataset, PrefetchRunsAheadButBoundedByDepth) {
  std::atomic<int> made{0};
  Dataset ds = numbered(100).map([&](Batch b) {
    ++made;
    return b;
  });
  auto it = ds.prefetch(3).begin_epoch(0);
  ASSERT_TRUE(it.next());
  // The producer fills the queue (3 after the one taken) and then must wait.
  for (int i = 0; i < 2000 && made.load() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(made.load(), 4);
  ASSERT_TRUE(it.next());
  for (int i = 0; i < 2000 && made.load() < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(made.load(), 5);
}

TEST(Dataset, EarlyStopJoinsTheProducer) {
  Dataset ds = numbered(1000).prefetch(2);
  {
    auto it = ds.begin_epoch(0);  // destroyed without a single next()
  }
  {
    auto it = ds.begin_epoch(0);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(it.next());
  }
  auto a = ds.begin_epoch(0);
  a.next();
  a = ds.begin_epoch(1);  // move-assignment stops the first producer
  EXPECT_EQ(a.next()->y.item<int>(), 0);
}

TEST(Dataset, IteratorOutlivesTheDataset) {
  std::optional<DatasetIterator> it;
  {
    Dataset ds = numbered(5).batch(2).prefetch(1);
    it.emplace(ds.begin_epoch(0));
  }
  int batches = 0;
  while (it->next()) ++batches;
  EXPECT_EQ(batches, 3);
}

TEST(Dataset, ProducerErrorsReachTheConsumerInOrder) {
  auto failing = [](Batch b) {
    if (b.y.data<int32_t>()[0] == 3) throw ValueError("map: bad example 3");
    return b;
  };
  for (int64_t depth : {0, 1, 4}) {
    auto it = numbered(6).map(failing).prefetch(depth).begin_epoch(0);
    for (int i = 0; i < 3; ++i) {
      auto b = it.next();
      ASSERT_TRUE(b) << "depth " << depth;
      EXPECT_EQ(b->y.item<int>(), i);
    }
    expect_error<ValueError>([&] { it.next(); }, {"bad example 3"});
    EXPECT_FALSE(it.next());
  }
}

}  // namespace
}  // namespace kiln
