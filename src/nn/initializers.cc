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
Tensor truncated_normal_values(const Shape& shape, double mean, double stddev, uint64_t seed,
                               DType dtype) {
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
  for (double& x : v) x = mean + std::clamp(x, -2.0, 2.0) * stddev;
  return cast(from_vector<double>(v, shape), dtype);
}

const char* mode_name(initializers::FanMode m) {
  switch (m) {
    case initializers::FanMode::kFanIn:
      return "fan_in";
    case initializers::FanMode::kFanOut:
      return "fan_out";
    case initializers::FanMode::kFanAvg:
      return "fan_avg";
  }
  return "?";
}

const char* distribution_name(initializers::Distribution d) {
  switch (d) {
    case initializers::Distribution::kTruncatedNormal:
      return "truncated_normal";
    case initializers::Distribution::kUntruncatedNormal:
      return "untruncated_normal";
    case initializers::Distribution::kUniform:
      return "uniform";
  }
  return "?";
}

Initializer scaled(const std::string& name, double scale, initializers::FanMode mode,
                   initializers::Distribution dist) {
  using initializers::Distribution;
  using initializers::FanMode;
  return Initializer(name, [name, scale, mode, dist](const Shape& s, DType dt, uint64_t seed) {
    require_floating(name, dt);
    auto [fan_in, fan_out] = compute_fans(s);
    double n = mode == FanMode::kFanIn    ? fan_in
               : mode == FanMode::kFanOut ? fan_out
                                          : (fan_in + fan_out) / 2.0;
    double var = scale / std::max(1.0, n);
    switch (dist) {
      case Distribution::kUniform: {
        double limit = std::sqrt(3.0 * var);
        return kiln::random_uniform(s, -limit, limit, seed, dt);
      }
      case Distribution::kUntruncatedNormal:
        return kiln::random_normal(s, 0.0, std::sqrt(var), seed, dt);
      case Distribution::kTruncatedNormal:
        break;
    }
    // Keras: the stddev of a normal truncated at 2 stddev is 0.8796... of the untruncated one.
    return truncated_normal_values(s, 0.0, std::sqrt(var) / 0.87962566103423978, seed, dt);
  });
}

// Q of the QR decomposition of the m x n matrix (m >= n) whose columns are the n contiguous
// runs of m values in `a`, with diag(R) > 0; returned in the same column-major layout. Modified
// Gram-Schmidt makes diag(R) = the column norms, positive, with no sign fix-up; each column is
// orthogonalized twice ("twice is enough") so Q is orthonormal to rounding.
std::vector<double> orthonormal_columns(std::vector<double> a, int64_t m, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double* v = a.data() + j * m;
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t k = 0; k < j; ++k) {
        const double* q = a.data() + k * m;
        double r = 0;
        for (int64_t i = 0; i < m; ++i) r += q[i] * v[i];
        for (int64_t i = 0; i < m; ++i) v[i] -= r * q[i];
      }
    }
    double norm = 0;
    for (int64_t i = 0; i < m; ++i) norm += v[i] * v[i];
    norm = std::sqrt(norm);
    // A normal matrix with m >= n has full rank with probability 1; guard the division anyway.
    if (norm > 0) {
      for (int64_t i = 0; i < m; ++i) v[i] /= norm;
    }
  }
  return a;
}

