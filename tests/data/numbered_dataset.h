// Small datasets whose examples carry their own index, for Dataset tests.
#pragma once

#include <vector>

#include <gtest/gtest.h>

#include "kiln/data.h"

namespace kiln::testing {

// n examples whose image [2, 2, 1] is filled with i and whose label is i.
inline Dataset numbered(int64_t n) {
  Tensor x = empty(Shape{n, 2, 2, 1}, float32);
  Tensor y = empty(Shape{n}, int32);
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) x.data<float>()[4 * i + k] = static_cast<float>(i);
    y.data<int32_t>()[i] = static_cast<int32_t>(i);
  }
  return Dataset(x, y);
}

// Every batch of one epoch as label lists; also checks x and y stay paired.
inline std::vector<std::vector<int>> epoch_labels(const Dataset& ds, int64_t epoch) {
  std::vector<std::vector<int>> out;
  for (auto it = ds.begin_epoch(epoch); auto batch = it.next();) {
    EXPECT_EQ(batch->x.dim(0), batch->y.dim(0));
    std::vector<int> ys = batch->y.to_vector<int>();
    std::vector<float> xs = batch->x.to_vector<float>();
    for (size_t i = 0; i < ys.size(); ++i) EXPECT_EQ(xs[4 * i + 3], static_cast<float>(ys[i]));
    out.push_back(ys);
  }
  return out;
}

inline std::vector<int> flatten(const std::vector<std::vector<int>>& batches) {
  std::vector<int> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

}  // namespace kiln::testing
