// Graph-mode training of the cnn matches eager training for 50 steps (slow: ~2 s).
#include <gtest/gtest.h>

#include "graph_training.h"
#include "kiln/nn.h"

namespace kiln {
namespace {

TEST(GraphTrainingSlow, CnnFiftyStepsMatchEager) {
  Tensor x = random_uniform({1600, 28, 28, 1}, 0, 1, 11);
  Tensor y = cast(random_uniform({1600}, 0, 10 - 1e-6, 12), int32);
  testing::expect_graph_matches_eager([] { return make_cnn(); }, x, y, 32, 5, 1e-5);
}

}  // namespace
}  // namespace kiln
