// Compression of trained models: post-training static int8 quantization with a per-layer check
// (src/compress/quantize.cc, calibrate.cc).
//
//   kiln::GraphModel f = kiln::freeze(*model);
//   kiln::QuantizeOptions o;
//   o.validation_images = data.test_images;   // optional: whole-model accuracy budget
//   o.validation_labels = data.test_labels;
//   kiln::QuantizeReport report;
//   kiln::GraphModel q = kiln::quantize_model(f, data.train_images.slice(0, 512), o, &report);
//   std::cout << report.to_text();
//
// What is quantized: every matmul ([M, K] x constant [K, N]) and conv2d (constant filter) of a
// frozen graph, with the bias add and ReLU after it, becomes one quantized_matmul /
// quantized_conv2d (kiln/ops.h): uint8 activations calibrated per tensor, int8 weights
// symmetric per output channel. max_pool2d and reshape between two quantized layers stay in
// uint8; quantize / dequantize nodes go where float and int8 meet. Quantization parameters are
// the graph's constants, so save_model(graph, path) stores them like any weight.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/graph_model.h"
#include "kiln/tensor.h"

namespace kiln {

// How an activation tensor's range is chosen from its values on the calibration sample.
enum class Calibration {
  kMinMax,      // the smallest and largest value
  kPercentile,  // QuantizeOptions::percentile of the values (and 100 - it at the low end)
  kMse,         // the clipping range with the least mean squared quantization error
};

struct QuantizeOptions {
  Calibration calibration = Calibration::kMinMax;
  double percentile = 99.99;  // kPercentile only, in (50, 100]
  // Weight range: 0 chooses by this CPU at run time (8 bits with VNNI; 7 bits, [-63, 63],
  // without: oneDNN's vpmaddubsw path saturates 8-bit weights, see src/ops/quantized.cc).
  int weight_bits = 0;

  // The per-layer check. A layer stays float when its output's relative RMS error against
  // float on the calibration sample exceeds `layer_tolerance`, or (keep_slower_float) when its
  // int8 op is not faster than the float one at `timing_batch` rows/images on this CPU.
  double layer_tolerance = 0.05;
  bool keep_slower_float = true;
  int64_t timing_batch = 64;
  int timing_repeats = 15;  // the median is kept

  // The whole-model check (when both are defined): top-1 accuracy of the int8 model against the
  // float one on these examples (labels int32/int64 [N]); the int8 layers with the largest
  // errors go back to float until the drop is at most `max_drop` percentage points.
  Tensor validation_images, validation_labels;
  double max_drop = 0.5;
};

// One quantizable layer (a matmul or conv2d with its bias and ReLU) and what became of it.
struct QuantizedLayerReport {
  std::string name;  // "dense 1 [784, 256]" / "conv2d 0 [3, 3, 1, 32]": op, index, weights
  bool int8 = false;
  double error = 0;                  // relative RMS output error against float
  double float_us = 0, int8_us = 0;  // median time of one call at timing_batch
  std::string reason;                // why it stayed float; empty when int8
};

struct QuantizeReport {
  std::string calibration;  // "minmax", "percentile 99.99", "mse"
  int weight_bits = 8;
  std::vector<QuantizedLayerReport> layers;
  bool has_accuracy = false;
  double float_accuracy = 0, int8_accuracy = 0;  // percent, on the validation examples
  int reverted_for_accuracy = 0;
  // The per-layer table and the accuracy line, for people.
  std::string to_text() const;
};

// The int8 version of a frozen single-input, single-output graph, calibrated on
// `calibration_inputs` (a batch of inputs as the model takes them, e.g. 512 training images).
// The input model is unchanged. Writes what happened to `report` when given.
// Throws ValueError for a model with other than one input and one output, an empty
// calibration batch, a percentile outside (50, 100], weight_bits other than 0, 7 or 8, or
// validation images and labels of different counts; the model's own errors for inputs that do
// not fit it.
GraphModel quantize_model(const GraphModel& model, const Tensor& calibration_inputs,
                          const QuantizeOptions& options = {}, QuantizeReport* report = nullptr);

// The range [lo, hi] `method` chooses for these values (always containing 0), exposed for tests
// and tools. ValueError for an empty tensor or a non-float32 one.
struct ActivationRange {
  float lo = 0, hi = 0;
};
ActivationRange calibrate_range(const Tensor& values, Calibration method,
                                double percentile = 99.99);

// ---- structured pruning (src/compress/prune.cc) ---------------------------------------------
//
// Removes whole Dense units and Conv2D filters (those with the smallest weight norms) and the
// weights that read them in the layers after (BatchNormalization's four vectors, the next
// Dense/Conv2D's input rows/channels, through MaxPool2D/AvgPool2D/Dropout/Activation and
// Flatten's fan-out), so parameters, FLOPs and latency really drop. Fine-tune the result with
// the same fit.
//
//   auto small = kiln::prune_structured(*model, {.fraction = 0.5});
//   kiln::fit(*small, opt, loss, train_x, train_y, fit_options);   // recover accuracy

enum class PruneNorm { kL1, kL2 };

struct PruneOptions {
  double fraction = 0.5;  // of each prunable layer's units/filters removed, in [0, 1)
  PruneNorm norm = PruneNorm::kL1;
};

struct PrunedLayerReport {
  std::string name;  // the layer's name
  int64_t units_before = 0, units_after = 0;
};

struct PruneReport {
  std::vector<PrunedLayerReport> layers;
  int64_t params_before = 0, params_after = 0;
  std::string to_text() const;
};

class Sequential;

// A new Sequential (fresh variables in the default store, under a new unique name) holding
// `model`'s surviving weights. Prunable: every Dense and Conv2D (groups 1) except the last
// Dense/Conv2D of the model (its units are the outputs); each keeps at least one unit and its
// units' order. `model` must be a built Sequential of Dense, Conv2D, BatchNormalization,
// Flatten, MaxPool2D, AvgPool2D, Dropout and Activation layers (ValueError naming the first
// other layer; StateError if not built); it is left unchanged. ValueError for a fraction
// outside [0, 1).
std::shared_ptr<Sequential> prune_structured(const Sequential& model,
                                             const PruneOptions& options = {},
                                             PruneReport* report = nullptr);

}  // namespace kiln
