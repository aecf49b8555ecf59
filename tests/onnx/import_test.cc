// import_onnx on models built here with protobuf's ONNX classes: results against kiln's own ops,
// symbolic dims (one trace for every batch size), the NHWC layout kept through conv chains, and
// every refusal's message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "onnx/model_builder.h"

namespace {

using kiln::Shape;
using kiln::Tensor;
using kiln::testing::ModelBuilder;

std::vector<float> ramp(int64_t n, float scale = 0.1f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 7) % 11) - 0.4f;
  return v;
}

void expect_close(const Tensor& got, const Tensor& want, double tol = 1e-5) {
  ASSERT_EQ(got.shape(), want.shape());
  const auto a = got.to_vector<float>(), b = want.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "element " << i;
}

template <typename E>
std::string error_of(const ModelBuilder& b, const kiln::OnnxImportOptions& options = {}) {
  try {
    b.import(options);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no error";
}

TEST(OnnxImport, GemmReluMatchesKilnAtEveryBatchSizeWithOneTrace) {
  ModelBuilder b;
  b.input("x", {-1, 4});
  b.init("w", ramp(12), {3, 4});
  b.init("bias", {0.1f, -0.2f, 0.3f}, {3});
  ModelBuilder::attr_int(b.node("Gemm", {"x", "w", "bias"}, {"h"}), "transB", 1);
  b.node("Relu", {"h"}, {"y"});
  b.output("y");
  kiln::GraphModel m = b.import();
  ASSERT_EQ(m.inputs().size(), 1u);
  EXPECT_EQ(m.inputs()[0].name, "x");
  EXPECT_EQ(m.inputs()[0].spec.dims, (std::vector<int64_t>{kiln::kUnknownDim, 4}));
  EXPECT_EQ(m.outputs()[0].spec.dims, (std::vector<int64_t>{kiln::kUnknownDim, 3}));
  const Tensor w = kiln::from_vector<float>(ramp(12), Shape{3, 4});
  const Tensor bias = kiln::from_vector<float>({0.1f, -0.2f, 0.3f});
  for (int64_t n : {1, 5, 64}) {
    const Tensor x = kiln::from_vector<float>(ramp(4 * n, 0.3f), Shape{n, 4});
    expect_close(m(x), kiln::relu(kiln::matmul(x, w, false, true) + bias));
  }
  EXPECT_EQ(m.cache_info().traces, 1u);
}

// PyTorch's flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
TEST(OnnxImport, ShapeComputedReshapeKeepsTheBatchUnknown) {
  ModelBuilder b;
  b.input("x", {-1, 2, 3});
  b.init_ints("zero", {0});
  b.init_ints("minus_one", {-1});
  b.node("Shape", {"x"}, {"s"});
  ModelBuilder::attr_int(b.node("Gather", {"s", "zero"}, {"n"}), "axis", 0);
  ModelBuilder::attr_int(b.node("Concat", {"n", "minus_one"}, {"target"}), "axis", 0);
  b.node("Reshape", {"x", "target"}, {"y"});
  b.output("y");
  kiln::GraphModel m = b.import();
  EXPECT_EQ(m.outputs()[0].spec.dims, (std::vector<int64_t>{kiln::kUnknownDim, 6}));
  for (int64_t n : {1, 7}) {
    const Tensor x = kiln::from_vector<float>(ramp(6 * n), Shape{n, 2, 3});
    expect_close(m(x), kiln::reshape(x, Shape{n, 6}));
  }
}

TEST(OnnxImport, AConstantComputedFromASymbolicDimIsRefusedAsData) {
  ModelBuilder b;
  b.input("x", {-1, 2});
  b.node("Shape", {"x"}, {"s"});
  ModelBuilder::attr_int(b.node("Cast", {"s"}, {"sf"}), "to", onnx::TensorProto::FLOAT);
  b.node("Mul", {"x", "sf"}, {"y"}, "scale");
  b.output("y");
  const std::string msg = error_of<kiln::ValueError>(b);
  EXPECT_NE(msg.find("m.onnx: node 'scale' (Mul)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("computed from a symbolic dim"), std::string::npos) << msg;
}

TEST(OnnxImport, AReshapeToTwoSymbolicDimsIsRefused) {
  ModelBuilder b;
  b.input("x", {-1, -1});
  b.init_ints("one", {1});
  b.init_ints("zero", {0});
  b.node("Shape", {"x"}, {"s"});
  b.node("Gather", {"s", "one"}, {"d1"});
  b.node("Gather", {"s", "zero"}, {"d0"});
  ModelBuilder::attr_int(b.node("Concat", {"d1", "d0"}, {"target"}), "axis", 0);
  b.node("Reshape", {"x", "target"}, {"y"}, "swap");
  b.output("y");
  const std::string msg = error_of<kiln::ValueError>(b);
  EXPECT_NE(msg.find("node 'swap' (Reshape): the result has 2 symbolic dims"), std::string::npos)
      << msg;
}

// Conv -> Relu -> Conv -> MaxPool -> GlobalAveragePool stays NHWC inside: one transpose in,
// one out.
TEST(OnnxImport, ConvChainTransposesOnlyAtItsEnds) {
  ModelBuilder b;
  b.input("x", {-1, 2, 6, 6});
  b.init("w1", ramp(3 * 2 * 3 * 3), {3, 2, 3, 3});
  b.init("b1", {0.1f, 0.0f, -0.1f}, {3});
  b.init("w2", ramp(4 * 3 * 3 * 3, 0.05f), {4, 3, 3, 3});
  auto* c1 = b.node("Conv", {"x", "w1", "b1"}, {"c1"});
  ModelBuilder::attr_ints(c1, "pads", {1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  auto* c2 = b.node("Conv", {"r1", "w2"}, {"c2"});
  ModelBuilder::attr_ints(c2, "strides", {2, 2});
  auto* p = b.node("MaxPool", {"c2"}, {"p"});
  ModelBuilder::attr_ints(p, "kernel_shape", {2, 2});
  b.node("GlobalAveragePool", {"p"}, {"y"});
  b.output("y");
  kiln::GraphModel m = b.import();
  const std::string text = m.graph_text();
  size_t transposes = 0;
  for (size_t at = text.find("transpose("); at != std::string::npos;
       at = text.find("transpose(", at + 1)) {
    ++transposes;
  }
  EXPECT_EQ(transposes, 2u) << text;

  // The same in kiln's NHWC ops.
  const Tensor x = kiln::from_vector<float>(ramp(2 * 2 * 36, 0.2f), Shape{2, 2, 6, 6});
  const Tensor w1 =
      kiln::transpose(kiln::from_vector<float>(ramp(54), Shape{3, 2, 3, 3}), {2, 3, 1, 0});
  const Tensor w2 =
      kiln::transpose(kiln::from_vector<float>(ramp(108, 0.05f), Shape{4, 3, 3, 3}), {2, 3, 1, 0});
  Tensor h = kiln::transpose(x, {0, 2, 3, 1});
  h = kiln::conv2d(kiln::pad(h, {{0, 0}, {1, 1}, {1, 1}, {0, 0}}), w1) +
      kiln::from_vector<float>({0.1f, 0.0f, -0.1f});
  h = kiln::relu(h);
  kiln::Conv2DOptions o;
  o.strides = {2, 2};
  h = kiln::max_pool2d(kiln::conv2d(h, w2, o));
  h = kiln::transpose(kiln::mean(h, {1, 2}, true), {0, 3, 1, 2});
  expect_close(m(x), h);
}

TEST(OnnxImport, ConstantInputsBecomeConstants) {
  ModelBuilder b;
  b.input("x", {2, 6});
  b.input("shape", {2}, onnx::TensorProto::INT64);
  b.node("Reshape", {"x", "shape"}, {"y"}, "r");
  b.output("y");
  EXPECT_NE(error_of<kiln::ValueError>(b).find(
                "node 'r' (Reshape): shape (input 'shape') must be a constant"),
            std::string::npos);
  kiln::OnnxImportOptions options;
  options.constant_inputs["shape"] = kiln::from_vector<int64_t>({3, 4});
  kiln::GraphModel m = b.import(options);
  ASSERT_EQ(m.inputs().size(), 1u);
  const Tensor x = kiln::from_vector<float>(ramp(12), Shape{2, 6});
  expect_close(m(x), kiln::reshape(x, Shape{3, 4}));

  kiln::OnnxImportOptions wrong;
  wrong.constant_inputs["nope"] = kiln::from_vector<int64_t>({3, 4});
  EXPECT_NE(error_of<kiln::ValueError>(b, wrong).find(
                "m.onnx: constant input 'nope' is not a graph input"),
            std::string::npos);
  kiln::OnnxImportOptions bad_dtype;
  bad_dtype.constant_inputs["shape"] = kiln::from_vector<float>({3, 4});
  EXPECT_NE(error_of<kiln::ValueError>(b, bad_dtype)
                .find("constant input 'shape' does not fit its declaration"),
            std::string::npos);
}

TEST(OnnxImport, UnsupportedOpIsRefusedWithItsName) {
  ModelBuilder b;
  b.input("x", {2});
  b.node("Erf", {"x"}, {"y"}, "erf_1");
  b.output("y");
  EXPECT_EQ(error_of<kiln::ValueError>(b), "m.onnx: node 'erf_1' (Erf): unsupported op");
}

TEST(OnnxImport, UnsupportedAttributeValueIsRefused) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2});
  b.init("scales", {1, 1, 2, 2}, {4});
  auto* n = b.node("Resize", {"x", "", "scales"}, {"y"}, "up");
  ModelBuilder::attr_string(n, "mode", "cubic");
  b.output("y");
  EXPECT_EQ(error_of<kiln::ValueError>(b),
            "m.onnx: node 'up' (Resize): mode 'cubic' is not supported");
}

TEST(OnnxImport, UnsupportedDtypeIsRefused) {
  ModelBuilder b;
  b.input("x", {2}, onnx::TensorProto::FLOAT16);
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  EXPECT_NE(
      error_of<kiln::ValueError>(b).find("m.onnx: graph input 'x': dtype FLOAT16 is not supported"),
      std::string::npos);
}

TEST(OnnxImport, OpsetOutOfRangeIsRefused) {
  ModelBuilder b(18);
  b.input("x", {2});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  EXPECT_EQ(error_of<kiln::ValueError>(b),
            "m.onnx: opset 18 is not supported (kiln imports opsets up to 17)");
}

TEST(OnnxImport, OpErrorsNameTheFileAndNode) {
  ModelBuilder b;
  b.input("a", {2, 3});
  b.input("b", {4, 5});
  b.node("MatMul", {"a", "b"}, {"y"}, "mm");
  b.output("y");
  const std::string msg = error_of<kiln::ShapeError>(b);
  EXPECT_EQ(msg.rfind("m.onnx: node 'mm' (MatMul): matmul", 0), 0u) << msg;
}

TEST(OnnxImport, MalformedFilesAreFormatErrors) {
  const std::string junk = "\xff\xff\xff\xff garbage";
  try {
    kiln::import_onnx_bytes(junk.data(), junk.size(), "junk.onnx");
    ADD_FAILURE() << "no error";
  } catch (const kiln::FormatError& e) {
    EXPECT_STREQ(e.what(), "junk.onnx: not an ONNX model (the ModelProto does not parse)");
  }
  EXPECT_THROW(kiln::import_onnx("/nonexistent/m.onnx"), kiln::FormatError);

  ModelBuilder no_graph;
  no_graph.proto().clear_graph();
  EXPECT_EQ(error_of<kiln::FormatError>(no_graph), "m.onnx: the model has no graph");

  ModelBuilder short_data;
  short_data.input("x", {2});
  short_data.init("w", {1.0f}, {2});
  short_data.node("Add", {"x", "w"}, {"y"});
  short_data.output("y");
  EXPECT_EQ(error_of<kiln::FormatError>(short_data),
            "m.onnx: initializer tensor 'w': [2] needs 2 elements, float_data holds 1");

  // Huge dims with no data: refused before anything is allocated (onnx_fuzz found the
  // allocation of the dims' size first).
  ModelBuilder huge;
  huge.input("x", {2});
  auto* h = huge.proto().mutable_graph()->add_initializer();
  h->set_name("w");
  h->set_data_type(onnx::TensorProto::INT64);
  h->add_dims(100000);
  h->add_dims(100000);
  huge.node("Add", {"x", "w"}, {"y"});
  huge.output("y");
  EXPECT_EQ(error_of<kiln::FormatError>(huge),
            "m.onnx: initializer tensor 'w': [100000, 100000] needs 10000000000 elements, "
            "int64_data holds 0");

  ModelBuilder raw;
  raw.input("x", {2});
  auto* t = raw.proto().mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(1000000000);
  t->set_raw_data("abcd");
  raw.node("Add", {"x", "w"}, {"y"});
  raw.output("y");
  EXPECT_EQ(error_of<kiln::FormatError>(raw),
            "m.onnx: initializer tensor 'w': [1000000000] float32 needs 4000000000 bytes of "
            "raw_data, got 4");

  ModelBuilder undefined;
  undefined.input("x", {2});
  undefined.node("Relu", {"nowhere"}, {"y"}, "r");
  undefined.output("y");
  EXPECT_EQ(error_of<kiln::FormatError>(undefined),
            "m.onnx: node 'r' (Relu): value 'nowhere' is used before it is defined");

  ModelBuilder twice;
  twice.input("x", {2});
  twice.node("Relu", {"x"}, {"y"}, "r1");
  twice.node("Relu", {"x"}, {"y"}, "r2");
  twice.output("y");
  EXPECT_EQ(error_of<kiln::FormatError>(twice),
            "m.onnx: value 'y' is defined twice (again by m.onnx: node 'r2' (Relu))");
}

TEST(OnnxImport, SupportedOpsListsTheIssuesCoverage) {
  const std::vector<std::string> ops = kiln::onnx_supported_ops();
  for (const char* op : {"Conv",
                         "ConvTranspose",
                         "BatchNormalization",
                         "Gemm",
                         "MatMul",
                         "Add",
                         "Sub",
                         "Mul",
                         "Div",
                         "Pow",
                         "Sqrt",
                         "Exp",
                         "Log",
                         "Neg",
                         "Abs",
                         "Max",
                         "Min",
                         "Relu",
                         "LeakyRelu",
                         "Sigmoid",
                         "Tanh",
                         "HardSigmoid",
                         "HardSwish",
                         "Clip",
                         "Softmax",
                         "LogSoftmax",
                         "MaxPool",
                         "AveragePool",
                         "GlobalAveragePool",
                         "Flatten",
                         "Reshape",
                         "Transpose",
                         "Concat",
                         "Slice",
                         "Squeeze",
                         "Unsqueeze",
                         "Gather",
                         "Shape",
                         "Cast",
                         "Constant",
                         "ReduceMean",
                         "ReduceSum",
                         "ReduceMax",
                         "Resize",
                         "Pad",
                         "Identity",
                         "Dropout"}) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
  }
}

}  // namespace

