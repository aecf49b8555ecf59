// Initializers: seeded, so a weight depends only on (store seed, variable name).
#include "kiln/nn/initializers.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/random.h"
#include "kiln/error.h"
#include "kiln/nn/config.h"
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

// Keras' serialized form {"class_name": ..., "config": {...}}.
std::shared_ptr<const nlohmann::json> keras(const char* class_name, nlohmann::json config) {
  return std::make_shared<const nlohmann::json>(
      nlohmann::json{{"class_name", class_name}, {"config", std::move(config)}});
}

const nlohmann::json kNoSeed = {{"seed", nullptr}};

Initializer scaled(const std::string& name, double scale, initializers::FanMode mode,
                   initializers::Distribution dist, std::shared_ptr<const nlohmann::json> config) {
  using initializers::Distribution;
  using initializers::FanMode;
  return Initializer(
      name,
      [name, scale, mode, dist](const Shape& s, DType dt, uint64_t seed) {
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
      },
      std::move(config));
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
                scale, mode, distribution,
                keras("VarianceScaling", {{"scale", scale},
                                          {"mode", mode_name(mode)},
                                          {"distribution", distribution_name(distribution)},
                                          {"seed", nullptr}}));
}

// glorot: scale 1, fan_avg; he: scale 2, fan_in; lecun: scale 1, fan_in.
Initializer glorot_uniform() {
  return scaled("glorot_uniform", 1.0, FanMode::kFanAvg, Distribution::kUniform,
                keras("GlorotUniform", kNoSeed));
}
Initializer glorot_normal() {
  return scaled("glorot_normal", 1.0, FanMode::kFanAvg, Distribution::kTruncatedNormal,
                keras("GlorotNormal", kNoSeed));
}
Initializer he_normal() {
  return scaled("he_normal", 2.0, FanMode::kFanIn, Distribution::kTruncatedNormal,
                keras("HeNormal", kNoSeed));
}
Initializer he_uniform() {
  return scaled("he_uniform", 2.0, FanMode::kFanIn, Distribution::kUniform,
                keras("HeUniform", kNoSeed));
}
Initializer lecun_normal() {
  return scaled("lecun_normal", 1.0, FanMode::kFanIn, Distribution::kTruncatedNormal,
                keras("LecunNormal", kNoSeed));
}
Initializer lecun_uniform() {
  return scaled("lecun_uniform", 1.0, FanMode::kFanIn, Distribution::kUniform,
                keras("LecunUniform", kNoSeed));
}

Initializer zeros() {
  return Initializer(
      "zeros", [](const Shape& s, DType dt, uint64_t) { return kiln::zeros(s, dt); },
      keras("Zeros", nlohmann::json::object()));
}
Initializer ones() {
  return Initializer(
      "ones", [](const Shape& s, DType dt, uint64_t) { return kiln::ones(s, dt); },
      keras("Ones", nlohmann::json::object()));
}
Initializer constant(double value) {
  std::ostringstream name;
  name << "constant(" << value << ")";
  return Initializer(
      name.str(), [value](const Shape& s, DType dt, uint64_t) { return full(s, value, dt); },
      keras("Constant", {{"value", value}}));
}
Initializer random_uniform(double low, double high) {
  if (!(low < high)) {
    std::ostringstream m;
    m << "initializer random_uniform: needs low < high, got low=" << low << " high=" << high;
    throw ValueError(m.str());
  }
  return Initializer(
      "random_uniform",
      [low, high](const Shape& s, DType dt, uint64_t seed) {
        require_floating("random_uniform", dt);
        return kiln::random_uniform(s, low, high, seed, dt);
      },
      keras("RandomUniform", {{"minval", low}, {"maxval", high}, {"seed", nullptr}}));
}
Initializer random_normal(double mean, double stddev) {
  if (!(stddev >= 0)) {
    std::ostringstream m;
    m << "initializer random_normal: needs stddev >= 0, got " << stddev;
    throw ValueError(m.str());
  }
  return Initializer(
      "random_normal",
      [mean, stddev](const Shape& s, DType dt, uint64_t seed) {
        require_floating("random_normal", dt);
        return kiln::random_normal(s, mean, stddev, seed, dt);
      },
      keras("RandomNormal", {{"mean", mean}, {"stddev", stddev}, {"seed", nullptr}}));
}