std::string format_number(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
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

Initializer variance_scaling(double scale, FanMode mode, Distribution distribution) {
  if (!(scale > 0)) {
    throw ValueError("initializer variance_scaling: needs scale > 0, got scale=" +
                     format_number(scale));
  }
  return scaled("variance_scaling(scale=" + format_number(scale) + ", mode=" + mode_name(mode) +
                    ", distribution=" + distribution_name(distribution) + ")",
                scale, mode, distribution);
}

// glorot: scale 1, fan_avg; he: scale 2, fan_in; lecun: scale 1, fan_in.
Initializer glorot_uniform() {
  return scaled("glorot_uniform", 1.0, FanMode::kFanAvg, Distribution::kUniform);
}
Initializer glorot_normal() {
  return scaled("glorot_normal", 1.0, FanMode::kFanAvg, Distribution::kTruncatedNormal);
}
Initializer he_normal() {
  return scaled("he_normal", 2.0, FanMode::kFanIn, Distribution::kTruncatedNormal);
}
Initializer he_uniform() {
  return scaled("he_uniform", 2.0, FanMode::kFanIn, Distribution::kUniform);
}
Initializer lecun_normal() {
  return scaled("lecun_normal", 1.0, FanMode::kFanIn, Distribution::kTruncatedNormal);
}
Initializer lecun_uniform() {
  return scaled("lecun_uniform", 1.0, FanMode::kFanIn, Distribution::kUniform);
}

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

Initializer truncated_normal(double mean, double stddev) {
  if (!(stddev >= 0)) {
    throw ValueError("initializer truncated_normal: needs stddev >= 0, got " +
                     format_number(stddev));
  }
  return Initializer("truncated_normal", [mean, stddev](const Shape& s, DType dt, uint64_t seed) {
    require_floating("truncated_normal", dt);
    return truncated_normal_values(s, mean, stddev, seed, dt);
  });
}

Initializer orthogonal(double gain) {
  return Initializer("orthogonal", [gain](const Shape& s, DType dt, uint64_t seed) {
    require_floating("orthogonal", dt);
    if (s.rank() < 2) {
      throw ValueError("initializer orthogonal: needs a shape of rank 2 or more, got " +
                       to_string(s) + " of rank " + std::to_string(s.rank()));
    }
    const int64_t cols = s[s.rank() - 1];
    int64_t rows = 1;
    for (int i = 0; i < s.rank() - 1; ++i) rows *= s[i];
    const int64_t m = std::max(rows, cols), n = std::min(rows, cols);
    std::vector<double> a(m * n);
    detail::philox_normal(seed, 0, m * n, a.data());
    std::vector<double> q = orthonormal_columns(std::move(a), m, n);
    // q holds Q column-major. rows >= cols: out[r][c] = Q[r][c]; rows < cols: out = Q^T, whose
    // row-major layout is Q's column-major one.
    std::vector<double> out(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        out[r * cols + c] = gain * (rows >= cols ? q[c * m + r] : q[r * m + c]);
      }
    }
    return cast(from_vector<double>(out, s), dt);
  });
}

Initializer identity(double gain) {
  return Initializer("identity", [gain](const Shape& s, DType dt, uint64_t) {
    if (s.rank() != 2) {
      throw ValueError("initializer identity: needs a 2-D shape (a matrix), got " + to_string(s) +
                       " of rank " + std::to_string(s.rank()));
    }
    std::vector<double> v(s.numel(), 0.0);
    for (int64_t i = 0; i < std::min(s[0], s[1]); ++i) v[i * s[1] + i] = gain;
    return cast(from_vector<double>(v, s), dt);
  });
}

namespace {
// Keras' names (initializers/__init__.py): snake_case, class names, then its aliases.
struct NamedInitializer {
  const char* name;
  Initializer (*make)();
};
const NamedInitializer kNamed[] = {
    {"constant", [] { return constant(); }},
    {"glorot_normal", glorot_normal},
    {"glorot_uniform", glorot_uniform},
    {"he_normal", he_normal},
    {"he_uniform", he_uniform},
    {"identity", [] { return identity(); }},
    {"lecun_normal", lecun_normal},
    {"lecun_uniform", lecun_uniform},
    {"ones", ones},
    {"orthogonal", [] { return orthogonal(); }},
    {"random_normal", [] { return random_normal(); }},
    {"random_uniform", [] { return random_uniform(); }},
    {"truncated_normal", [] { return truncated_normal(); }},
    {"variance_scaling", [] { return variance_scaling(); }},
    {"zeros", zeros},
    {"Constant", [] { return constant(); }},
    {"GlorotNormal", glorot_normal},
    {"GlorotUniform", glorot_uniform},
    {"HeNormal", he_normal},
    {"HeUniform", he_uniform},
    {"Identity", [] { return identity(); }},
    {"LecunNormal", lecun_normal},
    {"LecunUniform", lecun_uniform},
    {"Ones", ones},
    {"Orthogonal", [] { return orthogonal(); }},
    {"OrthogonalInitializer", [] { return orthogonal(); }},
    {"RandomNormal", [] { return random_normal(); }},
    {"RandomUniform", [] { return random_uniform(); }},
    {"TruncatedNormal", [] { return truncated_normal(); }},
    {"VarianceScaling", [] { return variance_scaling(); }},
    {"Zeros", zeros},
    {"uniform", [] { return random_uniform(); }},
    {"normal", [] { return random_normal(); }},
    {"one", ones},
    {"zero", zeros},
};
}  // namespace

Initializer get(const std::string& name) {
  for (const NamedInitializer& n : kNamed) {
    if (name == n.name) return n.make();
  }
  std::string valid;
  for (const NamedInitializer& n : kNamed) valid += std::string(valid.empty() ? "" : ", ") + n.name;
  throw ValueError("unknown initializer '" + name + "'; valid: " + valid);
}

}  // namespace initializers
}  // namespace kiln
