// kiln -> ONNX -> kiln: the built-in mlp and cnn exported (export_onnx_bytes) and imported
// again give the frozen model's outputs at batch 1 and 64, and the imported cnn has no
// transposes left: the exporter's NHWC <-> NCHW Transposes cancel against the importer's
// NHWC convolutions.
#include <gtest/gtest.h>

#include <string>

#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "kiln/nn/variable_store.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"

namespace {

void round_trip(kiln::Layer& model, size_t expected_transposes) {
  kiln::GraphModel frozen = kiln::freeze(model);
  const std::string bytes = kiln::export_onnx_bytes(frozen);
  kiln::GraphModel back = kiln::import_onnx_bytes(bytes.data(), bytes.size(), "exported.onnx");
  ASSERT_EQ(back.inputs().size(), 1u);
  EXPECT_EQ(back.inputs()[0].spec.dims, frozen.inputs()[0].spec.dims);
  const std::string text = back.graph_text();
  size_t transposes = 0;
  for (size_t at = text.find("transpose("); at != std::string::npos;
       at = text.find("transpose(", at + 1)) {
    ++transposes;
  }
  EXPECT_EQ(transposes, expected_transposes) << text;
  std::vector<int64_t> dims = frozen.inputs()[0].spec.dims;
  for (int64_t n : {1, 64}) {
    dims[0] = n;
    const kiln::Tensor x = kiln::random_normal(kiln::Shape(dims), 0, 1, 3);
    const kiln::Tensor want = frozen(x), got = back(x);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LT(kiln::max(kiln::abs(got - want)).item<float>(), 1e-5) << "batch " << n;
  }
  EXPECT_EQ(back.cache_info().traces, 1u);  // one trace for both batch sizes
}

TEST(OnnxRoundTrip, Mlp) {
  kiln::VariableStore store(21);
  round_trip(*kiln::make_mlp(&store), 0);
}

TEST(OnnxRoundTrip, CnnKeepsNoTransposes) {
  kiln::VariableStore store(22);
  round_trip(*kiln::make_cnn(&store), 0);
}

}  // namespace
