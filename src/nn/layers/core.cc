// Core layers: Dense, Activation, Flatten, Dropout, Embedding; activations by name.
#include <cmath>

#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"

namespace kiln {

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

void require_rank_at_least(const Layer& l, const Shape& s, int rank, const char* what) {
  if (s.rank() < rank) {
    throw ShapeError("layer '" + l.name() + "' (" + l.type_name() + ") needs an input of rank >= " +
                     std::to_string(rank) + " (" + what + "), got " + to_string(s));
  }
}

std::string activation_name(const std::string& a) { return a.empty() ? "linear" : a; }

// Keras fields kiln has no use for, accepted only at Keras' null.
void only_null(ConfigReader& r, std::initializer_list<const char*> keys) {
  for (const char* k : keys) r.only(k, nullptr);
}

}  // namespace

ActivationFn get_activation(const std::string& name) {
  if (name.empty() || name == "linear") return [](const Tensor& x) { return x; };
  if (name == "relu") return [](const Tensor& x) { return relu(x); };
  if (name == "sigmoid") return [](const Tensor& x) { return sigmoid(x); };
  if (name == "tanh") return [](const Tensor& x) { return kiln::tanh(x); };
  if (name == "softmax") return [](const Tensor& x) { return softmax(x, -1); };
  if (name == "gelu") return [](const Tensor& x) { return gelu(x); };
  if (name == "leaky_relu") return [](const Tensor& x) { return leaky_relu(x); };
  throw ValueError("unknown activation '" + name +
                   "'; valid: relu, sigmoid, tanh, softmax, gelu, leaky_relu, linear");
}

// ---- Dense -----------------------------------------------------------------------------------

Dense::Dense(int64_t units, DenseOptions options)
    : Layer(options.name, "dense"), units_(units), options_(std::move(options)) {
  if (units <= 0) {
    throw ValueError("layer '" + name() + "' (Dense): units must be positive, got " +
                     std::to_string(units));
  }
  activation_ = get_activation(options_.activation);
  if (options_.share_weights_with != nullptr) share_weights_from(*options_.share_weights_with);
}

namespace {
DenseOptions dense_options(const std::string& activation, bool use_bias) {
  DenseOptions o;
  o.activation = activation;
  o.use_bias = use_bias;
  return o;
}
}  // namespace

Dense::Dense(int64_t units, const std::string& activation, bool use_bias)
    : Dense(units, dense_options(activation, use_bias)) {}

void Dense::build(const Shape& input_shape) {
  require_rank_at_least(*this, input_shape, 2, "[batch, ..., features]");
  kernel_ = add_weight("kernel", {input_shape.dim(-1), units_}, options_.kernel_initializer, true,
                       build_dtype());
  if (options_.use_bias) {
    bias_ = add_weight("bias", {units_}, options_.bias_initializer, true, build_dtype());
  }
}

Tensor Dense::call(const Tensor& x, bool) {
  Tensor y;
  if (x.rank() == 2) {
    y = matmul(x, kernel_.value());
  } else {
    // [..., K] -> [rows, K] @ [K, units] -> [..., units]
    Shape out = x.shape();
    out[out.rank() - 1] = units_;
    y = reshape(matmul(reshape(x, {-1, x.dim(-1)}), kernel_.value()), out);
  }
  if (options_.use_bias) y = add(y, bias_.value());
  return activation_(y);
}

Shape Dense::compute_output_shape(const Shape& input_shape) {
  Shape out = input_shape;
  out[out.rank() - 1] = units_;
  return out;
}

nlohmann::json Dense::get_config() const {
  nlohmann::json c = base_config();
  c["units"] = units_;
  c["activation"] = activation_name(options_.activation);
  c["use_bias"] = options_.use_bias;
  c["kernel_initializer"] = initializers::serialize(options_.kernel_initializer);
  c["bias_initializer"] = initializers::serialize(options_.bias_initializer);
  c["kernel_regularizer"] = nullptr;
  c["bias_regularizer"] = nullptr;
  c["kernel_constraint"] = nullptr;
  c["bias_constraint"] = nullptr;
  return c;
}

std::shared_ptr<Layer> Dense::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Dense");
  DenseOptions o;
  o.name = r.name();
  const int64_t units = r.integer("units");
  o.activation = r.activation("activation");
  o.use_bias = r.boolean("use_bias", true);
  o.kernel_initializer = r.initializer("kernel_initializer", o.kernel_initializer);
  o.bias_initializer = r.initializer("bias_initializer", o.bias_initializer);
  only_null(r, {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint", "lora_rank", "quantization_config"});
  r.finish();
  return std::make_shared<Dense>(units, std::move(o));
}

// ---- Activation ------------------------------------------------------------------------------

Activation::Activation(const std::string& activation, std::string name)
    : Layer(std::move(name), "activation"),
      activation_(activation_name(activation)),
      fn_(get_activation(activation)) {}

Tensor Activation::call(const Tensor& x, bool) { return fn_(x); }

nlohmann::json Activation::get_config() const {
  nlohmann::json c = base_config();
  c["activation"] = activation_;
  return c;
}

std::shared_ptr<Layer> Activation::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Activation");
  if (!r.has("activation")) r.string("activation");  // required: names the missing field
  std::string activation = r.activation("activation");
  r.finish();
  return std::make_shared<Activation>(activation, r.name());
}