namespace {

// Ops that build index tables or shape-only inputs at import (ConvTranspose, Resize, padded
// AveragePool, opset-11 Softmax's flattening) under a symbolic batch: a batch of 3 gives what
// each example gives alone.
TEST(OnnxImport, SymbolicBatchGivesEachExamplesResult) {
  ModelBuilder b(11);
  b.input("x", {-1, 1, 3, 3});
  b.init("w", ramp(1 * 2 * 3 * 3), {1, 2, 3, 3});
  ModelBuilder::attr_ints(b.node("ConvTranspose", {"x", "w"}, {"t"}), "strides", {2, 2});
  b.init("scales", {1, 1, 2, 1}, {4});
  b.init("roi", {}, {0});
  b.node("Resize", {"t", "roi", "scales"}, {"r"});
  auto* pool = b.node("AveragePool", {"r"}, {"p"});
  ModelBuilder::attr_ints(pool, "kernel_shape", {3, 3});
  ModelBuilder::attr_ints(pool, "pads", {1, 1, 1, 1});
  ModelBuilder::attr_int(b.node("Softmax", {"p"}, {"y"}), "axis", 1);
  b.output("y");
  kiln::GraphModel m = b.import();
  EXPECT_EQ(m.outputs()[0].spec.dims[0], kiln::kUnknownDim);
  const Tensor x = kiln::from_vector<float>(ramp(27, 0.37f), Shape{3, 1, 3, 3});
  const Tensor all = m(x);
  for (int64_t i = 0; i < 3; ++i) {
    expect_close(kiln::slice(all, {i}, {i + 1}), m(kiln::slice(x, {i}, {i + 1})));
  }
}

}  // namespace
