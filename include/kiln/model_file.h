// Model files: one `.kiln` file holds a model's architecture (Keras-style JSON config), its
// weights, the optimizer's state, metadata and, when frozen, the inference graph, so a model
// leaves the program that built it and runs without its code:
//
//   kiln::save_model(*model, "m.kiln", {.optimizer = &adam, .frozen = true});
//   kiln::LoadedModel m = kiln::load_model("m.kiln");
//   kiln::Tensor logits = m.predict(images);          // the frozen graph, no model code
//   kiln::fit(*m.model, *m.optimizer, loss, data, {.initial_epoch = 5, .epochs = 10});
//
// The container is safetensors (kiln/io.h): weights, optimizer slots and graph constants are its
// tensors ("weights/2/kernel", "optimizer/2/kernel/m", "graph/7"), and the JSON parts are its
// __metadata__ strings ("kiln.format_version", "kiln.config", "kiln.graph", "kiln.optimizer",
// "kiln.metadata"). So the loader that reads them is the one already fuzzed and bounded, a file
// is readable by any safetensors tool, the data stays aligned and memory-mappable, and one
// atomic write covers the whole model (a failed save never harms an existing file).
//
// A model whose class has no config (a C++ subclass not registered with KILN_REGISTER_LAYER)
// is saved as its traced inference graph: it loads and predicts but cannot be trained further.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/graph_model.h"
#include "kiln/nn/layer.h"
#include "kiln/nn/optimizers.h"

namespace kiln {

// The file format version this kiln writes; a newer file is refused with a FormatError.
inline constexpr int kModelFormatVersion = 1;

// The model's built input shapes with the batch dim unknown (float32): the signature freeze()
// and save_model() use by default. StateError naming the model when it is not built.
std::vector<TensorSpec> inference_signature(const Layer& model);

struct FreezeOptions {
  // The inputs' specs. Default: the model's built input shapes with the batch dim unknown.
  std::optional<std::vector<TensorSpec>> input_signature;
  // Fold BatchNormalization (and any per-channel affine chain on a matmul/conv output) into
  // the matmul/conv before it.
  bool fold_batch_norm = true;
};

// Freezes `model` for inference: traces its inference call (training = false: dropout and
// other training-only ops disappear), copies every variable into a constant (the GraphModel's
// folded_variables() and the cache report say which variable at which version), folds
// BatchNormalization into the conv/dense before it, folds constant subexpressions and removes
// dead code. At run time bias and activation fuse into the matmul/conv (graph fusion), and
// the memory plan is made per input shape. Throws StateError when the model is not built and
// no signature is given, ValueError when its graph depends on the unknown dims.
GraphModel freeze(Layer& model, const FreezeOptions& options = {});

struct SaveModelOptions {
  // Also save this optimizer's config, iterations and slots (for resuming training).
  const Optimizer* optimizer = nullptr;
  // Also save the frozen inference graph (freeze(model)); always done for a model whose class
  // has no config.
  bool frozen = true;
  // As FreezeOptions::input_signature; also recorded in the metadata.
  std::optional<std::vector<TensorSpec>> input_signature;
  // Free-form training settings and progress ("epochs_done", "batch_size", "seed", ...).
  std::map<std::string, std::string> training;
};

// Writes `model` (built: StateError otherwise) to `path` atomically. kiln::Error when the file
// cannot be written (an existing file is then untouched).
void save_model(Layer& model, const std::string& path, const SaveModelOptions& options = {});
// Writes a graph-only model file (e.g. an imported ONNX model).
void save_model(const GraphModel& graph, const std::string& path,
                const std::map<std::string, std::string>& training = {});

struct ModelFileInfo {
  int format_version = 0;
  std::string kiln_version;
  std::string model_name, class_name;  // the saved model's name and class ("Sequential")
  std::vector<TensorSpec> input_signature;
  std::map<std::string, std::string> training;
  bool has_config = false, has_optimizer = false, has_graph = false;
  int64_t optimizer_iterations = 0;
};

struct LoadedModel {
  // Rebuilt from its config with its weights; null for a graph-only file.
  std::shared_ptr<Layer> model;
  // Restored with its iterations and slots (tied to `model`'s variables); null when not saved.
  std::unique_ptr<Optimizer> optimizer;
  // The frozen inference graph; empty() when the file has none.
  GraphModel graph;
  ModelFileInfo info;

  // Inference: the frozen graph when present, else the model (training = false). For a
  // single-input, single-output model.
  Tensor predict(const Tensor& x) const;
  // StateError naming the model and why when it cannot be trained (graph-only file).
  Layer& trainable_model() const;
};

// Reads and validates everything in `path` before building anything: FormatError naming the
// file and the field for a malformed, truncated or newer file, an unknown op or layer class;
// ShapeError / DTypeError when weights do not fit the architecture.
LoadedModel load_model(const std::string& path);
// Only the metadata (cheap: no model is built).
ModelFileInfo read_model_info(const std::string& path);

}  // namespace kiln
