// Magnitude pruning during training: the PolynomialDecay schedule, masks as non-trainable
// variables of PruneLowMagnitude wrappers (named, in the store, saved and loaded), the
// UpdatePruningStep callback in eager and graph fit (pruned weights stay zero through the
// optimizer's updates, sparsity reaches the target), strip_pruning, what it buys (the zlib-
// compressed model file shrinks) and every error message.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kiln/compress.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

std::vector<PruneLowMagnitude*> wrappers(const Sequential& m) {
  std::vector<PruneLowMagnitude*> out;
  for (const auto& l : m.layers()) {
    if (auto* w = dynamic_cast<PruneLowMagnitude*>(l.get())) out.push_back(w);
  }
  return out;
}

int64_t zeros_in(const Tensor& t) {
  return sum(cast(equal(t, zeros_like(t)), DType::kInt64)).item<int64_t>();
}

// A small mlp on 8x8 images: quick to train in a test.
std::shared_ptr<Sequential> small_mlp(VariableStore& store) {
  auto m = std::make_shared<Sequential>();
  m->set_store(store);
  m->emplace<Flatten>();
  m->emplace<Dense>(32, "relu");
  m->emplace<Dense>(10);
  m->output_shape(Shape{1, 8, 8, 1});
  return m;
}

TEST(PolynomialDecay, FollowsTfmotsFormulaAndUpdateSteps) {
  PolynomialDecay s{.initial_sparsity = 0.1,
                    .final_sparsity = 0.8,
                    .begin_step = 10,
                    .end_step = 110,
                    .power = 3,
                    .frequency = 25};
  EXPECT_DOUBLE_EQ(s.sparsity(0), 0.1);
  EXPECT_DOUBLE_EQ(s.sparsity(10), 0.1);
  EXPECT_DOUBLE_EQ(s.sparsity(60), 0.8 + (0.1 - 0.8) * std::pow(0.5, 3));
  EXPECT_DOUBLE_EQ(s.sparsity(110), 0.8);
  EXPECT_DOUBLE_EQ(s.sparsity(1000), 0.8);
  std::vector<int64_t> steps;
  for (int64_t k = 0; k < 200; ++k) {
    if (s.should_update(k)) steps.push_back(k);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{10, 35, 60, 85, 110}));
  s.end_step = 100;  // not a multiple of the frequency past begin: end_step still updates
  steps.clear();
  for (int64_t k = 0; k < 200; ++k) {
    if (s.should_update(k)) steps.push_back(k);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{10, 35, 60, 85, 100}));
}

TEST(PolynomialDecay, ValidationNamesTheField) {
  auto bad = [](PolynomialDecay s, std::vector<std::string> parts) {
    expect_error<ValueError>([&] { s.validate(); }, parts);
    expect_error<ValueError>([&] { UpdatePruningStep cb(s); }, parts);
  };
  bad({.initial_sparsity = -0.1}, {"PolynomialDecay", "initial_sparsity", "[0, 1)"});
  bad({.final_sparsity = 1.0}, {"final_sparsity", "[initial_sparsity, 1)"});
  bad({.initial_sparsity = 0.6, .final_sparsity = 0.5}, {"final_sparsity"});
  bad({.begin_step = 5, .end_step = 5}, {"begin_step < end_step", "5 and end_step 5"});
  bad({.begin_step = -1}, {"begin_step"});
  bad({.frequency = 0}, {"frequency must be >= 1"});
  bad({.power = 0}, {"power must be > 0"});
}

TEST(PruneLowMagnitude, WrapsDenseAndConvKernelsWithNonTrainableMasks) {
  VariableStore store(3);
  auto cnn = make_cnn(&store);
  auto pruned = prune_low_magnitude(*cnn);
  const auto ws = wrappers(*pruned);
  ASSERT_EQ(ws.size(), 4u);  // 2 Conv2D, 2 Dense; pools and flatten stay as they are
  EXPECT_EQ(pruned->size(), cnn->size());
  for (PruneLowMagnitude* w : ws) {
    const Variable m = w->mask();
    EXPECT_FALSE(m.trainable());
    EXPECT_EQ(m.shape(), w->kernel().shape());
    EXPECT_NE(m.name().find("/prune_mask"), std::string::npos) << m.name();
    EXPECT_TRUE(store.contains(m.name())) << m.name();
    EXPECT_EQ(zeros_in(m.value()), 0);
  }
  // The store's report lists every mask as a non-trainable variable.
  int masks = 0;
  for (const VariableInfo& v : store.cache_info().list) {
    if (v.name.find("prune_mask") != std::string::npos) {
      ++masks;
      EXPECT_FALSE(v.trainable);
    }
  }
  EXPECT_EQ(masks, 4);
  // Layers are shared: same outputs, same trainable weights, plus the masks.
  const Tensor x = random_tensor({2, 28, 28, 1}, float32, 5, 0, 1);
  EXPECT_TRUE(all_close((*pruned)(x), (*cnn)(x), 0, 0));
  EXPECT_EQ(pruned->trainable_weights().size(), cnn->trainable_weights().size());
  EXPECT_EQ(pruned->non_trainable_weights().size(), 4u);
}

