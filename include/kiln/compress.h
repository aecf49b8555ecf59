// Compression of trained models: post-training static int8 quantization with a per-layer check
// (src/compress/quantize.cc, calibrate.cc); further down, structured pruning, magnitude pruning
// during training, dynamic-range quantization and quantization-aware training.
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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/graph_model.h"
#include "kiln/nn/callbacks.h"
#include "kiln/nn/layer.h"
#include "kiln/ops.h"
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

// ---- magnitude pruning during training (src/compress/magnitude_prune.cc) --------------------
//
// Unstructured pruning, as tfmot's prune_low_magnitude: the smallest-magnitude weights of every
// Dense and Conv2D kernel (not biases, not BatchNormalization) are set to zero on a schedule
// while the model trains, and stay zero. Masks are non-trainable variables of wrapper layers
// ("<wrapper>/prune_mask"), so save_model stores them, load_model restores them and the cache
// report counts them. What it buys: zeros, so a model file compressed with zlib shrinks; what
// it does not: dense kernels still run every multiply, so latency is unchanged.
//
//   auto pruned = kiln::prune_low_magnitude(*model);
//   kiln::FitOptions o;
//   o.callbacks.push_back(std::make_shared<kiln::UpdatePruningStep>(kiln::PolynomialDecay{
//       .final_sparsity = 0.8, .begin_step = 0, .end_step = 1000, .frequency = 100}));
//   kiln::fit(*pruned, opt, loss, train, o);
//   auto final_model = kiln::strip_pruning(*pruned);   // plain Dense/Conv2D, zeros kept

// tfmot's PolynomialDecay: the target sparsity at step s (optimizer steps counted from 0) is
//   final + (initial - final) * (1 - p)^power,  p = clamp((s - begin_step) / (end_step -
//   begin_step), 0, 1),
// and masks are recomputed at steps begin_step + k * frequency up to end_step, and at end_step
// itself (so final_sparsity is reached even when frequency does not divide the span).
struct PolynomialDecay {
  double initial_sparsity = 0.0;
  double final_sparsity = 0.5;
  int64_t begin_step = 0;
  int64_t end_step = 1000;
  double power = 3;
  int64_t frequency = 100;

  // ValueError naming the field unless 0 <= initial_sparsity <= final_sparsity < 1,
  // 0 <= begin_step < end_step, frequency >= 1 and power > 0.
  void validate() const;
  double sparsity(int64_t step) const;
  bool should_update(int64_t step) const;
};

// Registers the layer classes of this header (PruneLowMagnitude, QuantizeAware) for
// load_model / from_config. Their registrations live in objects of the static library that a
// program which never calls the compression API does not link (as Keras needs
// tfmot's prune_scope to load such a model): call this first in such a program. Idempotent,
// thread-safe. The kiln CLI and the Python module call it.
void register_compress_layers();

// Wraps a Dense or Conv2D (shared, not copied): calls it unchanged and owns the mask of its
// kernel, a non-trainable variable of the kernel's shape created (all ones) when the wrapper
// is built. Registered as a layer class, so models holding it save and load with their masks.
// ValueError for a null layer or one of another class.
class PruneLowMagnitude : public Layer {
 public:
  explicit PruneLowMagnitude(std::shared_ptr<Layer> layer, std::string name = "");
  std::string type_name() const override { return "PruneLowMagnitude"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

  Layer& layer() const { return *layer_; }
  const std::shared_ptr<Layer>& shared_layer() const { return layer_; }
  // The wrapped kernel and its mask (StateError before build).
  Variable kernel() const;
  Variable mask() const;
  // Recomputes the mask so that max(floor(sparsity * size), entries masked already) kernel
  // entries are masked: those masked already (masks only grow, as tfmot's), then those of the
  // smallest magnitude (ties broken by position); then applies it. ValueError for a sparsity
  // outside [0, 1).
  void update_mask(double sparsity);
  // kernel *= mask (an assign op: recorded like any write).
  void apply_mask();

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  std::shared_ptr<Layer> layer_;
  Variable mask_;
};

// A new Sequential (same name with "_pruning") holding `model`'s layers, each Dense and Conv2D
// wrapped in a PruneLowMagnitude, built for model's input shape with all-ones masks. The layers
// are shared with `model`: training one trains the other. StateError unless `model` is built;
// ValueError when it has no Dense or Conv2D.
std::shared_ptr<Sequential> prune_low_magnitude(const Sequential& model);

// The callback that prunes (tfmot's UpdatePruningStep): after every optimizer step (batch end)
// it recomputes the masks when schedule.should_update(step) and applies them, so pruned
// weights stay zero through the optimizer's updates. Its step counter starts at 0 and carries
// over between fit() calls (set_step to resume). The constructor validates the schedule;
// on_train_begin throws ValueError when the model holds no PruneLowMagnitude layer. With
// FitOptions::distributed the callback runs on rank 0 only, like every callback: do not
// combine the two.
class UpdatePruningStep : public Callback {
 public:
  explicit UpdatePruningStep(PolynomialDecay schedule);
  void on_train_begin(const Logs& logs) override;
  void on_train_batch_end(int64_t batch, const Logs& logs) override;
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  const PolynomialDecay& schedule() const { return schedule_; }

