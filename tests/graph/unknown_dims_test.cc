// A kiln::function whose input signature leaves the batch unknown and that takes gradients
// inside the trace: the gradient ops read shapes from their inputs, never from attrs, so the
// one graph traced serves every batch size with the gradients eager mode gives.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/function.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::random_tensor;

// The weights: plain tensors captured by the trace (constants), watched by the tape.
struct Weights {
  Tensor filter = random_tensor({3, 3, 2, 3}, float32, 1, -0.5, 0.5);
  Tensor scale = random_tensor({3}, float32, 2);
  Tensor dense_w = random_tensor({27, 4}, float32, 3, -0.3, 0.3);
  Tensor dense_b = random_tensor({4}, float32, 4);
};

// Loss and its gradients for x [B, 6, 6, 2] through conv2d, both pools, broadcasting adds
// (against a [3] vector and against a per-example [B, 1, 1, 3] mean), a reshape, a dense
// layer, and sum and mean reductions over the batch and over other axes.
std::vector<Tensor> loss_and_gradients(const Weights& w, const Tensor& x) {
  GradientTape tape;
  std::vector<Tensor> sources = {x, w.filter, w.scale, w.dense_w, w.dense_b};
  for (const Tensor& t : sources) tape.watch(t);
  Conv2DOptions same;
  same.padding = Padding::kSame;
  Tensor h = relu(conv2d(x, w.filter, same));                     // [B, 6, 6, 3]
  Tensor p = max_pool2d(h) + avg_pool2d(h, {.pool_size = {3, 3},  // [B, 3, 3, 3]
                                            .strides = {2, 2},
                                            .padding = Padding::kSame});
  Tensor q = p * w.scale + mean(p, {1, 2}, true);                  // [B, 3, 3, 3]
  Tensor y = matmul(reshape(q, {-1, 27}), w.dense_w) + w.dense_b;  // [B, 4]
  Tensor loss = mean(square(y)) + sum(mean(q, {1, 2})) * 0.01 + mean(sum(x, {0}));
  std::vector<Tensor> out = {loss};
  for (const Tensor& g : tape.gradient(loss, sources)) out.push_back(g);
  return out;
}

TEST(UnknownDims, OneTraceServesEveryBatchSizeWithEagerGradients) {
  const Weights w;
  int runs = 0;
  Function f(
      [&](const std::vector<Tensor>& args, bool) {
        ++runs;
        return loss_and_gradients(w, args[0]);
      },
      {.input_signature = std::vector<TensorSpec>{{{kUnknownDim, 6, 6, 2}, float32}}});
  const char* names[] = {"loss", "dx", "dfilter", "dscale", "dense_w", "dense_b"};
  for (int64_t batch : {1, 7, 64}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    Tensor x = random_tensor({batch, 6, 6, 2}, float32, 10 + batch);
    std::vector<Tensor> graph = f(std::vector<Tensor>{x});
    std::vector<Tensor> eager = loss_and_gradients(w, x);
    ASSERT_EQ(graph.size(), eager.size());
    for (size_t k = 0; k < eager.size(); ++k) {
      EXPECT_TRUE(all_close(graph[k], eager[k], 1e-5, 1e-5)) << names[k];
    }
  }
  EXPECT_EQ(f.cache_info().traces, 1u);
  EXPECT_EQ(runs, 2);  // the trace and the probe at another size; then never again
  EXPECT_EQ(f.cache_info().hits, 2u);
}

TEST(UnknownDims, GradientGraphHoldsNoBatchSize) {
  // The graph traced for a batch of 5 names no 5 anywhere in its attributes.
  const Weights w;
  Function f([&](const std::vector<Tensor>& args, bool) { return loss_and_gradients(w, args[0]); },
             {.input_signature = std::vector<TensorSpec>{{{kUnknownDim, 6, 6, 2}, float32}}});
  const std::string text = f.graph_text({zeros({5, 6, 6, 2})}, false, /*optimized=*/false);
  for (const char* op : {"conv2d_backward_input", "avg_pool2d_grad", "max_pool2d_grad",
                         "sum_to_like", "reshape_like", "mean_grad", "sum_grad"}) {
    EXPECT_NE(text.find(std::string("= ") + op + "("), std::string::npos) << op << "\n" << text;
  }
  size_t at = 0;
  while ((at = text.find('{', at)) != std::string::npos) {
    const std::string attrs = text.substr(at, text.find('}', at) - at);
    EXPECT_EQ(attrs.find("5"), std::string::npos) << attrs;
    ++at;
  }
}

// Flatten reshapes with a -1 batch: the reference models trace once for any batch size, also
// when the first call has batch 1 (traced at 2: a size-1 dim would broadcast).
TEST(UnknownDims, ModelsWithFlattenServeEveryBatchSize) {
  for (bool cnn : {false, true}) {
    SCOPED_TRACE(cnn ? "cnn" : "mlp");
    auto model = cnn ? make_cnn() : make_mlp();
    FunctionOptions o;
    o.input_signature = std::vector<TensorSpec>{{{kUnknownDim, 28, 28, 1}, float32}};
    Function f = function([&](const Tensor& x) { return (*model)(x, false); }, o);
    for (int64_t b : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{2}}) {  // first call at 1
      Tensor x = random_tensor({b, 28, 28, 1}, float32, 10 + b, 0, 1);
      EXPECT_TRUE(all_close(f(x), (*model)(x, false), 1e-5, 1e-6)) << b;
    }
    EXPECT_EQ(f.cache_info().traces, 1u);
  }
}

}  // namespace
}  // namespace kiln