TEST(PruneLowMagnitude, UpdateMaskZeroesExactlyTheSmallestMagnitudes) {
  VariableStore store(4);
  auto model = small_mlp(store);
  auto pruned = prune_low_magnitude(*model);
  PruneLowMagnitude* w = wrappers(*pruned)[0];
  const Tensor before = w->kernel().value().clone();
  w->update_mask(0.3);
  const int64_t n = before.numel(), drop = static_cast<int64_t>(std::floor(0.3 * n));
  EXPECT_EQ(zeros_in(w->mask().value()), drop);
  EXPECT_EQ(zeros_in(w->kernel().value()), drop);
  // Every pruned magnitude is at most every kept one.
  const std::vector<float> b = before.to_vector<float>(), m = w->mask().value().to_vector<float>();
  float max_pruned = 0, min_kept = 1e30f;
  for (int64_t i = 0; i < n; ++i) {
    if (m[i] == 0) {
      max_pruned = std::max(max_pruned, std::abs(b[i]));
    } else {
      min_kept = std::min(min_kept, std::abs(b[i]));
    }
  }
  EXPECT_LE(max_pruned, min_kept);
  // Masks only grow: a lower target later keeps what was pruned.
  w->update_mask(0.1);
  EXPECT_GE(zeros_in(w->mask().value()), drop);
  expect_error<ValueError>([&] { w->update_mask(1.0); }, {"sparsity must be in [0, 1)", "1.0"});
}

class PruneTraining : public ::testing::TestWithParam<bool> {};

TEST_P(PruneTraining, ReachesTheTargetAndPrunedWeightsStayZero) {
  const bool graph = GetParam();
  VariableStore store(5);
  auto model = small_mlp(store);
  auto pruned = prune_low_magnitude(*model);
  const Tensor x = random_tensor({256, 8, 8, 1}, float32, 6, 0, 1);
  const Tensor y = random_tensor({256}, DType::kInt32, 7, 0, 10);
  Adam opt(1e-2);
  SparseCategoricalCrossentropy loss(/*from_logits=*/true);
  auto cb = std::make_shared<UpdatePruningStep>(
      PolynomialDecay{.final_sparsity = 0.8, .begin_step = 0, .end_step = 12, .frequency = 4});
  FitOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.verbose = 0;
  o.graph = graph;
  o.callbacks.push_back(cb);
  fit(*pruned, opt, loss, x, y, o);
  EXPECT_EQ(cb->step(), 16);  // 8 batches per epoch
  for (PruneLowMagnitude* w : wrappers(*pruned)) {
    const Tensor k = w->kernel().value(), m = w->mask().value();
    const int64_t n = k.numel();
    EXPECT_EQ(zeros_in(m), static_cast<int64_t>(std::floor(0.8 * n))) << w->name();
    // Every masked weight is zero after the last optimizer step.
    EXPECT_EQ(zeros_in(mul(k, sub(ones_like(m), m))), n) << w->name();
  }
  EXPECT_NEAR(kernel_sparsity(*pruned), 0.8, 0.01);
  EXPECT_NEAR(kernel_sparsity(*model), 0.8, 0.01);  // shared layers
}

INSTANTIATE_TEST_SUITE_P(EagerAndGraph, PruneTraining, ::testing::Values(false, true));

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

uLongf zlib_size(const std::string& bytes) {
  uLongf n = compressBound(bytes.size());
  std::vector<Bytef> out(n);
  EXPECT_EQ(compress2(out.data(), &n, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size(),
                      Z_BEST_COMPRESSION),
            Z_OK);
  return n;
}

