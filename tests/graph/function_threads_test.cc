// A Function called from several threads at once: the first calls trace once.
#include <atomic>
#include <thread>
#include <vector>

#include "kiln/function.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

TEST(FunctionThreads, ConcurrentFirstCallsTraceOnce) {
  std::atomic<int> runs{0};
  Function f = function([&](const Tensor& x) {
    ++runs;
    return x * 2.0;
  });
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        Tensor x = full({3}, t + i);
        if (f(x).to_vector<float>() != std::vector<float>(3, 2.f * (t + i))) ++wrong;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(f.cache_info().hits, 399u);
}

}  // namespace
}  // namespace kiln
