// Graph-mode training of the cnn matches eager training for 50 steps (one epoch; slow: ~1 s).
// Not for longer: the graph runs the first conv and pool as fused_conv2d_pool, whose sums run
// in another order than oneDNN's, and on these random labels Adam turns the last-bit
// differences of near-zero gradients into whole steps of opposite sign: weights agree to 1e-5
// after 50 steps, 2.5e-2 after 100, as runs on two machines drift apart.
#include <gtest/gtest.h>

#include "graph_training.h"
#include "kiln/nn.h"

namespace kiln {
namespace {

TEST(GraphTrainingSlow, CnnFiftyStepsMatchEager) {
  Tensor x = random_uniform({1600, 28, 28, 1}, 0, 1, 11);
  Tensor y = cast(random_uniform({1600}, 0, 10 - 1e-6, 12), int32);
  testing::expect_graph_matches_eager([] { return make_cnn(); }, x, y, 32, 1, 1e-5);
}

}  // namespace
}  // namespace kiln
