// Test cases shared by pool_test.cc and pool_grad_test.cc.
#pragma once

#include <vector>

#include "kiln/ops.h"
#include "ops/op_def.h"
#include "testing/op_check.h"

namespace kiln::pool_testing {

inline Pool2DOptions popts(int64_t k, int64_t s, Padding p) {
  Pool2DOptions o;
  o.pool_size = {k, k};
  o.strides = {s, s};
  o.padding = p;
  return o;
}
inline Attrs pool_attrs(const Pool2DOptions& o) {
  return Attrs{o.pool_size[0], o.pool_size[1], o.strides[0], o.strides[1],
               o.padding == Padding::kSame ? 1 : 0};
}

struct Case {
  Shape x;
  Pool2DOptions o;
};
inline std::vector<Case> cases() {
  Pool2DOptions rect = popts(2, 1, Padding::kSame);
  rect.pool_size = {3, 2};
  rect.strides = {2, 1};
  return {{{1, 4, 4, 1}, popts(2, 2, Padding::kValid)},
          {{3, 7, 9, 5}, popts(2, 2, Padding::kValid)},
          {{3, 7, 9, 5}, popts(2, 2, Padding::kSame)},
          {{1, 7, 5, 3}, popts(3, 2, Padding::kSame)},
          {{2, 6, 6, 17}, popts(3, 1, Padding::kSame)},
          {{1, 5, 5, 2}, popts(3, 3, Padding::kValid)},
          {{2, 2, 3, 4}, popts(5, 1, Padding::kSame)},
          {{1, 9, 8, 3}, rect},
          {{0, 4, 4, 2}, popts(2, 2, Padding::kValid)},
          // Disjoint windows (the store-only gradient): exact 2x2 tiling over many channels, and
          // strides past the pool size leaving pixels in no window.
          {{2, 8, 6, 33}, popts(2, 2, Padding::kValid)},
          {{1, 8, 7, 3}, popts(2, 3, Padding::kSame)},
          {{2, 7, 8, 3}, popts(2, 3, Padding::kValid)}};
}

// Values in {0, 1, 2}: windows full of ties.
inline Tensor tied(const Shape& s, uint64_t seed) {
  return cast(cast(testing::random_tensor(s, float32, seed, 0, 3), int32), float32);
}

}  // namespace kiln::pool_testing