 private:
  PolynomialDecay schedule_;
  int64_t step_ = 0;
  std::vector<PruneLowMagnitude*> wrappers_;
};

// `model` without its PruneLowMagnitude wrappers: a new Sequential (name + "_stripped") of the
// wrapped layers (shared), each mask applied once more, so the zeros stay. StateError unless
// built.
std::shared_ptr<Sequential> strip_pruning(const Sequential& model);

// The fraction of zeros over every Dense and Conv2D kernel of `layer` and its sublayers (0 when
// there is none). StateError unless built.
double kernel_sparsity(const Layer& layer);

// ---- dynamic-range quantization (src/compress/quantize_dynamic.cc) --------------------------
//
// Every matmul of a frozen graph with a constant float32 [K, N] weight (and a float32 [M, K]
// input) becomes a dynamic_quantized_matmul (kiln/ops.h), absorbing the add of a constant [N]
// bias and a ReLU after it: weights int8 symmetric per output channel, stored as constants;
// activations quantized per call from the batch's own min/max (asymmetric uint8). No
// calibration data. Conv2D and everything else stay float.
//
//   kiln::GraphModel d = kiln::quantize_dynamic(kiln::freeze(*model));

struct DynamicQuantizeOptions {
  // As QuantizeOptions::weight_bits: 0 chooses by CPU (8 with VNNI, 7 without), or 7 or 8.
  int weight_bits = 0;
};

// The rewritten model (name + "_dynamic"); `model` is unchanged. `quantized_layers`, when
// given, receives the number of matmuls rewritten. ValueError for weight_bits other than 0, 7
// or 8.
GraphModel quantize_dynamic(const GraphModel& model, const DynamicQuantizeOptions& options = {},
                            int* quantized_layers = nullptr);

// ---- quantization-aware training (src/compress/qat.cc) ---------------------------------------
//
// tfmot's quantize_model for training: every Dense and Conv2D runs with fake-quantized weights
// (fake_quant per output channel, symmetric, with the int8 grid quantize_model will use) and
// fake-quantized outputs (per tensor, uint8 grid, range tracked as an exponential moving
// average of batch min/max, tfmot's MovingAverageQuantizer); the first one also fake-quantizes
// its input. Ranges are non-trainable variables of wrapper layers, saved with the model.
// Gradients pass straight through the rounding. Train with the same fit(), then convert:
//
//   auto qat = kiln::quantize_aware(*model);
//   kiln::fit(*qat, opt, loss, train, fit_options);
//   kiln::GraphModel q = kiln::quantize_model_from_qat(*qat, train_images.slice(0, 512));

struct QatOptions {
  double ema_decay = 0.99;  // in [0, 1): weight of the old range per training step
  int weight_bits = 0;      // as QuantizeOptions::weight_bits (0: 8 with VNNI, 7 without)
  // ValueError naming the field when out of range.
  void validate() const;
};

// Wraps a built Dense or Conv2D (shared): the layer's computation with fake quantization (see
// above). Variables: "output_min", "output_max" (with quantize_output), "input_min",
// "input_max" (with quantize_input) and "ranges_seen" (0 until the first training call, whose
// batch range then initializes the averages). Before that first step, inference leaves
// activations unquantized (the ranges are unknown); a graph traced then (predict with graph =
// true, freeze) keeps doing so, so trace after training. ValueError for a null or unsupported
// layer (another class, or a Conv2D with groups > 1).
class QuantizeAware : public Layer {
 public:
  QuantizeAware(std::shared_ptr<Layer> layer, bool quantize_input, bool quantize_output,
                QatOptions options = {}, std::string name = "");
  std::string type_name() const override { return "QuantizeAware"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

  Layer& layer() const { return *layer_; }
  const QatOptions& options() const { return options_; }
  // The int8 weight bound (127 or 63) weights are fake-quantized to.
  int weight_qmax() const;
  // [min, max] of the output (or input) as tracked; ValueError when not quantized.
  ActivationRange output_range() const;
  ActivationRange input_range() const;

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  Tensor track_range(const Tensor& x, Variable lo, Variable hi, bool training);

  std::shared_ptr<Layer> layer_;
  bool quantize_input_, quantize_output_;
  QatOptions options_;
  bool conv_ = false;
  Conv2DOptions conv_options_;
  std::function<Tensor(const Tensor&)> activation_;
  Variable in_lo_, in_hi_, out_lo_, out_hi_, seen_;
};

// A new Sequential (name + "_qat") holding `model`'s layers with each Dense and Conv2D wrapped
// in a QuantizeAware (the first one also quantizing its input; the last layer's output is the
// model's float output and is not quantized when that layer is the model's last), built for
// model's input shape. Layers are shared with `model`. StateError unless built; ValueError
// when there is no Dense/Conv2D or options are invalid.
std::shared_ptr<Sequential> quantize_aware(const Sequential& model, const QatOptions& options = {});

// The int8 GraphModel of a model trained with quantize_aware: it is frozen, its fake-quant
// weights become int8 weights on the same grid, and each activation range learned in training
// replaces calibration for the value it quantized (values without one, if any, are calibrated
// on `calibration_inputs` as quantize_model does; the per-layer check runs as there).
// options.weight_bits must be 0 or the QAT model's bits (ValueError otherwise); ValueError when
// `qat_model` holds no QuantizeAware layer; else as quantize_model.
GraphModel quantize_model_from_qat(Layer& qat_model, const Tensor& calibration_inputs,
                                   const QuantizeOptions& options = {},
                                   QuantizeReport* report = nullptr);

}  // namespace kiln
