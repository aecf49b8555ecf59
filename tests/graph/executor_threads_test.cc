// The plan executor under concurrent calls: one thread runs a Function's plan, another that
// finds it busy takes the dispatcher path; both get the right results.
#include <gtest/gtest.h>

#include <thread>

#include "kiln/function.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::random_tensor;

TEST(ExecutorThreads, APlanBusyOnAnotherThreadFallsBackToTheDispatcher) {
  Function f = function([](const Tensor& x) { return exp(x) + 1.0; });
  Tensor x = random_tensor({4});
  f(x);
  std::vector<Tensor> r1, r2;
  std::thread other([&] {
    for (int i = 0; i < 200; ++i) r1 = {f(x)};
  });
  for (int i = 0; i < 200; ++i) r2 = {f(x)};
  other.join();
  EXPECT_TRUE(all_close(r1[0], exp(x) + 1.0));
  EXPECT_TRUE(all_close(r2[0], exp(x) + 1.0));
}

}  // namespace
}  // namespace kiln
