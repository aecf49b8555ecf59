// Quantization-aware training: quantize_aware's wrappers and their range variables, the EMA
// range updates, training with the same fit (eager and graph), the conversion to int8 with the
// learned ranges (no fake_quant left, the learned range in the quantize node, int8 close to the
// QAT model), model files of the QAT model (with fake_quant nodes in its frozen graph) and of
// the converted one, and every error message.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "graph/graph.h"
#include "kiln/compress.h"
#include "kiln/data.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

struct Data {
  Tensor train, train_labels, test;
};
const Data& data() {
  static const Data d = [] {
    try {
      FashionMnist f = load_fashion_mnist();
      return Data{f.train_images.rows(0, 1024).clone(), f.train_labels.rows(0, 1024).clone(),
                  f.test_images.rows(0, 256).clone()};
    } catch (const Error&) {
      return Data{random_tensor({1024, 28, 28, 1}, float32, 1, 0, 1),
                  random_tensor({1024}, DType::kInt32, 2, 0, 10),
                  random_tensor({256, 28, 28, 1}, float32, 3, 0, 1)};
    }
  }();
  return d;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A small cnn: Conv2D 8 3x3 relu, MaxPool, Flatten, Dense 32 relu, Dense 10.
std::shared_ptr<Sequential> small_cnn(VariableStore& store) {
  auto m = std::make_shared<Sequential>();
  m->set_store(store);
  m->emplace<Conv2D>(8, std::array<int64_t, 2>{3, 3},
                     Conv2DLayerOptions{.padding = Padding::kSame, .activation = "relu"});
  m->emplace<MaxPool2D>();
  m->emplace<Flatten>();
  m->emplace<Dense>(32, "relu");
  m->emplace<Dense>(10);
  m->output_shape(Shape{1, 28, 28, 1});
  return m;
}

std::vector<QuantizeAware*> wrappers(const Sequential& m) {
  std::vector<QuantizeAware*> out;
  for (const auto& l : m.layers()) {
    if (auto* q = dynamic_cast<QuantizeAware*>(l.get())) out.push_back(q);
  }
  return out;
}

void train(Sequential& model, bool graph, int epochs = 1) {
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss(true);
  FitOptions o;
  o.epochs = epochs;
  o.batch_size = 64;
  o.verbose = 0;
  o.graph = graph;
  fit(model, opt, loss, data().train, data().train_labels, o);
}

double rel_error(const Tensor& a, const Tensor& b) {
  return sqrt(mean(square(sub(a, b)))).item<double>() / sqrt(mean(square(b))).item<double>();
}

TEST(QuantizeAware, WrapsEveryDenseAndConvWithRangeVariables) {
  VariableStore store(31);
  auto model = small_cnn(store);
  auto qat = quantize_aware(*model);
  const auto ws = wrappers(*qat);
  ASSERT_EQ(ws.size(), 3u);
  EXPECT_EQ(qat->size(), model->size());
  EXPECT_NO_THROW(ws[0]->input_range());
  expect_error<ValueError>([&] { ws[1]->input_range(); }, {"its input is not quantized"});
  expect_error<ValueError>([&] { ws[2]->output_range(); }, {"its output is not quantized"});
  // Range variables are non-trainable and live in the store; the trainable set is the model's.
  EXPECT_EQ(qat->trainable_weights().size(), model->trainable_weights().size());
  EXPECT_EQ(qat->non_trainable_weights().size(), 2u + 3u + 2u + 1u + 1u);
  for (const Variable& v : qat->non_trainable_weights()) {
    EXPECT_TRUE(store.contains(v.name())) << v.name();
  }
  EXPECT_EQ(ws[0]->weight_qmax(), int8_has_vnni() ? 127 : 63);
  // Before any training the ranges are unknown: only the weights are fake-quantized.
  const Tensor x = data().test.rows(0, 8);
  EXPECT_LT(rel_error((*qat)(x), (*model)(x)), 0.05);
}

TEST(QuantizeAware, RangesStartAtTheFirstBatchThenMoveByEma) {
  VariableStore store(32);
  auto model = small_cnn(store);
  auto qat = quantize_aware(*model, {.ema_decay = 0.9});
  QuantizeAware* first = wrappers(*qat)[0];
  const Tensor a = random_tensor({4, 28, 28, 1}, float32, 5, -0.5, 2);
  const Tensor b = random_tensor({4, 28, 28, 1}, float32, 6, -1, 3);
  (*qat)(a, /*training=*/true);
  const float amin = -max(neg(a)).item<float>(), amax = max(a).item<float>();
  EXPECT_FLOAT_EQ(first->input_range().lo, amin);
  EXPECT_FLOAT_EQ(first->input_range().hi, amax);
  (*qat)(b, true);
  const float bmin = -max(neg(b)).item<float>(), bmax = max(b).item<float>();
  EXPECT_NEAR(first->input_range().lo, bmin + 0.9f * (amin - bmin), 1e-5);
  EXPECT_NEAR(first->input_range().hi, bmax + 0.9f * (amax - bmax), 1e-5);
  EXPECT_GT(first->output_range().hi, 0.f);
  // Inference reads the ranges, never moves them.
  const ActivationRange before = first->input_range();
  (*qat)(b, false);
  EXPECT_EQ(first->input_range().lo, before.lo);
  // The outputs are on the learned grids: the first layer's output takes at most 256 values.
  const Tensor y = (*first)(a, false);
  std::vector<float> v = y.to_vector<float>();
  std::sort(v.begin(), v.end());
  EXPECT_LE(std::unique(v.begin(), v.end()) - v.begin(), 256);
}

class QatTraining : public ::testing::TestWithParam<bool> {};

TEST_P(QatTraining, TrainsWithFitAndConvertsWithTheLearnedRanges) {
  const bool graph = GetParam();
  VariableStore store(33);
  auto model = small_cnn(store);
  auto qat = quantize_aware(*model);
  train(*qat, graph);
  const auto ws = wrappers(*qat);
  const ActivationRange in = ws[0]->input_range();
  EXPECT_EQ(in.lo, 0.f);  // images are in [0, 1]
  EXPECT_NEAR(in.hi, 1.f, 0.01);
  QuantizeOptions o;
  o.layer_tolerance = 1e9;  // every layer int8: what is checked is the conversion
  o.keep_slower_float = false;
  o.timing_repeats = 1;
  QuantizeReport report;
  GraphModel q = quantize_model_from_qat(*qat, data().train.rows(0, 128), o, &report);
  const std::string text = q.graph_text();
  EXPECT_EQ(count(text, "fake_quant"), 0) << text;
  EXPECT_EQ(count(text, "quantized_conv2d("), 1) << text;
  EXPECT_EQ(count(text, "quantized_matmul("), 2) << text;
  EXPECT_EQ(count(text, "= quantize("), 1) << text;
  // The input's quantize node uses the learned range, not a calibrated one.
  const graph::Graph& g = q.graph();
  for (const graph::Node& n : g.nodes) {
    if (n.op != &ops::kQuantize) continue;
    const float scale = g.values[n.inputs[1]].captured.item<float>();
    EXPECT_FLOAT_EQ(scale, (in.hi - in.lo) / 255.f);
  }
  // The int8 model computes what the QAT model simulated, up to rounding at grid ties.
  const Tensor x = data().test.rows(0, 128);
  const Tensor yq = q(x), yqat = (*qat)(x);
  EXPECT_LT(rel_error(yq, yqat), 0.05);
  EXPECT_GT(mean(cast(equal(argmax(yq, -1), argmax(yqat, -1)), float32)).item<double>(), 0.95);
}

INSTANTIATE_TEST_SUITE_P(EagerAndGraph, QatTraining, ::testing::Values(false, true));

TEST(QuantizeAware, ModelFilesOfTheQatAndTheConvertedModel) {
  testing::TempDir dir;
  VariableStore store(34);
  auto model = small_cnn(store);
  auto qat = quantize_aware(*model);
  const Tensor x = data().test.rows(0, 16);
  (*qat)(data().train.rows(0, 64), true);  // ranges known
  // The QAT model: config, ranges and a frozen graph holding fake_quant nodes.
  const std::string qat_path = dir.path() + "/qat.kiln";
  save_model(*qat, qat_path);
  LoadedModel lq = load_model(qat_path);
  ASSERT_NE(lq.model, nullptr);
  EXPECT_GT(count(lq.graph.graph_text(), "fake_quant("), 0);
  EXPECT_TRUE(all_close(lq.graph(x), (*qat)(x), 1e-5, 1e-5));
  EXPECT_TRUE(all_close((*lq.model)(x), (*qat)(x), 1e-5, 1e-5));
  auto* seq = dynamic_cast<Sequential*>(lq.model.get());
  ASSERT_NE(seq, nullptr);
  EXPECT_EQ(wrappers(*seq)[0]->input_range().hi, wrappers(*qat)[0]->input_range().hi);
  // The converted int8 model.
  GraphModel q = quantize_model_from_qat(*qat, data().train.rows(0, 64));
  const std::string path = dir.path() + "/int8.kiln";
  save_model(q, path);
  LoadedModel lm = load_model(path);
  EXPECT_TRUE(all_close(lm.predict(x), q(x), 0, 0));
}

TEST(QuantizeAware, Errors) {
  VariableStore store(35);
  Sequential unbuilt;
  unbuilt.emplace<Dense>(3);
  expect_error<StateError>([&] { quantize_aware(unbuilt); }, {"quantize_aware", "not built"});
  auto model = small_cnn(store);
  expect_error<ValueError>([&] { quantize_aware(*model, {.ema_decay = 1.0}); },
                           {"QatOptions", "ema_decay", "[0, 1)"});
  expect_error<ValueError>([&] { quantize_aware(*model, {.weight_bits = 9}); },
                           {"weight_bits", "got 9"});
  auto flat = std::make_shared<Sequential>();
  flat->set_store(store);
  flat->emplace<Flatten>();
  flat->output_shape(Shape{1, 2, 2});
  expect_error<ValueError>([&] { quantize_aware(*flat); },
                           {"quantize_aware", "no Dense or Conv2D"});
  expect_error<ValueError>([] { QuantizeAware q(nullptr, false, true); },
                           {"QuantizeAware", "null"});
  expect_error<ValueError>([] { QuantizeAware q(std::make_shared<Flatten>("fl"), false, true); },
                           {"QuantizeAware", "'fl'", "Flatten", "only Dense and Conv2D"});
  expect_error<ValueError>(
      [] {
        QuantizeAware q(
            std::make_shared<Conv2D>(4, std::array<int64_t, 2>{1, 1},
                                     Conv2DLayerOptions{.groups = 2, .name = "grouped"}),
            false, true);
      },
      {"QuantizeAware", "'grouped'", "groups 2"});
  expect_error<ValueError>([&] { quantize_model_from_qat(*model, data().train.rows(0, 8)); },
                           {"quantize_model_from_qat", "no QuantizeAware layer"});
  auto qat = quantize_aware(*model, {.weight_bits = 7});
  QuantizeOptions o;
  o.weight_bits = 8;
  expect_error<ValueError>([&] { quantize_model_from_qat(*qat, data().train.rows(0, 8), o); },
                           {"quantize_model_from_qat", "weight_bits 8", "7-bit"});
}

}  // namespace
}  // namespace kiln
