// prune_structured: units and filters removed by norm with their consumers rewritten (next
// Dense/Conv2D rows, BatchNormalization vectors, Flatten's fan-out), the kept units computing
// exactly what they did, fewer parameters and FLOPs, fine-tuning with fit, and errors.
#include <gtest/gtest.h>

#include "kiln/compress.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

Conv2DLayerOptions same_relu() {
  Conv2DLayerOptions o;
  o.padding = Padding::kSame;
  o.activation = "relu";
  return o;
}

// Pruning 0% keeps every unit: the same function.
TEST(PruneStructured, ZeroFractionIsTheSameModel) {
  auto cnn = make_cnn();
  PruneOptions o;
  o.fraction = 0;
  auto same = prune_structured(*cnn, o);
  Tensor x = random_tensor({3, 28, 28, 1}, float32, 1, 0, 1);
  EXPECT_TRUE(all_close((*same)(x, false), (*cnn)(x, false), 1e-5, 1e-5));
  EXPECT_EQ(same->count_params(), cnn->count_params());
  EXPECT_NE(same->name(), cnn->name());
}

// Units whose outgoing weights are zero contribute nothing: pruning exactly them (they have the
// smallest norms once zeroed) leaves the outputs unchanged, through BN, pooling and Flatten.
TEST(PruneStructured, RemovingDeadUnitsKeepsTheOutputs) {
  auto m = std::make_shared<Sequential>("bn_cnn_prune");
  m->emplace<Conv2D>(8, std::array<int64_t, 2>{3, 3}, same_relu());
  m->emplace<BatchNormalization>();
  m->emplace<MaxPool2D>();
  m->emplace<Flatten>();
  m->emplace<Dense>(6, "relu");
  m->emplace<Dense>(3);
  m->output_shape(Shape{1, 8, 8, 2});
  auto* conv = dynamic_cast<Conv2D*>(m->layers()[0].get());
  auto* bn = dynamic_cast<BatchNormalization*>(m->layers()[1].get());
  auto* d0 = dynamic_cast<Dense*>(m->layers()[4].get());
  bn->moving_mean().assign(random_tensor({8}, float32, 2));
  bn->moving_variance().assign(random_tensor({8}, float32, 3, 0.5, 2));
  bn->gamma().assign(random_tensor({8}, float32, 4, 0.5, 1.5));
  // Filters 1, 4, 6, 7 and dense units 0, 2, 5: scaled far down (smallest norms) and their
  // consumers' weights zeroed, so removing them changes nothing downstream.
  Tensor k = conv->kernel().value().clone();
  Tensor mask = from_vector<float>({1, 1e-3f, 1, 1, 1e-3f, 1, 1e-3f, 1e-3f});
  conv->kernel().assign(mul(k, mask));
  Tensor dk = d0->kernel().value().clone();  // [16 * 8, 6], rows p * 8 + c
  Tensor row_mask =
      reshape(broadcast_to(reshape(from_vector<float>({1, 0, 1, 1, 0, 1, 0, 0}), {1, 8}), {16, 8}),
              {128, 1});
  Tensor col_mask = from_vector<float>({1e-3f, 1, 1e-3f, 1, 1, 1e-3f});
  d0->kernel().assign(mul(mul(dk, row_mask), col_mask));
  auto* d1 = dynamic_cast<Dense*>(m->layers()[5].get());
  d1->kernel().assign(
      mul(d1->kernel().value(), reshape(from_vector<float>({0, 1, 0, 1, 1, 0}), {6, 1})));
  PruneReport report;
  auto p = prune_structured(*m, {.fraction = 0.5}, &report);
  ASSERT_EQ(report.layers.size(), 2u);
  EXPECT_EQ(report.layers[0].units_after, 4);
  EXPECT_EQ(report.layers[1].units_after, 3);
  Tensor x = random_tensor({2, 8, 8, 2}, float32, 5, 0, 1);
  // The dead filters' BN shift still reaches the dense layer through zeroed rows: none.
  EXPECT_TRUE(all_close((*p)(x, false), (*m)(x, false), 1e-4, 1e-4));
  EXPECT_EQ(report.params_after, p->count_params());
  EXPECT_LT(report.params_after, report.params_before);
  EXPECT_NE(report.to_text().find("8 ->      4 units"), std::string::npos) << report.to_text();
}

TEST(PruneStructured, HalvesTheCnnAndMlpAndFineTunes) {
  for (auto make : {make_mlp, make_cnn}) {
    auto m = make(nullptr);
    PruneReport report;
    auto p = prune_structured(*m, {.fraction = 0.5, .norm = PruneNorm::kL2}, &report);
    const int64_t flops = freeze(*m).summary().flops_per_sample;
    const int64_t pruned_flops = freeze(*p).summary().flops_per_sample;
    EXPECT_LE(pruned_flops, 0.6 * flops) << m->name();
    EXPECT_LE(report.params_after, 0.6 * report.params_before) << report.to_text();
    // The last layer keeps its 10 outputs.
    EXPECT_EQ((*p)(zeros({2, 28, 28, 1}), false).shape(), (Shape{2, 10}));
  }
  // Fine-tuning is ordinary fit.
  auto m = make_mlp();
  auto p = prune_structured(*m, {});
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss(true);
  FitOptions fo;
  fo.verbose = 0;
  fo.batch_size = 16;
  History h = fit(*p, opt, loss, random_tensor({64, 28, 28, 1}, float32, 1, 0, 1),
                  random_tensor({64}, DType::kInt32, 2, 0, 10), fo);
  EXPECT_EQ(h.size(), 1u);
}

TEST(PruneStructured, Errors) {
  auto m = make_mlp();
  expect_error<ValueError>([&] { prune_structured(*m, {.fraction = 1.0}); },
                           {"prune_structured", "fraction", "[0, 1)"});
  Sequential unbuilt("unbuilt_prune");
  unbuilt.emplace<Dense>(3);
  expect_error<StateError>([&] { prune_structured(unbuilt); }, {"'unbuilt_prune'", "not built"});
  Sequential other("ln_prune");
  other.emplace<Dense>(4);
  other.emplace<LayerNormalization>();
  other.emplace<Dense>(2);
  other.output_shape(Shape{1, 3});
  expect_error<ValueError>([&] { prune_structured(other); },
                           {"prune_structured", "LayerNormalization", "not supported"});
}

}  // namespace
}  // namespace kiln
