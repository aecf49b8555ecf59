// Tapes on several threads over the same variables: each thread's gradients are its own.
#include <atomic>
#include <thread>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::random_tensor;

// loss(w, b; x) = sum(tanh(x w + b)^2): shared w and b, per-thread x.
Tensor loss_of(const Tensor& w, const Tensor& b, const Tensor& x) {
  return sum(square(tanh(matmul(x, w) + b)));
}

TEST(GradientTapeThreads, ConcurrentTapesOverSharedVariables) {
  Tensor w = random_tensor({6, 4}, float32, 1);
  Tensor b = random_tensor({4}, float32, 2);
  w.set_requires_grad(true);  // as trainable variables are: tapes track them without watch()
  b.set_requires_grad(true);
  constexpr int kThreads = 4, kSteps = 200;
  std::vector<Tensor> xs;
  std::vector<std::vector<Tensor>> want;
  for (int t = 0; t < kThreads; ++t) {
    xs.push_back(random_tensor({3, 6}, float32, 10 + t));
    GradientTape tape;
    want.push_back(tape.gradient(loss_of(w, b, xs[t]), {w, b}));
  }
  std::atomic<int> wrong{0}, undefined{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int s = 0; s < kSteps; ++s) {
        // Odd threads nest a second tape (higher-order style), so claims and maps both run.
        GradientTape outer(/*persistent=*/true);
        std::vector<Tensor> g;
        if (t % 2) {
          GradientTape inner;
          g = inner.gradient(loss_of(w, b, xs[t]), {w, b});
        } else {
          g = outer.gradient(loss_of(w, b, xs[t]), {w, b});
        }
        for (int k = 0; k < 2; ++k) {
          if (!g[k].defined()) {
            ++undefined;
          } else if (!all_close(g[k], want[t][k], 1e-5, 1e-6)) {
            ++wrong;
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(undefined.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(GradientTapeThreads, SecondOrderOnOneThreadWhileAnotherTrains) {
  Tensor w = random_tensor({5}, float64, 3);
  w.set_requires_grad(true);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread trainer([&] {
    Tensor x = random_tensor({5}, float64, 4);
    while (!stop.load()) {
      GradientTape tape;
      Tensor g = tape.gradient(sum(w * x), {w})[0];
      if (!g.defined() || !all_close(g, x)) ++bad;
    }
  });
  for (int s = 0; s < 200; ++s) {
    // d/dw sum(d/dw sum(w^3)) = 6 w
    GradientTape outer;
    Tensor g;
    {
      GradientTape inner;
      g = inner.gradient(sum(w * w * w), {w})[0];
    }
    Tensor h = outer.gradient(sum(g), {w})[0];
    ASSERT_TRUE(h.defined());
    EXPECT_TRUE(all_close(h, w * 6.0));
  }
  stop = true;
  trainer.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace kiln
