// Every kind of refusal of import_onnx, by its message: unsupported attribute values, dtypes,
// symbolic dims where a size would be baked in, malformed parameters, and the allocation budget.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/onnx.h"
#include "onnx/model_builder.h"

namespace {

using kiln::testing::ModelBuilder;

struct Case {
  const char* name;
  std::function<void(ModelBuilder&)> build;
  const char* message;  // a part of the ValueError / FormatError message
};

std::string import_error(const Case& c) {
  ModelBuilder b;
  c.build(b);
  b.output("y");
  try {
    b.import();
  } catch (const kiln::Error& e) {
    return e.what();
  }
  return "no error";
}

void conv_input(ModelBuilder& b, std::vector<int64_t> dims) {
  b.input("x", dims);
  b.init("w", std::vector<float>(2 * 1 * 3 * 3, 0.5f), {2, 1, 3, 3});
}

const Case kCases[] = {
    {"ConvPadsOnSymbolicSpatialDims",
     [](ModelBuilder& b) {
       conv_input(b, {1, 1, -1, -1});
       ModelBuilder::attr_ints(b.node("Conv", {"x", "w"}, {"y"}, "c"), "pads", {1, 0, 0, 1});
     },
     "node 'c' (Conv): explicit padding of a symbolic spatial dim is not supported"},
    {"ConvUnknownAutoPad",
     [](ModelBuilder& b) {
       conv_input(b, {1, 1, 5, 5});
       ModelBuilder::attr_string(b.node("Conv", {"x", "w"}, {"y"}, "c"), "auto_pad", "WRAP");
     },
     "node 'c' (Conv): auto_pad 'WRAP' is not supported"},
    {"ConvKernelShapeMismatch",
     [](ModelBuilder& b) {
       conv_input(b, {1, 1, 5, 5});
       ModelBuilder::attr_ints(b.node("Conv", {"x", "w"}, {"y"}, "c"), "kernel_shape", {2, 2});
     },
     "node 'c' (Conv): kernel_shape does not match the filter"},
    {"Conv3D",
     [](ModelBuilder& b) {
       conv_input(b, {1, 1, 4, 4, 4});
       b.node("Conv", {"x", "w"}, {"y"}, "c");
     },
     "node 'c' (Conv): only 1-D and 2-D (NCL, NCHW) inputs are supported, got rank 5"},
    {"HugeStrides",
     [](ModelBuilder& b) {
       conv_input(b, {1, 1, 5, 5});
       ModelBuilder::attr_ints(b.node("Conv", {"x", "w"}, {"y"}, "c"), "strides",
                               {int64_t{1} << 40, 1});
     },
     "node 'c' (Conv): kernel, strides, dilations and pads must be below 2^24"},
    {"MaxPoolDilations",
     [](ModelBuilder& b) {
       b.input("x", {1, 1, 6, 6});
       auto* n = b.node("MaxPool", {"x"}, {"y"}, "p");
       ModelBuilder::attr_ints(n, "kernel_shape", {2, 2});
       ModelBuilder::attr_ints(n, "dilations", {2, 2});
     },
     "node 'p' (MaxPool): dilations other than 1 are not supported"},
    {"MaxPoolIndices",
     [](ModelBuilder& b) {
       b.input("x", {1, 1, 6, 6});
       auto* n = b.node("MaxPool", {"x"}, {"y", "idx"}, "p");
       ModelBuilder::attr_ints(n, "kernel_shape", {2, 2});
     },
     "node 'p' (MaxPool): output 1 ('idx') is not supported (kiln computes outputs 0 to 0)"},
    {"PoolWithoutKernel",
     [](ModelBuilder& b) {
       b.input("x", {1, 1, 6, 6});
       b.node("AveragePool", {"x"}, {"y"}, "p");
     },
     "node 'p' (AveragePool): kernel_shape must list one value per spatial dim"},
    {"ConvTransposeOutputPadding",
     [](ModelBuilder& b) {
       conv_input(b, {1, 2, 3, 3});
       ModelBuilder::attr_ints(b.node("ConvTranspose", {"x", "w"}, {"y"}, "t"), "output_padding",
                               {1, 1});
     },
     "node 't' (ConvTranspose): output_padding must be in [0, max(stride, dilation))"},
    {"BatchNormTraining",
     [](ModelBuilder& b) {
       b.input("x", {1, 2, 2, 2});
       for (const char* p : {"s", "bias", "m", "v"}) b.init(p, {1, 1}, {2});
       ModelBuilder::attr_int(
           b.node("BatchNormalization", {"x", "s", "bias", "m", "v"}, {"y"}, "bn"), "training_mode",
           1);
     },
     "node 'bn' (BatchNormalization): training_mode=1 is not supported"},
    {"CastToFloat16",
     [](ModelBuilder& b) {
       b.input("x", {2});
       ModelBuilder::attr_int(b.node("Cast", {"x"}, {"y"}, "k"), "to", onnx::TensorProto::FLOAT16);
     },
     "node 'k' (Cast): dtype FLOAT16 is not supported"},
    {"SqueezeANonOneDim",
     [](ModelBuilder& b) {
       b.input("x", {2, 3});
       b.init_ints("axes", {1});
       b.node("Squeeze", {"x", "axes"}, {"y"}, "s");
     },
     "node 's' (Squeeze): cannot squeeze dim 1 of [2, 3]"},
    {"SplitLengths",
     [](ModelBuilder& b) {
       b.input("x", {6});
       b.init_ints("split", {2, 2});
       b.node("Split", {"x", "split"}, {"y", "z"}, "s");
     },
     "node 's' (Split): the split lengths do not add up to the dim"},
    {"GatherOutOfRange",
     [](ModelBuilder& b) {
       b.input("x", {3});
       b.init_ints("i", {5});
       b.node("Gather", {"x", "i"}, {"y"}, "g");
     },
     "node 'g' (Gather): index 5 is out of range for dim 3"},
    {"NegativeIndicesIntoSymbolicDim",
     [](ModelBuilder& b) {
       b.input("x", {-1, 2});
       b.init_ints("i", {-1});
       b.node("Gather", {"x", "i"}, {"y"}, "g");
     },
     "node 'g' (Gather): negative indices into a symbolic dim are not supported"},
    {"NegativeSliceStepOnSymbolicDim",
     [](ModelBuilder& b) {
       b.input("x", {-1, 2});
       b.init_ints("s", {-1});
       b.init_ints("e", {-100});
       b.init_ints("a", {0});
       b.init_ints("st", {-1});
       b.node("Slice", {"x", "s", "e", "a", "st"}, {"y"}, "sl");
     },
     "node 'sl' (Slice): a negative step on a symbolic dim is not supported"},
    {"ExpandToASymbolicDim",
     [](ModelBuilder& b) {
       b.input("x", {-1, 1});
       b.init_ints("shape", {1, 3});
       b.node("Expand", {"x", "shape"}, {"y"}, "ex");
     },
     "node 'ex' (Expand): expanding to a symbolic dim is not supported"},
    {"ReflectPadTooWide",
     [](ModelBuilder& b) {
       b.input("x", {2});
       b.init_ints("pads", {2, 0});
       ModelBuilder::attr_string(b.node("Pad", {"x", "pads"}, {"y"}, "pd"), "mode", "reflect");
     },
     "node 'pd' (Pad): reflect padding must be smaller than the dim"},
    {"PadModeWrap",
     [](ModelBuilder& b) {
       b.input("x", {2});
       b.init_ints("pads", {1, 0});
       ModelBuilder::attr_string(b.node("Pad", {"x", "pads"}, {"y"}, "pd"), "mode", "wrap");
     },
     "node 'pd' (Pad): mode 'wrap' is not supported"},
    {"ResizeCropAndResize",
     [](ModelBuilder& b) {
       b.input("x", {1, 1, 2, 2});
       b.init("scales", {1, 1, 2, 2}, {4});
       ModelBuilder::attr_string(b.node("Resize", {"x", "", "scales"}, {"y"}, "r"),
                                 "coordinate_transformation_mode", "tf_crop_and_resize");
     },
     "node 'r' (Resize): coordinate_transformation_mode tf_crop_and_resize is not supported"},
    {"ResizeHugeScale",
     [](ModelBuilder& b) {
       b.input("x", {1, 1, 2, 2});
       b.init("scales", {1, 1, 1e9f, 1}, {4});
       b.node("Resize", {"x", "", "scales"}, {"y"}, "r");
     },
     "node 'r' (Resize): scales must be in (0, 2^24)"},
    {"ConstantOfShapePastTheBudget",
     [](ModelBuilder& b) {
       b.init_ints("shape", {1 << 20, 1 << 10});
       b.node("ConstantOfShape", {"shape"}, {"y"}, "big");
     },
     "node 'big' (ConstantOfShape): would build a constant of 1073741824 elements, past the "
     "import's allocation budget"},
    {"ReshapeWithTwoMinusOnes",
     [](ModelBuilder& b) {
       b.input("x", {2, 3});
       b.init_ints("shape", {-1, -1});
       b.node("Reshape", {"x", "shape"}, {"y"}, "r");
     },
     "node 'r' (Reshape): the shape has more than one -1"},
    {"ConcatWithoutAxis",
     [](ModelBuilder& b) {
       b.input("x", {2});
       b.node("Concat", {"x", "x"}, {"y"}, "cc");
     },
     "node 'cc' (Concat): attribute 'axis' is required"},
    {"LegacyBroadcast",
     [](ModelBuilder& b) {
       b.input("x", {2, 3});
       b.input("z", {3});
       ModelBuilder::attr_int(b.node("Add", {"x", "z"}, {"y"}, "a"), "broadcast", 1);
     },
     "node 'a' (Add): legacy broadcast attributes are not supported"},
    {"ForeignDomain",
     [](ModelBuilder& b) {
       b.input("x", {2});
       b.node("Relu", {"x"}, {"y"}, "r")->set_domain("com.microsoft");
     },
     "node 'r' (Relu): domain 'com.microsoft' is not supported"},
    {"ExternalData",
     [](ModelBuilder& b) {
       b.input("x", {2});
       auto* t = b.proto().mutable_graph()->add_initializer();
       t->set_name("w");
       t->set_data_type(onnx::TensorProto::FLOAT);
       t->add_dims(2);
       t->set_data_location(onnx::TensorProto::EXTERNAL);
       b.node("Add", {"x", "w"}, {"y"});
     },
     "initializer tensor 'w': external data is not supported (embed the tensor's data)"},
    {"InputWithoutShape",
     [](ModelBuilder& b) {
       auto* vi = b.proto().mutable_graph()->add_input();
       vi->set_name("x");
       vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
       b.node("Relu", {"x"}, {"y"});
     },
     "graph input 'x' has no declared shape (its rank is needed)"},
};

class OnnxRefusal : public ::testing::TestWithParam<Case> {};

TEST_P(OnnxRefusal, NamesWhatIsWrong) {
  const std::string msg = import_error(GetParam());
  EXPECT_NE(msg.find(GetParam().message), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("m.onnx: ", 0), 0u) << msg;  // the file first
}

INSTANTIATE_TEST_SUITE_P(Cases, OnnxRefusal, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
