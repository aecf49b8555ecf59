// Weight initializers, as in Keras. An Initializer maps (shape, dtype, seed) to a fresh tensor;
// the seed comes from the VariableStore (seed_for(full_name)), so a variable's initial value
// depends only on the store's seed and the variable's full name, never on creation order or
// on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "kiln/tensor.h"

namespace kiln {

class Initializer {
 public:
  using Fn = std::function<Tensor(const Shape& shape, DType dtype, uint64_t seed)>;

  Initializer() = default;  // undefined: defined() is false
  // A user's initializer: it has no Keras config, so a layer using it has no config either
  // (initializers::serialize throws ValueError naming it).
  Initializer(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  // As above, with Keras' serialized form {"class_name": ..., "config": {...}} it was built from
  // (every initializer in kiln::initializers carries one).
  Initializer(std::string name, Fn fn, std::shared_ptr<const nlohmann::json> keras_config)
      : name_(std::move(name)), fn_(std::move(fn)), keras_config_(std::move(keras_config)) {}

  bool defined() const { return static_cast<bool>(fn_); }
  // e.g. "glorot_uniform", "constant(0.5)".
  const std::string& name() const { return name_; }
  // A new tensor of `shape` and `dtype` (floating dtypes; zeros/ones/constant take any).
  // Throws StateError when undefined.
  Tensor operator()(const Shape& shape, DType dtype, uint64_t seed) const;
  // Keras' serialized form, or null for a user's initializer made from a bare function.
  const nlohmann::json* keras_config() const { return keras_config_.get(); }

 private:
  std::string name_;
  Fn fn_;
  std::shared_ptr<const nlohmann::json> keras_config_;
};

// Keras' fan computation: [in, out] for rank 2; for conv kernels (HWIO) the receptive field
// KH*KW multiplies both: fan_in = KH*KW*I, fan_out = KH*KW*O. Rank 1: fan_in = fan_out = dim 0.
std::pair<double, double> compute_fans(const Shape& shape);

// The process-wide seed stores use unless given their own (default 0). Set it before creating
// variables: `kiln::set_global_seed(42)` makes every later initial weight reproducible.
void set_global_seed(uint64_t seed);
uint64_t global_seed();

namespace initializers {

// Every initializer below is Keras' of the same name with Keras' defaults. Random ones need a
// floating dtype (DTypeError otherwise); zeros, ones, constant and identity take any dtype. All
// are deterministic: the same (shape, dtype, seed) gives the same values, on any thread count.

// How variance_scaling counts the units its variance is divided by (compute_fans).
enum class FanMode { kFanIn, kFanOut, kFanAvg };
// What variance_scaling draws from. kTruncatedNormal is Keras' default (and its "normal").
enum class Distribution { kTruncatedNormal, kUntruncatedNormal, kUniform };

// variance = scale / max(1, n), n = fan_in, fan_out or their mean per `mode`; then
// kTruncatedNormal: N(0, sqrt(variance) / 0.87962566103423978) truncated at 2 stddev (the
// divisor is the stddev of a unit normal truncated at +-2, so the result has `variance`);
// kUntruncatedNormal: N(0, sqrt(variance)); kUniform: U(-sqrt(3 variance), sqrt(3 variance)).
// ValueError unless scale > 0.
Initializer variance_scaling(double scale = 1.0, FanMode mode = FanMode::kFanIn,
                             Distribution distribution = Distribution::kTruncatedNormal);

// U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). Keras' default for kernels.
Initializer glorot_uniform();
// N(0, sqrt(2 / (fan_in + fan_out))) truncated at 2 stddev (rescaled like Keras).
Initializer glorot_normal();
// N(0, sqrt(2 / fan_in)) truncated at 2 stddev (rescaled like Keras).
Initializer he_normal();
// U(-limit, limit), limit = sqrt(6 / fan_in).
Initializer he_uniform();
// N(0, sqrt(1 / fan_in)) truncated at 2 stddev (rescaled like Keras).
Initializer lecun_normal();
// U(-limit, limit), limit = sqrt(3 / fan_in).
Initializer lecun_uniform();
Initializer zeros();
Initializer ones();
// Every element `value` (Keras' Constant defaults to 0).
Initializer constant(double value = 0.0);
// U(low, high); ValueError unless low < high.
Initializer random_uniform(double low = -0.05, double high = 0.05);
// N(mean, stddev); ValueError unless stddev >= 0.
Initializer random_normal(double mean = 0.0, double stddev = 0.05);
// N(mean, stddev) with values further than 2 stddev from the mean redrawn; ValueError unless
// stddev >= 0.
Initializer truncated_normal(double mean = 0.0, double stddev = 0.05);
// gain * Q, Q from the QR decomposition (signs fixed so diag(R) > 0) of a normal matrix of shape
// [max(rows, cols), min(rows, cols)], rows = product of all dims but the last, cols = the last;
// transposed when rows < cols. So a 2-D result has orthonormal columns (rows >= cols) or rows,
// and a conv kernel HWIO has orthonormal [H*W*I, O] columns. ValueError, when called, for
// rank < 2.
Initializer orthogonal(double gain = 1.0);
// gain * the identity matrix (ones on the main diagonal of a possibly non-square matrix).
// ValueError, when called, unless the shape is 2-D.
Initializer identity(double gain = 1.0);

// By Keras name, with Keras' defaults: the snake_case names above, Keras' class names
// ("GlorotUniform", "RandomNormal", "Zeros", "Orthogonal", "OrthogonalInitializer", ...) and its
// aliases "uniform", "normal", "one", "zero". Case-sensitive, as in Keras. ValueError listing
// the valid names otherwise.
Initializer get(const std::string& name);

// Keras' serialized form: {"class_name": "GlorotUniform", "config": {"seed": null}},
// {"class_name": "RandomUniform", "config": {"minval": -0.05, "maxval": 0.05, "seed": null}},
// ... (Keras' class names and config fields). ValueError naming the initializer when it was
// made from a bare function (it has no config).
nlohmann::json serialize(const Initializer& initializer);
// The inverse, as Keras' initializers.deserialize: a name string (get(name)) or an object
// {"class_name": ..., "config": {...}} ("module" and "registered_name" are accepted and
// ignored; a missing "config" means Keras' defaults). Every config field is checked: an
// unknown class, an unknown field or one of the wrong JSON type is a FormatError naming it; a
// non-null "seed" is a ValueError (kiln seeds every initializer from its VariableStore and the
// variable's name, so a Keras seed cannot be honoured); out-of-range values are the
// ValueErrors of the factories above.
Initializer deserialize(const nlohmann::json& config);

}  // namespace initializers
}  // namespace kiln
