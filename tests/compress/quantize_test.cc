// quantize_model: the rewrite of frozen mlp/cnn graphs (which ops run in int8, where float and
// int8 meet), outputs against float, the per-layer check's reasons, the accuracy budget on a
// trained mlp, saving and loading the int8 graph, calibrate_range's three methods, and errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "graph/graph.h"
#include "graph/serialize.h"
#include "kiln/compress.h"
#include "kiln/data.h"
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

// Fashion-MNIST images and labels when the data set is installed, else random ones.
struct Data {
  Tensor train, train_labels, test, test_labels;
};
const Data& data() {
  static const Data d = [] {
    try {
      FashionMnist f = load_fashion_mnist();
      return Data{f.train_images.rows(0, 4000).clone(), f.train_labels.rows(0, 4000).clone(),
                  f.test_images.rows(0, 1000).clone(), f.test_labels.rows(0, 1000).clone()};
    } catch (const Error&) {
      return Data{random_tensor({4000, 28, 28, 1}, float32, 1, 0, 1),
                  random_tensor({4000}, DType::kInt32, 2, 0, 10),
                  random_tensor({1000, 28, 28, 1}, float32, 3, 0, 1),
                  random_tensor({1000}, DType::kInt32, 4, 0, 10)};
    }
  }();
  return d;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Everything int8 that can be: no tolerance, no timing veto.
QuantizeOptions all_int8() {
  QuantizeOptions o;
  o.layer_tolerance = 1e9;
  o.keep_slower_float = false;
  o.timing_repeats = 1;
  return o;
}

double agreement(const Tensor& a, const Tensor& b) {
  Tensor same = cast(equal(argmax(a, -1), argmax(b, -1)), float32);
  return mean(same).item<double>();
}

TEST(QuantizeModel, CnnRunsInInt8BetweenOneQuantizeAndFloatLogits) {
  auto model = make_cnn();
  GraphModel f = freeze(*model);
  QuantizeReport report;
  GraphModel q = quantize_model(f, data().train.rows(0, 256), all_int8(), &report);
  const std::string text = q.graph_text();
  EXPECT_EQ(count(text, "quantized_conv2d("), 2) << text;
  EXPECT_EQ(count(text, "quantized_matmul("), 2) << text;
  EXPECT_EQ(count(text, "= quantize("), 1) << text;  // the images, once
  EXPECT_EQ(count(text, "dequantize("), 0) << text;  // the logits come out in float
  EXPECT_EQ(count(text, "max_pool2d("), 2) << text;
  EXPECT_EQ(count(text, "uint8"), count(text, "uint8"));
  EXPECT_EQ(count(text, " conv2d("), 0) << text;
  EXPECT_EQ(count(text, " matmul("), 0) << text;
  ASSERT_EQ(report.layers.size(), 4u);
  for (const auto& l : report.layers) {
    EXPECT_TRUE(l.int8) << l.name;
    EXPECT_LT(l.error, 0.1) << l.name;
    EXPECT_GT(l.float_us, 0) << l.name;
    EXPECT_GT(l.int8_us, 0) << l.name;
  }
  EXPECT_EQ(report.layers[0].name, "conv2d 0 [3, 3, 1, 32]");
  EXPECT_EQ(report.layers[3].name, "dense 1 [128, 10]");
  for (int64_t n : {1, 64}) {
    Tensor x = data().test.rows(0, n);
    Tensor yf = f(x), yq = q(x);
    EXPECT_EQ(yq.dtype(), float32);
    const double rel =
        sqrt(mean(square(sub(yq, yf)))).item<double>() / sqrt(mean(square(yf))).item<double>();
    EXPECT_LT(rel, 0.1) << "batch " << n;
  }
  EXPECT_GT(agreement(q(data().test), f(data().test)), 0.9);
}

TEST(QuantizeModel, MlpIsQuantizedWithEachCalibration) {
  auto model = make_mlp();
  GraphModel f = freeze(*model);
  for (Calibration c : {Calibration::kMinMax, Calibration::kPercentile, Calibration::kMse}) {
    QuantizeOptions o = all_int8();
    o.calibration = c;
    QuantizeReport report;
    GraphModel q = quantize_model(f, data().train.rows(0, 256), o, &report);
    EXPECT_EQ(count(q.graph_text(), "quantized_matmul("), 3);
    EXPECT_GT(agreement(q(data().test), f(data().test)), 0.9) << report.calibration;
  }
}

TEST(QuantizeModel, LayersFailingTheCheckStayFloatWithTheReason) {
  auto model = make_cnn();
  GraphModel f = freeze(*model);
  QuantizeOptions o = all_int8();
  o.layer_tolerance = 0;  // nothing is that exact
  QuantizeReport report;
  GraphModel q = quantize_model(f, data().train.rows(0, 64), o, &report);
  EXPECT_EQ(count(q.graph_text(), "quantize"), 0) << q.graph_text();
  for (const auto& l : report.layers) {
    EXPECT_FALSE(l.int8);
    EXPECT_NE(l.reason.find("> tolerance 0.0000"), std::string::npos) << l.reason;
  }
  EXPECT_TRUE(all_close(q(data().test.rows(0, 8)), f(data().test.rows(0, 8)), 1e-5, 1e-5));
  // The default check: each layer is int8 or says why not.
  QuantizeOptions d;
  d.timing_repeats = 5;
  q = quantize_model(f, data().train.rows(0, 64), d, &report);
  for (const auto& l : report.layers) {
    EXPECT_EQ(l.int8, l.reason.empty()) << l.name << ": " << l.reason;
    if (!l.int8) EXPECT_NE(l.reason.find("not faster"), std::string::npos) << l.reason;
  }
  const std::string text = report.to_text();
  EXPECT_NE(text.find("conv2d 1 [3, 3, 32, 64]"), std::string::npos) << text;
  EXPECT_NE(text.find("calibration minmax"), std::string::npos) << text;
}

// A trained mlp: int8 accuracy within the budget; an impossible budget reverts every layer.
TEST(QuantizeModel, AccuracyBudgetRevertsTheWorstLayers) {
  auto model = make_mlp();
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss(true);
  FitOptions fo;
  fo.epochs = 2;
  fo.batch_size = 64;
  fo.verbose = 0;
  fit(*model, opt, loss, data().train, data().train_labels, fo);
  GraphModel f = freeze(*model);
  QuantizeOptions o = all_int8();
  o.validation_images = data().test;
  o.validation_labels = data().test_labels;
  o.max_drop = 1.0;
  QuantizeReport report;
  GraphModel q = quantize_model(f, data().train.rows(0, 512), o, &report);
  ASSERT_TRUE(report.has_accuracy);
  EXPECT_LE(report.float_accuracy - report.int8_accuracy, 1.0) << report.to_text();
  EXPECT_GT(report.int8_accuracy, 50) << report.to_text();
  o.max_drop = -1;  // never met: every layer goes back to float
  q = quantize_model(f, data().train.rows(0, 512), o, &report);
  EXPECT_EQ(report.reverted_for_accuracy, 3) << report.to_text();
  for (const auto& l : report.layers) {
    EXPECT_NE(l.reason.find("reverted: model accuracy drop"), std::string::npos) << l.reason;
  }
  EXPECT_EQ(count(q.graph_text(), "quantize"), 0);
}

// 7-bit weights (what a CPU without VNNI gets by default) stay in [-63, 63]; 8-bit use +-127.
TEST(QuantizeModel, WeightBitsFollowTheCpuOrTheOption) {
  auto model = make_mlp();
  GraphModel f = freeze(*model);
  for (int bits : {0, 7, 8}) {
    QuantizeOptions o = all_int8();
    o.weight_bits = bits;
    QuantizeReport report;
    GraphModel q = quantize_model(f, data().train.rows(0, 64), o, &report);
    const int want = bits ? bits : (int8_has_vnni() ? 8 : 7);
    EXPECT_EQ(report.weight_bits, want);
    int lo = 0, hi = 0;
    for (const auto& v : q.graph().values) {
      if (v.kind != graph::ValueKind::kConstant || v.meta.dtype != DType::kInt8) continue;
      for (int w : v.captured.to_vector<int>()) lo = std::min(lo, w), hi = std::max(hi, w);
    }
    EXPECT_EQ(hi, want == 8 ? 127 : 63) << bits;  // each channel's largest weight hits the top
    EXPECT_GE(lo, -hi) << bits;
  }
}

// The graph as model files store it: JSON by op name and attribute schema, constants beside it.
TEST(QuantizeModel, Int8GraphRoundTripsThroughGraphJson) {
  auto model = make_cnn();
  GraphModel f = freeze(*model);
  GraphModel q = quantize_model(f, data().train.rows(0, 64), all_int8());
  std::vector<std::pair<std::string, Tensor>> stored;
  const nlohmann::json j = graph::graph_to_json(q.graph(), "graph/", stored);
  const std::map<std::string, Tensor> constants(stored.begin(), stored.end());
  graph::Graph back =
      graph::graph_from_json(nlohmann::json::parse(j.dump()), constants, "int8 graph");
  GraphModel loaded(std::move(back), q.inputs(), q.outputs(), "loaded");
  Tensor x = data().test.rows(0, 16);
  EXPECT_TRUE(all_close(loaded(x), q(x), 0, 0));
  EXPECT_EQ(count(loaded.graph_text(), "quantized_conv2d("), 2);
  // int8 weights: about a quarter of the float parameter bytes.
  EXPECT_LT(q.summary().parameter_bytes, 0.27 * f.summary().parameter_bytes);
}

TEST(QuantizeModel, Errors) {
  auto model = make_mlp();
  GraphModel f = freeze(*model);
  expect_error<ValueError>(
      [&] {
        quantize_model(f, zeros({0, 28, 28, 1}));
      },
      {"quantize_model", "calibration batch is empty"});
  QuantizeOptions o;
  o.weight_bits = 4;
  expect_error<ValueError>([&] { quantize_model(f, data().train.rows(0, 8), o); },
                           {"quantize_model", "weight_bits", "got 4"});
  o = {};
  o.calibration = Calibration::kPercentile;
  o.percentile = 20;
  expect_error<ValueError>([&] { quantize_model(f, data().train.rows(0, 8), o); },
                           {"quantize_model", "percentile", "(50, 100]"});
  o = {};
  o.validation_images = data().test.rows(0, 10);
  o.validation_labels = data().test_labels.rows(0, 9);
  expect_error<ValueError>([&] { quantize_model(f, data().train.rows(0, 8), o); },
                           {"quantize_model", "10 validation images but 9 labels"});
  expect_error<ShapeError>(
      [&] {
        quantize_model(f, zeros({4, 28, 28, 3}));
      },
      {"quantize_model", "[4, 28, 28, 3] float32 do not fit input"});
  expect_error<StateError>([&] { quantize_model(GraphModel(), data().train.rows(0, 8)); },
                           {"GraphModel", "empty"});
}

// ---- calibrate_range ---------------------------------------------------------------------------

TEST(CalibrateRange, MinMaxPercentileAndMse) {
  std::vector<float> v(10000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 100) / 100.f;  // [0, 0.99]
  v[17] = 50.f;                                                         // one outlier
  Tensor t = from_vector(v);
  ActivationRange mm = calibrate_range(t, Calibration::kMinMax);
  EXPECT_EQ(mm.lo, 0.f);
  EXPECT_EQ(mm.hi, 50.f);
  ActivationRange p = calibrate_range(t, Calibration::kPercentile, 99.9);
  EXPECT_EQ(p.lo, 0.f);
  EXPECT_NEAR(p.hi, 0.99, 1e-6);
  // A long tail (exponential values): the least-MSE range clips it.
  std::vector<float> e(100000);
  for (size_t i = 0; i < e.size(); ++i) e[i] = -std::log((float(i) + 0.5f) / float(e.size()));
  Tensor te = from_vector(e);
  ActivationRange m = calibrate_range(te, Calibration::kMse);
  EXPECT_LT(m.hi, 0.9f * calibrate_range(te, Calibration::kMinMax).hi);
  EXPECT_GT(m.hi, 3.f);
  EXPECT_EQ(m.lo, 0.f);
  // Always holds zero.
  ActivationRange pos = calibrate_range(full({5}, 3.0), Calibration::kMinMax);
  EXPECT_EQ(pos.lo, 0.f);
  EXPECT_EQ(pos.hi, 3.f);
  expect_error<ValueError>([] { calibrate_range(zeros({0}), Calibration::kMinMax); },
                           {"calibrate_range", "empty"});
  expect_error<ValueError>([] { calibrate_range(zeros({3}, float64), Calibration::kMinMax); },
                           {"calibrate_range", "float32", "float64"});
  expect_error<ValueError>([] { calibrate_range(ones({3}), Calibration::kPercentile, 101); },
                           {"calibrate_range", "percentile"});
}

}  // namespace
}  // namespace kiln
