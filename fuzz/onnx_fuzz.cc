// Fuzzes import_onnx. Seeds are ONNX's own backend node-test models (libonnx-testdata: every
// model.onnx under /usr/share/libonnx-testdata/data/node), which cover every op kiln maps and
// many it refuses, plus a few hand-made protobuf byte strings and kiln's own QDQ export of an
// int8 conv model (QuantizeLinear / DequantizeLinear with per-axis int8 weights, int32 biases).
//
// Beyond the error contract: an import that succeeds gives a model whose ports are well formed.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_support.h"
#include "kiln/compress.h"
#include "kiln/graph_model.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/onnx.h"

namespace {

void write_seeds(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path node = "/usr/share/libonnx-testdata/data/node";
  int n = 0;
  if (fs::is_directory(node)) {
    for (const auto& e : fs::directory_iterator(node)) {
      const fs::path model = e.path() / "model.onnx";
      if (!fs::exists(model)) continue;
      kiln::fuzz::write_file(dir, e.path().filename().string() + ".onnx",
                             kiln::fuzz::read_file(model.string()));
      ++n;
    }
  }
  // Truncated and empty inputs, and a ModelProto holding only an ir_version (field 1 = 8).
  kiln::fuzz::write_file(dir, "empty.onnx", "");
  kiln::fuzz::write_file(dir, "ir-only.onnx", std::string("\x08\x08", 2));
  (void)n;
  kiln::Sequential conv("conv");
  conv.emplace<kiln::Conv2D>(
      2, std::array<int64_t, 2>{3, 3},
      kiln::Conv2DLayerOptions{.padding = kiln::Padding::kSame, .activation = "relu"});
  conv.emplace<kiln::MaxPool2D>();
  conv.emplace<kiln::Flatten>();
  conv.emplace<kiln::Dense>(3);
  conv.output_shape(kiln::Shape{1, 6, 6, 1});
  kiln::QuantizeOptions qo;
  qo.keep_slower_float = false;
  qo.timing_repeats = 1;
  const std::string qdq = dir + "/conv_int8_qdq.onnx";
  kiln::export_onnx(
      kiln::quantize_model(kiln::freeze(conv), kiln::random_uniform({8, 6, 6, 1}, 0, 1, 1), qo),
      qdq);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  // The parsed ModelProto (a few times the input), the import's constant budget (4 x size +
  // 16 MiB, kiln/onnx.h) and the graph's bookkeeping.
  const size_t bound = 64 * size + (40u << 20);
  kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
    kiln::GraphModel m = kiln::import_onnx(path);
    if (m.inputs().size() + m.outputs().size() == 0 || m.outputs().empty()) {
      kiln::fuzz::fail("import_onnx returned a model without outputs");
    }
  });
  return 0;
}
