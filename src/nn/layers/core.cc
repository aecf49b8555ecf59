// Core layers: Dense, Activation, Flatten, Dropout, Embedding; activations by name.
#include <cmath>

#include "kiln/error.h"
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

// ---- Activation ------------------------------------------------------------------------------

Activation::Activation(const std::string& activation, std::string name)
    : Layer(std::move(name), "activation"), fn_(get_activation(activation)) {}

Tensor Activation::call(const Tensor& x, bool) { return fn_(x); }

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

// ---- Dropout ---------------------------------------------------------------------------------

Dropout::Dropout(double rate, std::optional<uint64_t> seed, std::string name)
    : Layer(std::move(name), "dropout"), rate_(rate), generator_(seed.value_or(0)) {
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

}  // namespace kiln
