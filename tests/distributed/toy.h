// Shared by the distributed tests: a small Fashion-MNIST-shaped problem and weight helpers.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "kiln/nn/layer.h"
#include "kiln/ops.h"
#include "kiln/tensor.h"

namespace kiln::testing {

// n images [n, 28, 28, 1] in [0, 1) and labels [n] int32 in [0, 10), from `seed`; the label
// brightens one band of rows so the models can learn something.
inline std::pair<Tensor, Tensor> toy_images(int64_t n, uint64_t seed) {
  Tensor x = random_uniform({n, 28, 28, 1}, 0, 0.5, seed);
  Tensor y = empty({n}, int32);
  float* px = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int label = static_cast<int>((i * 7 + seed) % 10);
    y.data<int32_t>()[i] = label;
    for (int64_t p = label * 28 * 2; p < (label + 1) * 28 * 2; ++p) px[i * 784 + p] += 0.5f;
  }
  return {x, y};
}

// ||a - b|| / ||b|| over every weight of two models with the same structure.
inline double relative_distance(const Layer& a, const Layer& b) {
  std::vector<Variable> wa = a.weights(), wb = b.weights();
  double diff = 0, norm = 0;
  for (size_t k = 0; k < wa.size() && k < wb.size(); ++k) {
    std::vector<float> va = wa[k].value().to_vector<float>();
    std::vector<float> vb = wb[k].value().to_vector<float>();
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
      diff += (double(va[i]) - vb[i]) * (double(va[i]) - vb[i]);
      norm += double(vb[i]) * vb[i];
    }
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace kiln::testing