Initializer truncated_normal(double mean, double stddev) {
  if (!(stddev >= 0)) {
    throw ValueError("initializer truncated_normal: needs stddev >= 0, got " +
                     format_number(stddev));
  }
  return Initializer(
      "truncated_normal",
      [mean, stddev](const Shape& s, DType dt, uint64_t seed) {
        require_floating("truncated_normal", dt);
        return truncated_normal_values(s, mean, stddev, seed, dt);
      },
      keras("TruncatedNormal", {{"mean", mean}, {"stddev", stddev}, {"seed", nullptr}}));
}

Initializer orthogonal(double gain) {
  return Initializer(
      "orthogonal",
      [gain](const Shape& s, DType dt, uint64_t seed) {
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
      },
      keras("Orthogonal", {{"gain", gain}, {"seed", nullptr}}));
}

Initializer identity(double gain) {
  return Initializer(
      "identity",
      [gain](const Shape& s, DType dt, uint64_t) {
        if (s.rank() != 2) {
          throw ValueError("initializer identity: needs a 2-D shape (a matrix), got " +
                           to_string(s) + " of rank " + std::to_string(s.rank()));
        }
        std::vector<double> v(s.numel(), 0.0);
        for (int64_t i = 0; i < std::min(s[0], s[1]); ++i) v[i * s[1] + i] = gain;
        return cast(from_vector<double>(v, s), dt);
      },
      keras("Identity", {{"gain", gain}}));
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

// ---- serialization --------------------------------------------------------------------------

nlohmann::json serialize(const Initializer& initializer) {
  if (initializer.keras_config() == nullptr) {
    throw ValueError("initializer '" + initializer.name() +
                     "' was made from a bare function and has no Keras config to save");
  }
  return *initializer.keras_config();
}

namespace {

// Reads one initializer class's config, checking each field's JSON type; finish() refuses the
// fields not read.
class InitConfig {
 public:
  InitConfig(const std::string& class_name, const nlohmann::json& config)
      : class_name_(class_name), config_(config) {}

  double number(const char* key, double fallback) {
    read_.push_back(key);
    auto it = config_.find(key);
    if (it == config_.end()) return fallback;
    if (!it->is_number()) fail(key, "a number", *it);
    return it->get<double>();
  }
  std::string string(const char* key, const char* fallback) {
    read_.push_back(key);
    auto it = config_.find(key);
    if (it == config_.end()) return fallback;
    if (!it->is_string()) fail(key, "a string", *it);
    return it->get<std::string>();
  }
  void seed() {
    read_.push_back("seed");
    auto it = config_.find("seed");
    if (it == config_.end() || it->is_null()) return;
    throw ValueError("initializer " + class_name_ + ": field 'seed' must be null, got " +
                     ConfigReader::excerpt(*it) +
                     " (kiln seeds initializers from the VariableStore and the variable's name)");
  }
  void finish() const {
    for (const auto& [key, value] : config_.items()) {
      if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
        std::string known;
        for (const std::string& k : read_) known += (known.empty() ? "" : ", ") + k;
        throw FormatError("initializer " + class_name_ + ": unknown config field '" + key +
                          "' (known: " + (known.empty() ? "none" : known) + ")");
      }
    }
  }

 private:
  [[noreturn]] void fail(const char* key, const char* expected, const nlohmann::json& got) const {
    throw FormatError("initializer " + class_name_ + ": field '" + key + "' must be " + expected +
                      ", got " + ConfigReader::excerpt(got));
  }
  std::string class_name_;
  const nlohmann::json& config_;
  std::vector<std::string> read_;
};

FanMode parse_mode(const std::string& s) {
  if (s == "fan_in") return FanMode::kFanIn;
  if (s == "fan_out") return FanMode::kFanOut;
  if (s == "fan_avg") return FanMode::kFanAvg;
  throw ValueError("initializer VarianceScaling: mode must be fan_in, fan_out or fan_avg, got '" +
                   s + "'");
}

Distribution parse_distribution(const std::string& s) {
  // Keras maps "normal" to its truncated normal.
  if (s == "truncated_normal" || s == "normal") return Distribution::kTruncatedNormal;
  if (s == "untruncated_normal") return Distribution::kUntruncatedNormal;
  if (s == "uniform") return Distribution::kUniform;
  throw ValueError(
      "initializer VarianceScaling: distribution must be truncated_normal, normal, "
      "untruncated_normal or uniform, got '" +
      s + "'");
}

// Keras' class names (and its snake_case names, which Keras also accepts as class_name).
Initializer from_class(const std::string& cls, InitConfig& c) {
  auto is = [&](const char* a, const char* b) { return cls == a || cls == b; };
  if (is("GlorotUniform", "glorot_uniform")) return c.seed(), glorot_uniform();
  if (is("GlorotNormal", "glorot_normal")) return c.seed(), glorot_normal();
  if (is("HeNormal", "he_normal")) return c.seed(), he_normal();
  if (is("HeUniform", "he_uniform")) return c.seed(), he_uniform();
  if (is("LecunNormal", "lecun_normal")) return c.seed(), lecun_normal();
  if (is("LecunUniform", "lecun_uniform")) return c.seed(), lecun_uniform();
  if (is("Zeros", "zeros")) return zeros();
  if (is("Ones", "ones")) return ones();
  if (is("Constant", "constant")) return constant(c.number("value", 0.0));
  if (is("RandomUniform", "random_uniform")) {
    double lo = c.number("minval", -0.05), hi = c.number("maxval", 0.05);
    c.seed();
    return random_uniform(lo, hi);
  }
  if (is("RandomNormal", "random_normal")) {
    double mean = c.number("mean", 0.0), stddev = c.number("stddev", 0.05);
    c.seed();
    return random_normal(mean, stddev);
  }
  if (is("TruncatedNormal", "truncated_normal")) {
    double mean = c.number("mean", 0.0), stddev = c.number("stddev", 0.05);
    c.seed();
    return truncated_normal(mean, stddev);
  }
  if (is("Orthogonal", "orthogonal") || cls == "OrthogonalInitializer") {
    double gain = c.number("gain", 1.0);
    c.seed();
    return orthogonal(gain);
  }
  if (is("Identity", "identity") || cls == "IdentityInitializer") {
    return identity(c.number("gain", 1.0));
  }
  if (is("VarianceScaling", "variance_scaling")) {
    double scale = c.number("scale", 1.0);
    FanMode mode = parse_mode(c.string("mode", "fan_in"));
    Distribution dist = parse_distribution(c.string("distribution", "truncated_normal"));
    c.seed();
    return variance_scaling(scale, mode, dist);
  }
  std::string valid;
  for (const NamedInitializer& n : kNamed) valid += std::string(valid.empty() ? "" : ", ") + n.name;
  throw FormatError("unknown initializer class '" + cls + "'; valid: " + valid);
}

}  // namespace

