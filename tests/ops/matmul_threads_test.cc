// The oneDNN primitive cache under contention: several threads hitting, missing and evicting
// the same entries at once, every result checked against the reference kernel.
#include <atomic>
#include <thread>
#include <vector>

#include "kernels/onednn/cache_stats.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::random_tensor;

TEST(MatmulThreads, PrimitiveCacheUnderContention) {
  onednn::clear_primitive_cache();
  onednn::set_primitive_cache_capacity(3);  // fewer entries than shapes: evictions race hits
  const Shape shapes[][2] = {
      {{5, 7}, {7, 3}}, {{8, 8}, {8, 8}}, {{1, 9}, {9, 4}}, {{6, 2}, {2, 6}}, {{3, 3}, {3, 3}}};
  std::vector<std::vector<Tensor>> in, want;
  for (const auto& s : shapes) {
    Tensor a = random_tensor(s[0], float32, 1), b = random_tensor(s[1], float32, 2);
    in.push_back({a, b});
    ForceReferenceScope ref;
    want.push_back({matmul(a, b)});
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const size_t k = (i * 7 + t) % in.size();
        if (!all_close(matmul(in[k][0], in[k][1]), want[k][0], 1e-5, 1e-5)) ++wrong;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  const onednn::PrimitiveCacheStats s = onednn::primitive_cache_stats();
  EXPECT_LE(s.size, 3u);
  EXPECT_EQ(s.hits + s.misses, 4u * 300u);
  EXPECT_GT(s.evictions, 0u);
  onednn::set_primitive_cache_capacity(512);
}

}  // namespace
}  // namespace kiln
