// Weight initializers, as in Keras. An Initializer maps (shape, dtype, seed) to a fresh tensor;
// the seed comes from the VariableStore (seed_for(full_name)), so a variable's initial value
// depends only on the store's seed and the variable's full name, never on creation order or
// on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "kiln/tensor.h"

namespace kiln {

class Initializer {
 public:
  using Fn = std::function<Tensor(const Shape& shape, DType dtype, uint64_t seed)>;

  Initializer() = default;  // undefined: defined() is false
  Initializer(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}

  bool defined() const { return static_cast<bool>(fn_); }
  // e.g. "glorot_uniform", "constant(0.5)".
  const std::string& name() const { return name_; }
  // A new tensor of `shape` and `dtype` (floating dtypes; zeros/ones/constant take any).
  // Throws StateError when undefined.
  Tensor operator()(const Shape& shape, DType dtype, uint64_t seed) const;

 private:
  std::string name_;
  Fn fn_;
};

// Keras' fan computation: [in, out] for rank 2; for conv kernels (HWIO) the receptive field
// KH*KW multiplies both: fan_in = KH*KW*I, fan_out = KH*KW*O. Rank 1: fan_in = fan_out = dim 0.
std::pair<double, double> compute_fans(const Shape& shape);

// The process-wide seed stores use unless given their own (default 0). Set it before creating
// variables: `kiln::set_global_seed(42)` makes every later initial weight reproducible.
void set_global_seed(uint64_t seed);
uint64_t global_seed();

namespace initializers {

// U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). Keras' default for kernels.
Initializer glorot_uniform();
// N(0, sqrt(2 / (fan_in + fan_out))) truncated at 2 stddev (rescaled like Keras).
Initializer glorot_normal();
// N(0, sqrt(2 / fan_in)) truncated at 2 stddev (rescaled like Keras).
Initializer he_normal();
// U(-limit, limit), limit = sqrt(6 / fan_in).
Initializer he_uniform();
Initializer zeros();
Initializer ones();
Initializer constant(double value);
// U(low, high); ValueError unless low < high.
Initializer random_uniform(double low = -0.05, double high = 0.05);
// N(mean, stddev); ValueError unless stddev >= 0.
Initializer random_normal(double mean = 0.0, double stddev = 0.05);

// By Keras name ("glorot_uniform", "he_normal", "zeros", "ones", ...); ValueError listing the
// valid names otherwise.
Initializer get(const std::string& name);

}  // namespace initializers
}  // namespace kiln
