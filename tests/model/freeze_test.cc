// freeze(): each rewrite checked on the graph's text and on outputs against the unfrozen model.
#include <gtest/gtest.h>

#include "kiln/cache_report.h"
#include "kiln/data.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// Conv2D (linear) -> BatchNormalization -> relu -> MaxPool -> Dropout -> Flatten -> Dense, with
// BatchNormalization's statistics and scales set away from their initial values.
std::shared_ptr<Sequential> bn_dropout_cnn() {
  auto m = std::make_shared<Sequential>("bn_cnn");
  m->emplace<Conv2D>(8, std::array<int64_t, 2>{3, 3},
                     Conv2DLayerOptions{.padding = Padding::kSame});
  auto& bn = m->emplace<BatchNormalization>();
  m->emplace<Activation>("relu");
  m->emplace<MaxPool2D>();
  m->emplace<Dropout>(0.3);
  m->emplace<Flatten>();
  m->emplace<Dense>(16);
  m->emplace<BatchNormalization>();
  m->emplace<Dense>(10);
  m->output_shape(Shape{1, 28, 28, 1});
  bn.moving_mean().assign(random_tensor({8}, float32, 11));
  bn.moving_variance().assign(random_tensor({8}, float32, 12, 0.5, 2.0));
  bn.gamma().assign(random_tensor({8}, float32, 13, 0.5, 1.5));
  bn.beta().assign(random_tensor({8}, float32, 14));
  return m;
}

// Fashion-MNIST test images when the data set is installed, else random images.
Tensor images(int64_t n) {
  try {
    return load_fashion_mnist().test_images.rows(0, n).clone();
  } catch (const Error&) {
    return random_tensor({n, 28, 28, 1}, float32, 7, 0, 1);
  }
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Freeze, MlpAndCnnMatchTheUnfrozenModel) {
  for (auto make : {make_mlp, make_cnn}) {
    auto model = make(nullptr);
    GraphModel frozen = freeze(*model);
    for (int64_t n : {1, 64}) {
      Tensor x = images(n);
      EXPECT_TRUE(all_close(frozen(x), (*model)(x, false), 1e-5, 1e-5)) << model->name();
    }
    EXPECT_EQ(frozen.cache_info().traces, 1u);  // one trace for both batch sizes
    const std::string text = frozen.graph_text();
    EXPECT_EQ(text.find("variable"), std::string::npos) << text;
    EXPECT_EQ(frozen.inputs()[0].spec.dims, (std::vector<int64_t>{kUnknownDim, 28, 28, 1}));
  }
}

TEST(Freeze, BatchNormFoldsIntoTheConvAndDenseBeforeIt) {
  auto model = bn_dropout_cnn();
  GraphModel frozen = freeze(*model);
  const std::string text = frozen.graph_text();
  // What is left of two BatchNormalizations and a bias: one add after the conv, one after the
  // dense; no sub, div, sqrt or mul, and no dropout.
  EXPECT_EQ(count(text, "= sub("), 0) << text;
  EXPECT_EQ(count(text, "= div("), 0) << text;
  EXPECT_EQ(count(text, "= mul("), 0) << text;
  EXPECT_EQ(count(text, "sqrt("), 0) << text;
  EXPECT_EQ(count(text, "dropout"), 0) << text;
  EXPECT_EQ(count(text, "= add("), 3) << text;
  for (int64_t n : {1, 64}) {
    Tensor x = images(n);
    EXPECT_TRUE(all_close(frozen(x), (*model)(x, false), 1e-5, 1e-5));
  }
  // Bias, activation and the pool after them fuse into the one-channel conv at run time.
  const std::string fused = frozen.graph_text(true);
  EXPECT_NE(fused.find("fused_conv2d_pool("), std::string::npos) << fused;
  EXPECT_EQ(fused.find("max_pool2d("), std::string::npos) << fused;

  FreezeOptions keep;
  keep.fold_batch_norm = false;
  EXPECT_GT(count(freeze(*model, keep).graph_text(), "sqrt(") +
                count(freeze(*model, keep).graph_text(), "div("),
            0);
}

TEST(Freeze, CopiesVariablesAndTheReportSaysWhichVersion) {
  auto model = make_mlp(nullptr);
  Variable k = model->weights()[0];
  k.assign(random_tensor(k.shape(), float32, 5));
  const uint64_t version = k.version();
  GraphModel frozen = freeze(*model);
  Tensor x = images(2);
  Tensor before = frozen(x);
  k.assign(zeros(k.shape()));  // later training does not reach the frozen graph
  EXPECT_TRUE(all_close(frozen(x), before, 0, 0));
  bool listed = false;
  for (const FoldedVariableInfo& f : frozen.folded_variables()) {
    listed |= f.name == k.name() && f.version == version;
  }
  EXPECT_TRUE(listed);
  CacheReport r = cache_report();
  bool reported = false;
  for (const FoldedConstantsSection& s : r.folded_constants) {
    auto it = s.variable_versions.find(k.name());
    reported |= it != s.variable_versions.end() && it->second == version;
  }
  EXPECT_TRUE(reported) << r.to_text();
  EXPECT_NE(r.to_text().find("from " + k.name() + " @ version " + std::to_string(version)),
            std::string::npos);
}

TEST(Freeze, ErrorsNameTheModel) {
  Sequential unbuilt("unbuilt");
  unbuilt.emplace<Dense>(3);
  expect_error<StateError>([&] { freeze(unbuilt); }, {"freeze", "'unbuilt'", "not built"});
  FreezeOptions empty;
  empty.input_signature = std::vector<TensorSpec>{};
  expect_error<ValueError>([&] { freeze(unbuilt, empty); }, {"input signature is empty"});
}

}  // namespace
}  // namespace kiln
