// Initializers: seeded, so a weight depends only on (store seed, variable name).
#include "kiln/nn/initializers.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>
#include <vector>

#include "core/random.h"
#include "kiln/error.h"
#include "kiln/ops.h"

namespace kiln {

namespace {
std::atomic<uint64_t> g_seed{0};

void require_floating(const std::string& init, DType dtype) {
  if (!is_floating(dtype)) {
    throw DTypeError("initializer " + init + ": needs float32 or float64, got " +
                     std::string(dtype_name(dtype)));
  }
}

// Normal values truncated to [-2, 2] by redrawing, each redraw from its own Philox stream.
Tensor truncated_normal(const Shape& shape, double stddev, uint64_t seed, DType dtype) {
  int64_t n = shape.numel();
  std::vector<double> v(n);
  detail::philox_normal(seed, 0, n, v.data());
  std::vector<double> redraw(n);
  for (uint64_t stream = 1; stream < 64; ++stream) {
    bool all_in = true;
    for (double x : v) all_in = all_in && std::abs(x) <= 2.0;
    if (all_in) break;
    detail::philox_normal(seed, stream, n, redraw.data());
    for (int64_t i = 0; i < n; ++i) {
      if (std::abs(v[i]) > 2.0) v[i] = redraw[i];
    }
  }
  // After 63 redraws an element is out of range with probability 0.0455^63: clamp to be exact.
  for (double& x : v) x = std::clamp(x, -2.0, 2.0) * stddev;
  return cast(from_vector<double>(v, shape), dtype);
}

Initializer variance_scaling(const std::string& name, double scale, int mode, bool uniform) {
  return Initializer(name, [name, scale, mode, uniform](const Shape& s, DType dt, uint64_t seed) {
    require_floating(name, dt);
    auto [fan_in, fan_out] = compute_fans(s);
    double n = mode == 0 ? fan_in : mode == 1 ? fan_out : (fan_in + fan_out) / 2.0;
    double var = scale / std::max(1.0, n);
    if (uniform) {
      double limit = std::sqrt(3.0 * var);
      return kiln::random_uniform(s, -limit, limit, seed, dt);
    }
    // Keras: the stddev of a normal truncated at 2 stddev is 0.8796... of the untruncated one.
    return truncated_normal(s, std::sqrt(var) / 0.87962566103423978, seed, dt);
  });
}
}  // namespace

Tensor Initializer::operator()(const Shape& shape, DType dtype, uint64_t seed) const {
  if (!fn_) throw StateError("Initializer: called an undefined initializer");
  return fn_(shape, dtype, seed);
}

std::pair<double, double> compute_fans(const Shape& s) {
  if (s.rank() == 0) return {1.0, 1.0};
  if (s.rank() == 1) return {double(s[0]), double(s[0])};
  if (s.rank() == 2) return {double(s[0]), double(s[1])};
  double receptive = 1;
  for (int i = 0; i < s.rank() - 2; ++i) receptive *= double(s[i]);
  return {double(s[s.rank() - 2]) * receptive, double(s[s.rank() - 1]) * receptive};
}

void set_global_seed(uint64_t seed) { g_seed.store(seed); }
uint64_t global_seed() { return g_seed.load(); }

namespace initializers {

// glorot: scale 1, fan_avg; he: scale 2, fan_in.
Initializer glorot_uniform() { return variance_scaling("glorot_uniform", 1.0, 2, true); }
Initializer glorot_normal() { return variance_scaling("glorot_normal", 1.0, 2, false); }
Initializer he_normal() { return variance_scaling("he_normal", 2.0, 0, false); }
Initializer he_uniform() { return variance_scaling("he_uniform", 2.0, 0, true); }

Initializer zeros() {
  return Initializer("zeros",
                     [](const Shape& s, DType dt, uint64_t) { return kiln::zeros(s, dt); });
}
Initializer ones() {
  return Initializer("ones", [](const Shape& s, DType dt, uint64_t) { return kiln::ones(s, dt); });
}
Initializer constant(double value) {
  std::ostringstream name;
  name << "constant(" << value << ")";
  return Initializer(name.str(),
                     [value](const Shape& s, DType dt, uint64_t) { return full(s, value, dt); });
}
Initializer random_uniform(double low, double high) {
  if (!(low < high)) {
    std::ostringstream m;
    m << "initializer random_uniform: needs low < high, got low=" << low << " high=" << high;
    throw ValueError(m.str());
  }
  return Initializer("random_uniform", [low, high](const Shape& s, DType dt, uint64_t seed) {
    require_floating("random_uniform", dt);
    return kiln::random_uniform(s, low, high, seed, dt);
  });
}
Initializer random_normal(double mean, double stddev) {
  if (!(stddev >= 0)) {
    std::ostringstream m;
    m << "initializer random_normal: needs stddev >= 0, got " << stddev;
    throw ValueError(m.str());
  }
  return Initializer("random_normal", [mean, stddev](const Shape& s, DType dt, uint64_t seed) {
    require_floating("random_normal", dt);
    return kiln::random_normal(s, mean, stddev, seed, dt);
  });
}

Initializer get(const std::string& name) {
  if (name == "glorot_uniform") return glorot_uniform();
  if (name == "glorot_normal") return glorot_normal();
  if (name == "he_normal") return he_normal();
  if (name == "he_uniform") return he_uniform();
  if (name == "zeros") return zeros();
  if (name == "ones") return ones();
  if (name == "random_uniform") return random_uniform();
  if (name == "random_normal") return random_normal();
  throw ValueError("unknown initializer '" + name +
                   "'; valid: glorot_uniform, glorot_normal, he_normal, he_uniform, zeros, ones, "
                   "random_uniform, random_normal");
}

}  // namespace initializers
}  // namespace kiln
