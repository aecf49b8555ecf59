// cached_per_instance under threads (label threads: the TSan stage runs it).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "kiln/cache.h"

namespace kiln {
namespace {

struct Obj {
  InstanceToken token;
};

TEST(CachedPerInstanceThreads, ConcurrentFirstCallsComputeOnce) {
  CachedPerInstance<int> cache("threads.once");
  for (int round = 0; round < 20; ++round) {
    Obj o;
    std::atomic<int> calls{0}, ready{0};
    std::vector<std::thread> ts;
    std::vector<int> got(8, 0);
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < 8) std::this_thread::yield();
        got[t] = cache.get(o.token, [&] {
          calls.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          return 42 + round;
        });
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(calls.load(), 1) << "round " << round;  // TensorFlow's helper asserted > 1
    for (int v : got) EXPECT_EQ(v, 42 + round);
  }
  EXPECT_EQ(cache.stats().misses, 20u);
  EXPECT_EQ(cache.stats().entries, 0u);  // every object died
}

TEST(CachedPerInstanceThreads, OtherObjectsDoNotWaitForAComputation) {
  CachedPerInstance<int> cache("threads.independent");
  Obj slow, fast;
  std::atomic<bool> release{false}, started{false};
  std::thread t([&] {
    cache.get(slow.token, [&] {
      started = true;
      while (!release) std::this_thread::yield();
      return 1;
    });
  });
  while (!started) std::this_thread::yield();
  // The slow object's computation is in progress: another object computes and hits meanwhile.
  EXPECT_EQ(cache.get(fast.token, [] { return 2; }), 2);
  EXPECT_EQ(cache.get(fast.token, [] { return 3; }), 2);
  int v = 0;
  EXPECT_FALSE(cache.peek(slow.token, 0, v));  // not ready yet, and peek does not wait
  release = true;
  t.join();
  EXPECT_EQ(cache.get(slow.token, [] { return 9; }), 1);
}

TEST(CachedPerInstanceThreads, ObjectsDyingWhileOthersReadAndEvict) {
  CachedPerInstance<int> cache("threads.churn", {16, 0});
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        auto o = std::make_unique<Obj>();
        const int want = t * 100000 + i;
        for (uint64_t version = 0; version < 3; ++version) {
          if (cache.get(
                  o->token, [&] { return want + static_cast<int>(version); }, version) !=
              want + static_cast<int>(version)) {
            wrong.fetch_add(1);
          }
        }
        if (i % 3 == 0) cache.invalidate(o->token);
        if (i % 500 == 0) cache.clear();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_LE(cache.stats().entries, 16u);
}

}  // namespace
}  // namespace kiln
