// The built-in layers (src/nn/layers/*.cc), Keras's names and defaults. All compute with kiln
// ops, so gradients come from the ops' rules. Images are NHWC, conv kernels HWIO.
// Activations are given by name: "relu", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu",
// "linear" (or ""); an unknown name is a ValueError listing the valid ones.
//
// Every layer has Keras' get_config and a static from_config (kiln/nn/config.h), registered
// under its type_name(); MaxPool2D and AvgPool2D also under Keras' MaxPooling2D and
// AveragePooling2D. from_config checks every field (ConfigReader) and returns an unbuilt layer.
//
//   auto d = std::make_shared<kiln::Dense>(128, "relu");
//   auto c = std::make_shared<kiln::Conv2D>(32, std::array<int64_t, 2>{3, 3},
//                                           kiln::Conv2DLayerOptions{.padding =
//                                           kiln::Padding::kSame,
//                                                                    .activation = "relu"});
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kiln/nn/initializers.h"
#include "kiln/nn/layer.h"
#include "kiln/ops.h"

namespace kiln {

using ActivationFn = std::function<Tensor(const Tensor&)>;
// The activation called `name` ("" means "linear"); ValueError listing the valid names.
ActivationFn get_activation(const std::string& name);

// ---- core (src/nn/layers/core.cc) ----------------------------------------------------------

struct DenseOptions {
  std::string activation = "linear";
  bool use_bias = true;
  Initializer kernel_initializer = initializers::glorot_uniform();
  Initializer bias_initializer = initializers::zeros();
  std::string name;
  // Share this layer's kernel and bias (Layer::share_weights_from).
  Layer* share_weights_with = nullptr;
};

// y = activation(x @ kernel + bias); kernel [in, units] with in = x.dim(-1), bias [units].
// Inputs of rank > 2 multiply on the last axis.
class Dense : public Layer {
 public:
  explicit Dense(int64_t units, DenseOptions options = {});
  Dense(int64_t units, const std::string& activation, bool use_bias = true);
  std::string type_name() const override { return "Dense"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);
  int64_t units() const { return units_; }
  // Undefined before build / without bias.
  Variable kernel() const { return kernel_; }
  Variable bias() const { return bias_; }

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  int64_t units_;
  DenseOptions options_;
  ActivationFn activation_;
  Variable kernel_, bias_;
};

// Applies an activation by name.
class Activation : public Layer {
 public:
  explicit Activation(const std::string& activation, std::string name = "");
  std::string type_name() const override { return "Activation"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override { return input_shape; }

 private:
  std::string activation_;
  ActivationFn fn_;
};

// [N, d1, d2, ...] -> [N, d1*d2*...]. Needs rank >= 1 (ShapeError).
class Flatten : public Layer {
 public:
  explicit Flatten(std::string name = "");
  std::string type_name() const override { return "Flatten"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;
};

// Identity at inference; in training zeroes each element with probability `rate` and scales
// the rest by 1/(1-rate). Masks differ per call: call k uses key {seed, k} from the layer's
// SeedGenerator, advanced by an op, so a traced train step draws a new mask per call (the
// same masks as eager training from the same seed). Without a seed, the seed is derived from
// global_seed() and the layer's name. rate in [0, 1) (ValueError).
class Dropout : public Layer {
 public:
  explicit Dropout(double rate, std::optional<uint64_t> seed = std::nullopt, std::string name = "");
  std::string type_name() const override { return "Dropout"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);
  double rate() const { return rate_; }
  // {"seed_generator": its generator's state}.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override;

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override { return input_shape; }