TEST(PruneLowMagnitude, MasksSaveAndLoadWithTheModel) {
  testing::TempDir dir;
  VariableStore store(8);
  auto model = small_mlp(store);
  auto pruned = prune_low_magnitude(*model);
  for (PruneLowMagnitude* w : wrappers(*pruned)) w->update_mask(0.5);
  const std::string path = dir.path() + "/pruned.kiln";
  save_model(*pruned, path);
  LoadedModel loaded = load_model(path);
  auto* seq = dynamic_cast<Sequential*>(loaded.model.get());
  ASSERT_NE(seq, nullptr);
  const auto before = wrappers(*pruned), after = wrappers(*seq);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(all_close(after[i]->mask().value(), before[i]->mask().value(), 0, 0));
    EXPECT_TRUE(all_close(after[i]->kernel().value(), before[i]->kernel().value(), 0, 0));
  }
  const Tensor x = random_tensor({3, 8, 8, 1}, float32, 9, 0, 1);
  EXPECT_TRUE(all_close(loaded.predict(x), (*pruned)(x), 1e-6, 1e-6));
}

TEST(StripPruning, KeepsTheZerosAndShrinksTheCompressedFile) {
  // What pruning buys: zeros, so the zlib-compressed model file shrinks with sparsity. What it
  // does not: dense kernels still multiply every zero (latency: bench/kiln_compress_bench.cc).
  testing::TempDir dir;
  uLongf sizes[3];
  const double sparsities[3] = {0.0, 0.5, 0.8};
  for (int i = 0; i < 3; ++i) {
    VariableStore store(10);
    auto model = make_mlp(&store);
    auto pruned = prune_low_magnitude(*model);
    for (PruneLowMagnitude* w : wrappers(*pruned)) w->update_mask(sparsities[i]);
    auto stripped = strip_pruning(*pruned);
    for (const auto& l : stripped->layers()) {
      EXPECT_EQ(dynamic_cast<PruneLowMagnitude*>(l.get()), nullptr);
    }
    EXPECT_NEAR(kernel_sparsity(*stripped), sparsities[i], 0.001);
    const Tensor x = random_tensor({2, 28, 28, 1}, float32, 11, 0, 1);
    EXPECT_TRUE(all_close((*stripped)(x), (*pruned)(x), 0, 0));
    const std::string path = dir.path() + "/m" + std::to_string(i) + ".kiln";
    save_model(*stripped, path, {.frozen = false});
    sizes[i] = zlib_size(read_file(path));
  }
  // Float32 weights barely compress; 50% and 80% zeros compress to well under the dense size.
  EXPECT_LT(double(sizes[1]), 0.75 * double(sizes[0]));
  EXPECT_LT(double(sizes[2]), 0.45 * double(sizes[0]));
}

TEST(PruneLowMagnitude, Errors) {
  VariableStore store(12);
  Sequential unbuilt;
  unbuilt.emplace<Dense>(3);
  expect_error<StateError>([&] { prune_low_magnitude(unbuilt); },
                           {"prune_low_magnitude", "not built"});
  expect_error<StateError>([&] { strip_pruning(unbuilt); }, {"strip_pruning", "not built"});
  expect_error<StateError>([&] { kernel_sparsity(unbuilt); }, {"kernel_sparsity", "not built"});
  auto no_dense = std::make_shared<Sequential>();
  no_dense->set_store(store);
  no_dense->emplace<Flatten>();
  no_dense->output_shape(Shape{1, 2, 2});
  expect_error<ValueError>([&] { prune_low_magnitude(*no_dense); },
                           {"prune_low_magnitude", "no Dense or Conv2D"});
  expect_error<ValueError>([] { PruneLowMagnitude w(nullptr); }, {"PruneLowMagnitude", "null"});
  expect_error<ValueError>([] { PruneLowMagnitude w(std::make_shared<Flatten>("flat")); },
                           {"PruneLowMagnitude", "'flat'", "Flatten", "only Dense and Conv2D"});
  PruneLowMagnitude fresh(std::make_shared<Dense>(2));
  expect_error<StateError>([&] { fresh.mask(); }, {"not built"});
  // Fitting with the callback but without wrappers.
  auto model = small_mlp(store);
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss(true);
  FitOptions o;
  o.verbose = 0;
  o.callbacks.push_back(std::make_shared<UpdatePruningStep>(PolynomialDecay{}));
  expect_error<ValueError>(
      [&] {
        fit(*model, opt, loss, zeros({4, 8, 8, 1}), zeros({4}, DType::kInt32), o);
      },
      {"UpdatePruningStep", "no PruneLowMagnitude layer", "prune_low_magnitude"});
}

}  // namespace
}  // namespace kiln