Initializer deserialize(const nlohmann::json& config) {
  if (config.is_string()) return get(config.get<std::string>());
  if (!config.is_object()) {
    throw FormatError(
        "initializer: expected a name or an object {\"class_name\", \"config\"}, got " +
        ConfigReader::excerpt(config));
  }
  auto cls = config.find("class_name");
  if (cls == config.end() || !cls->is_string()) {
    throw FormatError("initializer " + ConfigReader::excerpt(config) +
                      ": needs a string field 'class_name'");
  }
  const std::string class_name = cls->get<std::string>();
  for (const auto& [key, value] : config.items()) {
    if (key == "class_name" || key == "config") continue;
    if ((key == "module" || key == "registered_name") && (value.is_string() || value.is_null()))
      continue;
    throw FormatError("initializer " + class_name + ": unexpected field '" + key +
                      "' = " + ConfigReader::excerpt(value));
  }
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const nlohmann::json* body = &kEmpty;
  if (auto it = config.find("config"); it != config.end() && !it->is_null()) {
    if (!it->is_object()) {
      throw FormatError("initializer " + class_name + ": field 'config' must be an object, got " +
                        ConfigReader::excerpt(*it));
    }
    body = &*it;
  }
  InitConfig reader(class_name, *body);
  Initializer init = from_class(class_name, reader);
  reader.finish();
  return init;
}

}  // namespace initializers
}  // namespace kiln