 private:
  double rate_;
  std::optional<uint64_t> seed_;  // as given (config)
  SeedGenerator generator_;
};

struct EmbeddingOptions {
  Initializer embeddings_initializer = initializers::random_uniform(-0.05, 0.05);
  std::string name;
};

// Integer indices [...] in [0, input_dim) -> [..., output_dim]; float indices are truncated to
// int32 first (so shape-only builds and zero probes work). Out of range: ValueError.
class Embedding : public Layer {
 public:
  Embedding(int64_t input_dim, int64_t output_dim, EmbeddingOptions options = {});
  std::string type_name() const override { return "Embedding"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);
  Variable embeddings() const { return embeddings_; }

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  int64_t input_dim_, output_dim_;
  EmbeddingOptions options_;
  Variable embeddings_;
};

// ---- convolution and pooling (src/nn/layers/conv.cc, src/nn/layers/pooling.cc) -------------

struct Conv2DLayerOptions {
  std::array<int64_t, 2> strides{1, 1};
  Padding padding = Padding::kValid;
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  std::string activation = "linear";
  bool use_bias = true;
  Initializer kernel_initializer = initializers::glorot_uniform();
  Initializer bias_initializer = initializers::zeros();
  std::string name;
  Layer* share_weights_with = nullptr;
};

// x [N, H, W, C] -> activation(conv2d(x, kernel) + bias); kernel [KH, KW, C/groups, filters].
// C and filters must be divisible by groups (ValueError naming the layer).
class Conv2D : public Layer {
 public:
  Conv2D(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DLayerOptions options = {});
  std::string type_name() const override { return "Conv2D"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);
  Variable kernel() const { return kernel_; }
  Variable bias() const { return bias_; }

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  int64_t filters_;
  std::array<int64_t, 2> kernel_size_;
  Conv2DLayerOptions options_;
  ActivationFn activation_;
  Variable kernel_, bias_;
};

struct Pool2DLayerOptions {
  std::array<int64_t, 2> pool_size{2, 2};
  std::array<int64_t, 2> strides{0, 0};  // 0: pool_size, as Keras
  Padding padding = Padding::kValid;
  std::string name;
};

class MaxPool2D : public Layer {
 public:
  explicit MaxPool2D(Pool2DLayerOptions options = {});
  std::string type_name() const override { return "MaxPool2D"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  Pool2DLayerOptions options_;
};

class AvgPool2D : public Layer {
 public:
  explicit AvgPool2D(Pool2DLayerOptions options = {});
  std::string type_name() const override { return "AvgPool2D"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;

 private:
  Pool2DLayerOptions options_;
};

// [N, H, W, C] -> [N, C] (mean over H and W).
class GlobalAveragePooling2D : public Layer {
 public:
  explicit GlobalAveragePooling2D(std::string name = "");
  std::string type_name() const override { return "GlobalAveragePooling2D"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override;
};

// ---- normalization (src/nn/layers/normalization.cc) ----------------------------------------

struct BatchNormOptions {
  // -1: the last axis. A config may give the last axis's index instead (tf.keras 2 writes it
  // so); build then checks that it is the last (ValueError naming the layer otherwise).
  int axis = -1;
  double momentum = 0.99;
  double epsilon = 1e-3;
  bool center = true;  // beta
  bool scale = true;   // gamma
  std::string name;
  Initializer beta_initializer = initializers::zeros();
  Initializer gamma_initializer = initializers::ones();
  Initializer moving_mean_initializer = initializers::zeros();
  Initializer moving_variance_initializer = initializers::ones();
};

// Normalizes over the last axis (Keras axis=-1). Weights [C]: gamma, beta (trainable),
// moving_mean, moving_variance (non-trainable). training=true: batch mean and (biased) variance
// over all other axes, and moving = momentum * moving + (1 - momentum) * batch; inference:
// the moving statistics.
class BatchNormalization : public Layer {
 public:
  explicit BatchNormalization(BatchNormOptions options = {});
  std::string type_name() const override { return "BatchNormalization"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);
  Variable moving_mean() const { return moving_mean_; }
  Variable moving_variance() const { return moving_variance_; }
  Variable gamma() const { return gamma_; }
  Variable beta() const { return beta_; }

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override { return input_shape; }

 private:
  BatchNormOptions options_;
  Variable gamma_, beta_, moving_mean_, moving_variance_;
};

struct LayerNormOptions {
  int axis = -1;  // as BatchNormOptions::axis
  double epsilon = 1e-3;
  bool center = true;
  bool scale = true;
  std::string name;
  Initializer beta_initializer = initializers::zeros();
  Initializer gamma_initializer = initializers::ones();
};

// Normalizes each example over the last axis: (x - mean) / sqrt(var + epsilon) * gamma + beta.
class LayerNormalization : public Layer {
 public:
  explicit LayerNormalization(LayerNormOptions options = {});
  std::string type_name() const override { return "LayerNormalization"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  Shape compute_output_shape(const Shape& input_shape) override { return input_shape; }

 private:
  LayerNormOptions options_;
  Variable gamma_, beta_;
};

// ---- merging (src/nn/layers/merge.cc): called with a list of tensors -----------------------

// Base of multi-input layers: a single tensor is a ValueError naming the layer.
class MergeLayer : public Layer {
 public:
  using Layer::Layer;

 protected:
  Tensor call(const Tensor& x, bool training) override;
};

// Elementwise sum of >= 2 inputs of one shape (ShapeError naming the layer and the shapes).
class Add : public MergeLayer {
 public:
  explicit Add(std::string name = "");
  std::string type_name() const override { return "Add"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  void build_multi(const std::vector<Shape>& input_shapes) override;
  Tensor call_multi(const std::vector<Tensor>& xs, bool training) override;
  Shape compute_output_shape_multi(const std::vector<Shape>& input_shapes) override;
};

// Joins >= 2 inputs along `axis` (default last); other dims must agree (ShapeError).
class Concatenate : public MergeLayer {
 public:
  explicit Concatenate(int axis = -1, std::string name = "");
  std::string type_name() const override { return "Concatenate"; }
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

 protected:
  void build_multi(const std::vector<Shape>& input_shapes) override;
  Tensor call_multi(const std::vector<Tensor>& xs, bool training) override;
  Shape compute_output_shape_multi(const std::vector<Shape>& input_shapes) override;

 private:
  int axis_;
};

}  // namespace kiln