// ---- Flatten ---------------------------------------------------------------------------------

Flatten::Flatten(std::string name) : Layer(std::move(name), "flatten") {}

// The batch dim as -1 (resolved by reshape at run time), so a graph traced with an unknown
// batch does not bake its size in; a zero-sized example keeps the explicit shape.
Tensor Flatten::call(const Tensor& x, bool) {
  Shape s = compute_output_shape(x.shape());
  if (s[1] > 0) s[0] = -1;
  return reshape(x, s);
}

Shape Flatten::compute_output_shape(const Shape& input_shape) {
  require_rank_at_least(*this, input_shape, 1, "[batch, ...]");
  int64_t rest = 1;
  for (int i = 1; i < input_shape.rank(); ++i) rest *= input_shape[i];
  return Shape{input_shape[0], rest};
}

nlohmann::json Flatten::get_config() const {
  nlohmann::json c = base_config();
  c["data_format"] = "channels_last";
  return c;
}

std::shared_ptr<Layer> Flatten::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Flatten");
  r.only("data_format", "channels_last");
  r.finish();
  return std::make_shared<Flatten>(r.name());
}

// ---- Dropout ---------------------------------------------------------------------------------

Dropout::Dropout(double rate, std::optional<uint64_t> seed, std::string name)
    : Layer(std::move(name), "dropout"), rate_(rate), seed_(seed), generator_(seed.value_or(0)) {
  if (!(rate >= 0.0 && rate < 1.0)) {
    throw ValueError("layer '" + this->name() + "' (Dropout): rate must be in [0, 1), got " +
                     std::to_string(rate));
  }
  if (!seed) generator_ = SeedGenerator(mix64(global_seed()) ^ hash_name(this->name()));
}

std::vector<std::pair<std::string, Tensor>> Dropout::state_tensors() const {
  return {{"seed_generator", generator_.state()}};
}

Tensor Dropout::call(const Tensor& x, bool training) {
  if (!training || rate_ == 0.0) return x;
  // A fresh mask per training call, reproducible from the seed and the call count.
  return dropout(x, rate_, generator_.next(), true);
}

nlohmann::json Dropout::get_config() const {
  nlohmann::json c = base_config();
  c["rate"] = rate_;
  c["seed"] = seed_ ? nlohmann::json(*seed_) : nlohmann::json(nullptr);
  c["noise_shape"] = nullptr;
  return c;
}

std::shared_ptr<Layer> Dropout::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Dropout");
  const double rate = r.number("rate");
  std::optional<uint64_t> seed;
  if (r.has("seed")) {
    const nlohmann::json& v = r.raw("seed");
    if (!v.is_number_unsigned()) {  // nlohmann reads non-negative integers as unsigned
      throw FormatError(r.where() + ": field 'seed' must be null or an integer in [0, 2^64), got " +
                        ConfigReader::excerpt(v));
    }
    seed = v.get<uint64_t>();
  } else {
    r.optional_integer("seed");
  }
  r.only("noise_shape", nullptr);
  r.finish();
  return std::make_shared<Dropout>(rate, seed, r.name());
}

// ---- Embedding -------------------------------------------------------------------------------

Embedding::Embedding(int64_t input_dim, int64_t output_dim, EmbeddingOptions options)
    : Layer(options.name, "embedding"),
      input_dim_(input_dim),
      output_dim_(output_dim),
      options_(std::move(options)) {
  if (input_dim <= 0 || output_dim <= 0) {
    throw ValueError("layer '" + name() +
                     "' (Embedding): input_dim and output_dim must be "
                     "positive, got " +
                     std::to_string(input_dim) + " and " + std::to_string(output_dim));
  }
}

void Embedding::build(const Shape&) {
  embeddings_ =
      add_weight("embeddings", {input_dim_, output_dim_}, options_.embeddings_initializer);
}

Tensor Embedding::call(const Tensor& x, bool) {
  Tensor idx = x;
  if (x.dtype() != int32 && x.dtype() != int64) idx = cast(x, int32);
  return gather(embeddings_.value(), idx, 0);
}

Shape Embedding::compute_output_shape(const Shape& input_shape) {
  Shape out = input_shape;
  out.push_back(output_dim_);
  return out;
}

nlohmann::json Embedding::get_config() const {
  nlohmann::json c = base_config();
  c["input_dim"] = input_dim_;
  c["output_dim"] = output_dim_;
  c["embeddings_initializer"] = initializers::serialize(options_.embeddings_initializer);
  c["embeddings_regularizer"] = nullptr;
  c["activity_regularizer"] = nullptr;
  c["embeddings_constraint"] = nullptr;
  c["mask_zero"] = false;
  return c;
}

std::shared_ptr<Layer> Embedding::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Embedding");
  EmbeddingOptions o;
  o.name = r.name();
  const int64_t input_dim = r.integer("input_dim");
  const int64_t output_dim = r.integer("output_dim");
  o.embeddings_initializer = r.initializer("embeddings_initializer", o.embeddings_initializer);
  only_null(
      r, {"embeddings_regularizer", "activity_regularizer", "embeddings_constraint", "lora_rank"});
  r.only("mask_zero", false);
  r.optional_integer("input_length");  // Keras 2: informational only
  r.finish();
  return std::make_shared<Embedding>(input_dim, output_dim, std::move(o));
}

}  // namespace kiln
