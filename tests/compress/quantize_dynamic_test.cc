// quantize_dynamic: which nodes are rewritten (matmul + bias + relu into one op; conv2d stays
// float), accuracy close to float on a Fashion-MNIST mlp, any batch size, the model file round
// trip, weight bits, and errors.
#include <gtest/gtest.h>

#include <string>

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

struct Data {
  Tensor train, train_labels, test, test_labels;
  bool real = false;
};
// Fashion-MNIST when installed (as tests/compress/quantize_test.cc), else random images.
const Data& data() {
  static const Data d = [] {
    try {
      FashionMnist f = load_fashion_mnist();
      return Data{f.train_images.rows(0, 3000).clone(), f.train_labels.rows(0, 3000).clone(),
                  f.test_images.rows(0, 1000).clone(), f.test_labels.rows(0, 1000).clone(), true};
    } catch (const Error&) {
      return Data{random_tensor({3000, 28, 28, 1}, float32, 1, 0, 1),
                  random_tensor({3000}, DType::kInt32, 2, 0, 10),
                  random_tensor({1000, 28, 28, 1}, float32, 3, 0, 1),
                  random_tensor({1000}, DType::kInt32, 4, 0, 10), false};
    }
  }();
  return d;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  return mean(cast(equal(argmax(logits, -1), cast(labels, DType::kInt64)), float32)).item<double>();
}

// The mlp trained for one epoch on 3000 images (shared by the tests below).
const GraphModel& trained_mlp() {
  static const GraphModel g = [] {
    VariableStore store(21);
    auto model = make_mlp(&store);
    Adam opt(1e-3);
    SparseCategoricalCrossentropy loss(true);
    FitOptions o;
    o.epochs = 1;
    o.batch_size = 64;
    o.verbose = 0;
    fit(*model, opt, loss, data().train, data().train_labels, o);
    return freeze(*model);
  }();
  return g;
}

TEST(QuantizeDynamic, MlpMatmulsBecomeOneOpEachAndStayCloseToFloat) {
  const GraphModel& f = trained_mlp();
  int rewritten = 0;
  GraphModel d = quantize_dynamic(f, {}, &rewritten);
  EXPECT_EQ(rewritten, 3);
  const std::string text = d.graph_text();
  EXPECT_EQ(count(text, "dynamic_quantized_matmul("), 3) << text;
  EXPECT_EQ(count(text, " matmul("), 0) << text;
  EXPECT_EQ(count(text, " add("), 0) << text;   // biases absorbed
  EXPECT_EQ(count(text, " relu("), 0) << text;  // and the ReLUs
  EXPECT_EQ(d.name(), f.name() + "_dynamic");
  const Tensor yf = f(data().test), yd = d(data().test);
  const double af = accuracy(yf, data().test_labels), ad = accuracy(yd, data().test_labels);
  if (data().real) {
    EXPECT_GT(af, 0.7);
  }
  EXPECT_NEAR(ad, af, 0.01) << "float " << af << ", dynamic int8 " << ad;
  EXPECT_GT(mean(cast(equal(argmax(yf, -1), argmax(yd, -1)), float32)).item<double>(), 0.97);
  // Any batch size (the activation range is the batch's own).
  for (int64_t n : {1, 37}) {
    const Tensor x = data().test.rows(0, n);
    const double rel = sqrt(mean(square(sub(d(x), f(x))))).item<double>() /
                       sqrt(mean(square(f(x)))).item<double>();
    EXPECT_LT(rel, 0.05) << "batch " << n;
  }
}

TEST(QuantizeDynamic, ConvolutionsStayFloat) {
  VariableStore store(22);
  auto cnn = make_cnn(&store);
  GraphModel f = freeze(*cnn);
  int rewritten = 0;
  GraphModel d = quantize_dynamic(f, {}, &rewritten);
  EXPECT_EQ(rewritten, 2);
  const std::string text = d.graph_text();
  EXPECT_EQ(count(text, "dynamic_quantized_matmul("), 2) << text;
  EXPECT_EQ(count(text, " conv2d("), 2) << text;
  const Tensor x = data().test.rows(0, 16);
  EXPECT_GT(mean(cast(equal(argmax(f(x), -1), argmax(d(x), -1)), float32)).item<double>(), 0.8);
}

TEST(QuantizeDynamic, SavesAndLoadsAsAModelFile) {
  testing::TempDir dir;
  GraphModel d = quantize_dynamic(trained_mlp());
  const std::string path = dir.path() + "/dynamic.kiln";
  save_model(d, path);
  LoadedModel m = load_model(path);
  ASSERT_FALSE(m.graph.empty());
  EXPECT_EQ(count(m.graph.graph_text(), "dynamic_quantized_matmul("), 3);
  const Tensor x = data().test.rows(0, 50);
  EXPECT_TRUE(all_close(m.predict(x), d(x), 0, 0));
}

TEST(QuantizeDynamic, WeightBitsChooseTheGrid) {
  const GraphModel& f = trained_mlp();
  GraphModel d7 = quantize_dynamic(f, {.weight_bits = 7});
  GraphModel d8 = quantize_dynamic(f, {.weight_bits = 8});
  const Tensor x = data().test.rows(0, 200);
  const Tensor yf = f(x);
  auto err = [&](const GraphModel& g) { return sqrt(mean(square(sub(g(x), yf)))).item<double>(); };
  EXPECT_LT(err(d8), err(d7));  // finer weights, smaller error
  expect_error<ValueError>([&] { quantize_dynamic(f, {.weight_bits = 4}); },
                           {"quantize_dynamic", "weight_bits", "0 (by CPU), 7 or 8", "got 4"});
}

TEST(QuantizeDynamic, LeavesGraphsWithoutConstantMatmulsAlone) {
  // A graph whose only matmul has a non-constant weight: nothing to rewrite.
  VariableStore store(23);
  auto model = std::make_shared<Sequential>();
  model->set_store(store);
  model->emplace<Flatten>();
  model->output_shape(Shape{1, 4, 4, 1});
  GraphModel f = freeze(*model);
  int rewritten = -1;
  GraphModel d = quantize_dynamic(f, {}, &rewritten);
  EXPECT_EQ(rewritten, 0);
  const Tensor x = random_tensor({3, 4, 4, 1});
  EXPECT_TRUE(all_close(d(x), f(x), 0, 0));
}

}  // namespace
}  // namespace kiln
