// Fuzzes load_weights onto built models: the CLI's mlp and cnn (src/nn/models.cc) and a small
// model with tied Dense layers and BatchNormalization (non-trainable weights), so that the
// checks for names, shapes, dtypes and shared variables all meet fuzzed files. Seeds are
// checkpoints that kiln's save_weights writes for these three models.
//
// Beyond the error contract: a load that fails must leave every variable unchanged (no
// version bumped), as load_weights documents.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"

namespace {

std::shared_ptr<kiln::Sequential> make_tied() {
  auto m = std::make_shared<kiln::Sequential>("tied");
  kiln::DenseOptions a;
  a.name = "a";
  auto& first = m->emplace<kiln::Dense>(4, a);
  kiln::DenseOptions b;
  b.name = "b";
  b.share_weights_with = &first;
  m->emplace<kiln::Dense>(4, b);
  m->emplace<kiln::BatchNormalization>();
  m->emplace<kiln::Dense>(2, "relu");
  m->output_shape(kiln::Shape{1, 4});
  return m;
}

struct Models {
  std::shared_ptr<kiln::Sequential> tied = make_tied(), mlp = kiln::make_mlp(),
                                    cnn = kiln::make_cnn();
};

size_t weight_bytes(const kiln::Layer& model) {
  size_t n = 0;
  for (const kiln::Variable& v : model.weights()) n += v.value().nbytes();
  return n;
}
Models& models() {
  static Models* m = new Models;  // never destroyed: the fuzzer exits from anywhere
  return *m;
}

void write_seeds(const std::string& dir) {
  kiln::save_weights(*models().tied, dir + "/tied.safetensors");
  kiln::save_weights(*models().mlp, dir + "/mlp.safetensors");
  kiln::save_weights(*models().cnn, dir + "/cnn.safetensors");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  models();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  // The safetensors reader's bound, plus the assigned copies of the tensors.
  const size_t bound = 65 * size + (2u << 20);
  static const size_t mlp_bytes = weight_bytes(*models().mlp),
                      cnn_bytes = weight_bytes(*models().cnn);
  for (kiln::Sequential* model : {models().tied.get(), models().mlp.get(), models().cnn.get()}) {
    // A file smaller than the mlp's or cnn's weights (their shapes all differ, so aliases cannot
    // help) can only take the same mismatch paths as the tied model: skip it, for speed.
    if ((model == models().mlp.get() && size < mlp_bytes) ||
        (model == models().cnn.get() && size < cnn_bytes)) {
      continue;
    }
    std::vector<uint64_t> before;
    for (const kiln::Variable& v : model->weights()) before.push_back(v.version());
    bool loaded = false;
    kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
      kiln::load_weights(*model, path);
      loaded = true;
    });
    if (!loaded) {
      const std::vector<kiln::Variable> after = model->weights();
      for (size_t i = 0; i < after.size(); ++i) {
        if (after[i].version() != before[i])
          kiln::fuzz::fail("a failed load_weights changed " + after[i].name());
      }
    }
  }
  return 0;
}
