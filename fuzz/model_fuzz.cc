// Fuzzes load_model: the safetensors container, the JSON parts (metadata, Keras config,
// optimizer, frozen graph), rebuilding the architecture, assigning weights and slots, and
// validating the graph. A file that loads is then run once on a small input, so a graph that
// passed validation but would read out of bounds or crash in a kernel is caught too. Seeds are
// model files kiln writes: a dense model with BatchNormalization, Dropout and Adam state, a
// small conv model, a graph-only file (a model class without a config), and compressed ones:
// the conv model in int8 (a graph of quantize / quantized_conv2d / dequantize with int8 and
// int32 constants), wrapped for QAT (fake_quant with range variables) and for magnitude pruning
// (mask variables), as kiln::optimize writes them.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "graph/graph.h"
#include "kiln/compress.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"

namespace {

std::shared_ptr<kiln::Sequential> dense_model() {
  auto m = std::make_shared<kiln::Sequential>("dense_model");
  m->emplace<kiln::Dense>(8, "relu");
  m->emplace<kiln::BatchNormalization>();
  m->emplace<kiln::Dropout>(0.5);
  m->emplace<kiln::Dense>(3);
  m->output_shape(kiln::Shape{1, 4});
  return m;
}

std::shared_ptr<kiln::Sequential> conv_model() {
  auto m = std::make_shared<kiln::Sequential>("conv_model");
  m->emplace<kiln::Conv2D>(
      2, std::array<int64_t, 2>{3, 3},
      kiln::Conv2DLayerOptions{.padding = kiln::Padding::kSame, .activation = "relu"});
  m->emplace<kiln::MaxPool2D>();
  m->emplace<kiln::Flatten>();
  m->emplace<kiln::Dense>(3);
  m->output_shape(kiln::Shape{1, 6, 6, 1});
  return m;
}

class Scaled : public kiln::Model {  // no config: saved as its graph
 public:
  Scaled() : Model("scaled") { dense_ = &add_layer<kiln::Dense>(3); }

 protected:
  kiln::Tensor call(const kiln::Tensor& x, bool training) override {
    return (*dense_)(x, training) * 0.5;
  }

 private:
  kiln::Dense* dense_;
};

void write_seeds(const std::string& dir) {
  auto d = dense_model();
  kiln::Adam adam;
  kiln::SparseCategoricalCrossentropy loss;
  kiln::FitOptions fo;
  fo.verbose = 0;
  fo.batch_size = 4;
  kiln::fit(*d, adam, loss, kiln::zeros({4, 4}), kiln::zeros({4}, kiln::DType::kInt32), fo);
  kiln::save_model(*d, dir + "/dense.kiln",
                   {.optimizer = &adam, .training = {{"epochs_done", "1"}}});
  kiln::save_model(*conv_model(), dir + "/conv.kiln");
  Scaled s;
  s.output_shape(kiln::Shape{1, 4});
  kiln::save_model(s, dir + "/graph_only.kiln");

  auto conv = conv_model();
  kiln::QuantizeOptions qo;
  qo.keep_slower_float = false;  // int8 whatever this CPU's timings say
  qo.timing_repeats = 1;
  kiln::save_model(
      kiln::quantize_model(kiln::freeze(*conv), kiln::random_uniform({8, 6, 6, 1}, 0, 1, 1), qo),
      dir + "/conv_int8.kiln");
  kiln::save_model(*kiln::quantize_aware(*conv), dir + "/conv_qat.kiln");
  kiln::save_model(*kiln::prune_low_magnitude(*conv), dir + "/conv_pruning.kiln");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::register_compress_layers();  // QAT and pruning wrappers load by their class names
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  // The safetensors reader's bound, the parsed JSON, the rebuilt model and one small run.
  const size_t bound = 80 * size + (8u << 20);
  kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
    kiln::LoadedModel m = kiln::load_model(path);
    if (m.graph.empty()) return;
    // Run at the stored (traced) shapes, which validation checked, unless some value is big:
    // a hostile graph may declare huge intermediates, which says nothing new and is slow.
    const kiln::graph::Graph& g = m.graph.graph();
    for (const kiln::graph::Value& v : g.values) {
      if (v.meta.shape.numel() > (1 << 16)) return;
    }
    std::vector<kiln::Tensor> args;
    for (int32_t v : g.inputs)
      args.push_back(kiln::zeros(g.values[v].meta.shape, g.values[v].meta.dtype));
    try {
      kiln::graph::execute(g, args);
    } catch (const kiln::Error&) {
      // Kernels may refuse data (e.g. an index out of range): an error, not a crash.
    }
  });
  return 0;
}
