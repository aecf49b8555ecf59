// Shared by the graph-mode training tests: train two copies of one model, eagerly and in graph
// mode, from the same weights, data and seeds, and compare losses and weights.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>

#include "kiln/nn.h"
#include "kiln/ops.h"

namespace kiln::testing {

// max |a - b| / max |b| over every element of every weight (0 when all are 0).
inline double max_relative_difference(const std::vector<Variable>& a,
                                      const std::vector<Variable>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<double> x = cast(a[i].value(), float64).to_vector<double>();
    std::vector<double> y = cast(b[i].value(), float64).to_vector<double>();
    for (size_t k = 0; k < x.size(); ++k) {
      diff = std::max(diff, std::abs(x[k] - y[k]));
      scale = std::max(scale, std::abs(y[k]));
    }
  }
  return scale > 0 ? diff / scale : diff;
}

// Trains `make()`'s model twice for `epochs` x (n / batch) steps with Adam: eagerly, then in
// graph mode on a second instance holding the first one's initial weights. Expects the epoch
// losses and every weight (trainable or not: BatchNorm's moving statistics too) to agree to
// `rtol`. Returns the graph model's train-step Function traces via `traces` when given.
inline void expect_graph_matches_eager(const std::function<std::shared_ptr<Layer>()>& make,
                                       const Tensor& x, const Tensor& y, int64_t batch, int epochs,
                                       double rtol) {
  std::shared_ptr<Layer> eager = make(), graph = make();
  std::vector<Variable> we = eager->weights(), wg = graph->weights();
  ASSERT_EQ(we.size(), wg.size());
  for (size_t i = 0; i < we.size(); ++i) wg[i].assign(we[i].value());
  Dataset data = Dataset(x, y).shuffle(3).batch(batch);
  FitOptions o;
  o.epochs = epochs;
  o.verbose = 0;
  Adam oe(1e-3), og(1e-3);
  SparseCategoricalCrossentropy loss(/*from_logits=*/true);
  History he = fit(*eager, oe, loss, data, o);
  o.graph = true;
  History hg = fit(*graph, og, loss, data, o);
  ASSERT_EQ(he["loss"].size(), hg["loss"].size());
  for (size_t e = 0; e < he["loss"].size(); ++e) {
    EXPECT_NEAR(hg["loss"][e], he["loss"][e], rtol * std::abs(he["loss"][e])) << "epoch " << e;
    EXPECT_NEAR(hg["accuracy"][e], he["accuracy"][e], 1e-12) << "epoch " << e;
  }
  EXPECT_LT(max_relative_difference(graph->weights(), eager->weights()), rtol);
  EXPECT_EQ(og.iterations(), oe.iterations());
}

}  // namespace kiln::testing
