// import_onnx of QuantizeLinear / DequantizeLinear (src/onnx/import_quantize_ops.cc): known
// values per tensor and per axis, kiln's own QDQ exports imported back (agreeing with the int8
// model they came from within one output step), and every refusal by its message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "kiln/compress.h"
#include "kiln/error.h"
#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "model_builder.h"

namespace kiln {
namespace {

using testing::ModelBuilder;

// A raw-data initializer of any ONNX type.
template <typename T>
void init_raw(ModelBuilder& b, const std::string& name, int type, const std::vector<T>& v,
              std::vector<int64_t> dims) {
  auto* t = b.proto().mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
}

constexpr int kU8 = onnx::TensorProto::UINT8, kS8 = onnx::TensorProto::INT8,
              kF32 = onnx::TensorProto::FLOAT, kI32 = onnx::TensorProto::INT32,
              kF64 = onnx::TensorProto::DOUBLE;

TEST(OnnxImportQuantize, QuantizeThenDequantizePerTensor) {
  ModelBuilder b;
  b.input("x", {-1, 4});
  init_raw<float>(b, "s", kF32, {0.5f}, {});
  init_raw<uint8_t>(b, "z", kU8, {10}, {});
  b.node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.node("DequantizeLinear", {"q", "s", "z"}, {"y"});
  b.output("y");
  GraphModel m = b.import();
  Tensor x = from_vector<float>({0.25f, 0.75f, -100.f, 1.1f, 3.f, -5.f, 200.f, 0.f}, Shape{2, 4});
  // q = clamp(round_half_even(x / 0.5) + 10): 10, 12, 0, 12, 16, 0, 255, 10
  EXPECT_EQ(m(x).to_vector<float>(),
            (std::vector<float>{0.f, 1.f, -5.f, 1.f, 3.f, -5.f, 122.5f, 0.f}));
}

TEST(OnnxImportQuantize, DequantizePerAxisAndInt32) {
  ModelBuilder b;
  b.input("x", {2, 3});
  init_raw<int8_t>(b, "w", kS8, {1, -2, 3, -4, 5, -6}, {2, 3});
  init_raw<float>(b, "ws", kF32, {0.5f, 2.f, 1.f}, {3});
  init_raw<int8_t>(b, "wz", kS8, {0, 1, 0}, {3});
  init_raw<int32_t>(b, "bias", kI32, {1000, -7}, {2});
  init_raw<float>(b, "bs", kF32, {0.01f, 1.f}, {2});
  auto* n = b.node("DequantizeLinear", {"w", "ws", "wz"}, {"wf"});
  ModelBuilder::attr_int(n, "axis", 1);
  n = b.node("DequantizeLinear", {"bias", "bs"}, {"bf"});
  ModelBuilder::attr_int(n, "axis", 0);
  b.node("Add", {"x", "wf"}, {"s"});
  b.node("Unsqueeze", {"bf", "ax"}, {"bf2"});
  b.init_ints("ax", {1});
  b.node("Add", {"s", "bf2"}, {"y"});
  b.output("y");
  GraphModel m = b.import();
  // wf = [[0.5, -6, 3], [-2, 8, -6]]; bf = [10, -7] per row.
  EXPECT_EQ(m(zeros({2, 3})).to_vector<float>(),
            (std::vector<float>{10.5f, 4.f, 13.f, -9.f, 1.f, -13.f}));
}

// Every layer int8, calibrated on noise.
GraphModel int8_model(std::shared_ptr<Sequential> (*make)(VariableStore*)) {
  VariableStore store(31);
  QuantizeOptions o;
  o.keep_slower_float = false;
  o.timing_repeats = 1;
  return quantize_model(freeze(*make(&store)), random_uniform({128, 28, 28, 1}, 0, 1, 3), o);
}

TEST(OnnxImportQuantize, KilnsQdqExportsImportBackWithinOneStep) {
  for (auto make : {make_mlp, make_cnn}) {
    const GraphModel q = int8_model(make);
    const std::string bytes = export_onnx_bytes(q);
    const GraphModel back = import_onnx_bytes(bytes.data(), bytes.size(), "qdq.onnx");
    const Tensor x = random_uniform({64, 28, 28, 1}, 0, 1, 4);
    const Tensor want = q(x), got = back(x);
    ASSERT_EQ(got.shape(), want.shape());
    const std::vector<float> w = want.to_vector<float>(), g = got.to_vector<float>();
    const auto [lo, hi] = std::minmax_element(w.begin(), w.end());
    const double step = (*hi - *lo) / 255.0;
    double worst = 0;
    for (size_t k = 0; k < w.size(); ++k) worst = std::max(worst, std::abs(double(g[k]) - w[k]));
    EXPECT_LE(worst, step) << q.name();
    // The activations stay quantized: quantize nodes survive the import.
    int quantize_nodes = 0;
    for (const auto& n : back.graph().nodes)
      quantize_nodes += std::string(n.op->name) == "quantize";
    EXPECT_GE(quantize_nodes, 3) << q.name();
  }
}

// ---- refusals ------------------------------------------------------------------------------

std::string import_error(ModelBuilder& b) {
  try {
    b.import();
  } catch (const Error& e) {
    return e.what();
  }
  return "(imported)";
}

void expect_error_ends(ModelBuilder& b, const std::string& tail) {
  const std::string msg = import_error(b);
  EXPECT_TRUE(msg.size() >= tail.size() &&
              msg.compare(msg.size() - tail.size(), tail.size(), tail) == 0)
      << msg << "\n  should end with: " << tail;
}

TEST(OnnxImportQuantize, Refusals) {
  {
    ModelBuilder b;
    b.input("x", {2, 3});
    init_raw<float>(b, "s", kF32, {1.f, 2.f, 3.f}, {3});
    init_raw<uint8_t>(b, "z", kU8, {0, 0, 0}, {3});
    b.node("QuantizeLinear", {"x", "s", "z"}, {"y"});
    b.output("y");
    expect_error_ends(b,
                      "per-axis QuantizeLinear (a [3] scale) is not supported; kiln "
                      "quantizes activations per tensor");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3});
    init_raw<float>(b, "s", kF32, {1.f}, {});
    init_raw<float>(b, "z", kF32, {0.f}, {});
    b.node("QuantizeLinear", {"x", "s", "z"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the zero point must be uint8 or int8, got float32");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3});
    init_raw<double>(b, "s", kF64, {1.0}, {});
    b.node("QuantizeLinear", {"x", "s"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the scale must be float32, got float64");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3}, kI32);
    init_raw<float>(b, "s", kF32, {1.f}, {});
    b.node("QuantizeLinear", {"x", "s"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the input must be float32, got int32");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3});
    b.input("s", {});
    b.node("QuantizeLinear", {"x", "s"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the scale (input 's') must be a constant");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3});
    init_raw<float>(b, "s", kF32, {1.f}, {});
    b.node("DequantizeLinear", {"x", "s"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the input must be uint8, int8 or int32, got float32");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 3}, kU8);
    init_raw<float>(b, "s", kF32, {1.f}, {});
    init_raw<int8_t>(b, "z", kS8, {0}, {});
    b.node("DequantizeLinear", {"x", "s", "z"}, {"y"});
    b.output("y");
    expect_error_ends(b, "the zero point's dtype int8 differs from the input's uint8");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 4}, kU8);
    init_raw<float>(b, "s", kF32, {1.f, 2.f, 3.f}, {3});
    auto* n = b.node("DequantizeLinear", {"x", "s"}, {"y"});
    ModelBuilder::attr_int(n, "axis", 1);
    b.output("y");
    expect_error_ends(b,
                      "the scale must be a scalar or have one value per channel of the axis "
                      "(4), got [3]");
  }
  {
    ModelBuilder b;
    b.input("x", {2, 4}, kU8);
    init_raw<float>(b, "s", kF32, {1.f, 2.f, 3.f, 4.f}, {4});
    init_raw<uint8_t>(b, "z", kU8, {0}, {});
    auto* n = b.node("DequantizeLinear", {"x", "s", "z"}, {"y"});
    ModelBuilder::attr_int(n, "axis", 1);
    b.output("y");
    expect_error_ends(b, "the zero point's shape [] differs from the scale's [4]");
  }
}

}  // namespace
}  // namespace kiln
