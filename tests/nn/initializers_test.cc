// Tests for src/nn/initializers.cc: Keras' names and defaults, each initializer's distribution,
// determinism per seed, and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/nn/initializers.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

// The stddev of a unit normal truncated at +-2: Keras divides by it so the result has the
// stddev asked for.
constexpr double kTruncatedStd = 0.87962566103423978;

struct Stats {
  double mean = 0, stddev = 0, min = 0, max = 0;
};

Stats stats_of(const Tensor& t) {
  std::vector<double> v = cast(t, float64).to_vector<double>();
  Stats s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= v.size();
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(s.stddev / v.size());
  return s;
}

// Checks mean ~ 0 (within 5 standard errors), stddev within 3%, and every value in
// [-bound, bound].
void expect_zero_mean(const Tensor& t, double stddev, double bound, const std::string& what) {
  SCOPED_TRACE(what);
  Stats s = stats_of(t);
  EXPECT_NEAR(s.mean, 0.0, 5 * stddev / std::sqrt(double(t.numel())));
  EXPECT_NEAR(s.stddev, stddev, 0.03 * stddev);
  EXPECT_GE(s.min, -bound);
  EXPECT_LE(s.max, bound);
}

// A uniform on [-limit, limit] has stddev limit / sqrt(3) and comes close to both ends.
void expect_uniform(const Tensor& t, double limit, const std::string& what) {
  expect_zero_mean(t, limit / std::sqrt(3.0), limit, what);
  Stats s = stats_of(t);
  EXPECT_LT(s.min, -0.99 * limit) << what;
  EXPECT_GT(s.max, 0.99 * limit) << what;
}

// A normal truncated at 2 stddev: values within 2 * (stddev / 0.8796), the untruncated one's 2
// stddev, and some of them near that bound.
void expect_truncated(const Tensor& t, double stddev, const std::string& what) {
  const double bound = 2 * stddev / kTruncatedStd;
  expect_zero_mean(t, stddev, bound * (1 + 1e-6), what);
  EXPECT_GT(stats_of(t).max, 0.95 * bound) << what;
}

// A dense kernel [fan_in, fan_out] = [300, 200] and a conv kernel HWIO [3, 3, 32, 64]
// (fan_in = 288, fan_out = 576), as Keras computes fans.
const Shape kDense{300, 200};
const Shape kConv{3, 3, 32, 64};

TEST(Initializers, KerasDefaultsOfTheRandomOnes) {
  expect_uniform(initializers::get("uniform")(kDense, float64, 1), 0.05, "uniform");
  expect_uniform(initializers::get("random_uniform")(kDense, float32, 1), 0.05, "random_uniform");
  expect_uniform(initializers::get("RandomUniform")(kDense, float64, 1), 0.05, "RandomUniform");
  for (const char* n : {"normal", "random_normal", "RandomNormal"}) {
    expect_zero_mean(initializers::get(n)(kDense, float64, 2), 0.05, 0.05 * 6, n);
  }
  for (const char* n : {"truncated_normal", "TruncatedNormal"}) {
    // Keras' TruncatedNormal(stddev=0.05) cuts at 2 * 0.05: the result's stddev is 0.05 * 0.88.
    Tensor t = initializers::get(n)(kDense, float64, 3);
    expect_zero_mean(t, 0.05 * kTruncatedStd, 0.1, n);
    EXPECT_GT(stats_of(t).max, 0.095) << n;
  }
}

TEST(Initializers, TruncatedAndRandomNormalTakeMeanAndStddev) {
  Stats s = stats_of(initializers::truncated_normal(3.0, 0.5)({200, 200}, float64, 4));
  EXPECT_NEAR(s.mean, 3.0, 0.01);
  EXPECT_NEAR(s.stddev, 0.5 * kTruncatedStd, 0.02);
  EXPECT_GE(s.min, 2.0);
  EXPECT_LE(s.max, 4.0);
  s = stats_of(initializers::random_normal(-1.0, 2.0)({200, 200}, float64, 4));
  EXPECT_NEAR(s.mean, -1.0, 0.05);
  EXPECT_NEAR(s.stddev, 2.0, 0.06);
}

TEST(Initializers, VarianceScalingFamiliesUseKerasFans) {
  struct Case {
    const char* name;
    double scale;
    int mode;  // 0 fan_in, 1 fan_out, 2 fan_avg
    bool uniform;
  };
  const Case cases[] = {
      {"lecun_normal", 1, 0, false},     {"LecunNormal", 1, 0, false},
      {"lecun_uniform", 1, 0, true},     {"LecunUniform", 1, 0, true},
      {"glorot_normal", 1, 2, false},    {"GlorotNormal", 1, 2, false},
      {"glorot_uniform", 1, 2, true},    {"GlorotUniform", 1, 2, true},
      {"he_normal", 2, 0, false},        {"HeNormal", 2, 0, false},
      {"he_uniform", 2, 0, true},        {"HeUniform", 2, 0, true},
      {"variance_scaling", 1, 0, false}, {"VarianceScaling", 1, 0, false},
  };
  for (const Case& c : cases) {
    for (const Shape& shape : {kDense, kConv}) {
      auto [fan_in, fan_out] = compute_fans(shape);
      const double n = c.mode == 0 ? fan_in : c.mode == 1 ? fan_out : (fan_in + fan_out) / 2;
      const double var = c.scale / n;
      Tensor t = initializers::get(c.name)(shape, float32, 7);
      EXPECT_EQ(t.shape(), shape);
      const std::string what = std::string(c.name) + " " + to_string(shape);
      if (c.uniform) {
        expect_uniform(t, std::sqrt(3 * var), what);
      } else {
        expect_truncated(t, std::sqrt(var), what);
      }
    }
  }
  EXPECT_EQ(compute_fans(kConv), (std::pair<double, double>{288, 576}));
}

TEST(Initializers, VarianceScalingModesAndDistributions) {
  using initializers::Distribution;
  using initializers::FanMode;
  // [300, 200]: fan_in 300, fan_out 200, fan_avg 250.
  expect_truncated(initializers::variance_scaling(
                       3.0, FanMode::kFanOut, Distribution::kTruncatedNormal)(kDense, float64, 8),
                   std::sqrt(3.0 / 200), "fan_out truncated");
  expect_uniform(initializers::variance_scaling(0.5, FanMode::kFanAvg, Distribution::kUniform)(
                     kDense, float64, 8),
                 std::sqrt(3 * 0.5 / 250), "fan_avg uniform");
  Tensor u = initializers::variance_scaling(2.0, FanMode::kFanIn, Distribution::kUntruncatedNormal)(
      kDense, float64, 8);
  expect_zero_mean(u, std::sqrt(2.0 / 300), 6 * std::sqrt(2.0 / 300), "untruncated");
  // Untruncated: values beyond 2 stddev exist (about 4.6% of them).
  EXPECT_GT(stats_of(u).max, 2.5 * std::sqrt(2.0 / 300));
  EXPECT_EQ(initializers::variance_scaling().name(),
            "variance_scaling(scale=1, mode=fan_in, distribution=truncated_normal)");
}

// Max |A^T A - I| for the row-major rows x cols matrix in t, over its columns (or rows).
double orthonormality_error(const Tensor& t, int64_t rows, int64_t cols, bool by_columns) {
  std::vector<double> a = cast(t, float64).to_vector<double>();
  const int64_t k = by_columns ? cols : rows, len = by_columns ? rows : cols;
  auto at = [&](int64_t vec, int64_t i) {
    return by_columns ? a[i * cols + vec] : a[vec * cols + i];
  };
  double err = 0;
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t q = 0; q < k; ++q) {
      double d = 0;
      for (int64_t i = 0; i < len; ++i) d += at(p, i) * at(q, i);
      err = std::max(err, std::abs(d - (p == q ? 1.0 : 0.0)));
    }
  }
  return err;
}

TEST(Initializers, OrthogonalIsOrthonormal) {
  for (const char* n : {"orthogonal", "Orthogonal", "OrthogonalInitializer"}) {
    SCOPED_TRACE(n);
    // Tall: orthonormal columns; wide: orthonormal rows; square: both.
    EXPECT_LT(orthonormality_error(initializers::get(n)({64, 16}, float64, 1), 64, 16, true),
              1e-12);
    EXPECT_LT(orthonormality_error(initializers::get(n)({16, 64}, float64, 1), 16, 64, false),
              1e-12);
    Tensor sq = initializers::get(n)({32, 32}, float64, 1);
    EXPECT_LT(orthonormality_error(sq, 32, 32, true), 1e-12);
    EXPECT_LT(orthonormality_error(sq, 32, 32, false), 1e-12);
  }
  // A conv kernel HWIO [3, 3, 4, 8] is a [36, 8] matrix with orthonormal columns.
  Tensor k = initializers::orthogonal()({3, 3, 4, 8}, float32, 2);
  EXPECT_EQ(k.shape(), (Shape{3, 3, 4, 8}));
  EXPECT_LT(orthonormality_error(k, 36, 8, true), 1e-5);
  // gain scales every value: columns of norm 2.
  Tensor g = initializers::orthogonal(2.0)({10, 10}, float64, 3);
  EXPECT_LT(orthonormality_error(g * 0.5, 10, 10, true), 1e-12);
  // Entries of a random orthogonal n x n matrix have mean 0 and variance 1/n.
  Stats s = stats_of(initializers::orthogonal()({200, 200}, float64, 4));
  EXPECT_NEAR(s.mean, 0.0, 0.005);
  EXPECT_NEAR(s.stddev, std::sqrt(1.0 / 200), 0.03 * std::sqrt(1.0 / 200));
  expect_error<ValueError>([] { initializers::orthogonal()({5}, float32, 0); },
                           {"orthogonal", "rank 2", "[5]"});
}

TEST(Initializers, IdentityIsTheEyeTimesGain) {
  for (const char* n : {"identity", "Identity"}) {
    EXPECT_EQ(initializers::get(n)({2, 3}, float32, 0).to_vector<float>(),
              (std::vector<float>{1, 0, 0, 0, 1, 0}))
        << n;
  }
  EXPECT_EQ(initializers::identity(0.5)({3, 2}, float64, 0).to_vector<double>(),
            (std::vector<double>{0.5, 0, 0, 0.5, 0, 0}));
  EXPECT_EQ(initializers::identity()({2, 2}, int32, 0).to_vector<int32_t>(),
            (std::vector<int32_t>{1, 0, 0, 1}));
  expect_error<ValueError>(
      [] {
        initializers::identity()({3, 3, 4}, float32, 0);
      },
      {"identity", "2-D", "[3, 3, 4]", "rank 3"});
  expect_error<ValueError>([] { initializers::get("identity")({4}, float32, 0); },
                           {"identity", "2-D", "rank 1"});
}

TEST(Initializers, ConstantsByName) {
  for (const char* n : {"zeros", "Zeros", "zero", "constant", "Constant"}) {
    EXPECT_EQ(initializers::get(n)({3}, float32, 5).to_vector<float>(),
              (std::vector<float>{0, 0, 0}))
        << n;
  }
  for (const char* n : {"ones", "Ones", "one"}) {
    EXPECT_EQ(initializers::get(n)({2}, int64, 5).to_vector<int64_t>(),
              (std::vector<int64_t>{1, 1}))
        << n;
  }
  EXPECT_EQ(initializers::constant()({1}, float64, 0).item<double>(), 0.0);
}

// Every name Keras accepts: the canonical snake_case name each maps to.
struct KerasName {
  const char* name;
  const char* canonical;
  bool random;
};
const KerasName kKerasNames[] = {
    {"uniform", "random_uniform", true},
    {"normal", "random_normal", true},
    {"random_uniform", "random_uniform", true},
    {"RandomUniform", "random_uniform", true},
    {"random_normal", "random_normal", true},
    {"RandomNormal", "random_normal", true},
    {"truncated_normal", "truncated_normal", true},
    {"TruncatedNormal", "truncated_normal", true},
    {"lecun_normal", "lecun_normal", true},
    {"LecunNormal", "lecun_normal", true},
    {"lecun_uniform", "lecun_uniform", true},
    {"LecunUniform", "lecun_uniform", true},
    {"glorot_normal", "glorot_normal", true},
    {"GlorotNormal", "glorot_normal", true},
    {"glorot_uniform", "glorot_uniform", true},
    {"GlorotUniform", "glorot_uniform", true},
    {"he_normal", "he_normal", true},
    {"HeNormal", "he_normal", true},
    {"he_uniform", "he_uniform", true},
    {"HeUniform", "he_uniform", true},
    {"orthogonal", "orthogonal", true},
    {"Orthogonal", "orthogonal", true},
    {"OrthogonalInitializer", "orthogonal", true},
    {"variance_scaling", "variance_scaling(scale=1, mode=fan_in, distribution=truncated_normal)",
     true},
    {"VarianceScaling", "variance_scaling(scale=1, mode=fan_in, distribution=truncated_normal)",
     true},
    {"identity", "identity", false},
    {"Identity", "identity", false},
    {"constant", "constant(0)", false},
    {"Constant", "constant(0)", false},
    {"zeros", "zeros", false},
    {"Zeros", "zeros", false},
    {"zero", "zeros", false},
    {"ones", "ones", false},
    {"Ones", "ones", false},
    {"one", "ones", false},
};

TEST(Initializers, EveryKerasNameIsDeterministicPerSeed) {
  const Shape shape{8, 6};
  for (const KerasName& k : kKerasNames) {
    SCOPED_TRACE(k.name);
    Initializer init = initializers::get(k.name);
    EXPECT_EQ(init.name(), k.canonical);
    std::vector<float> a = init(shape, float32, 11).to_vector<float>();
    EXPECT_EQ(a, init(shape, float32, 11).to_vector<float>());
    // A second Initializer of the same name gives the same values: they depend on the seed only.
    EXPECT_EQ(a, initializers::get(k.name)(shape, float32, 11).to_vector<float>());
    std::vector<float> b = init(shape, float32, 12).to_vector<float>();
    if (k.random) {
      EXPECT_NE(a, b);
    } else {
      EXPECT_EQ(a, b);
    }
  }
  // Aliases are the same initializer: same seed, same values.
  EXPECT_EQ(initializers::get("uniform")(shape, float32, 3).to_vector<float>(),
            initializers::random_uniform()(shape, float32, 3).to_vector<float>());
  EXPECT_EQ(initializers::get("GlorotUniform")(shape, float32, 3).to_vector<float>(),
            initializers::glorot_uniform()(shape, float32, 3).to_vector<float>());
  EXPECT_EQ(initializers::get("variance_scaling")(shape, float32, 3).to_vector<float>(),
            initializers::lecun_normal()(shape, float32, 3).to_vector<float>());
}

TEST(Initializers, UnknownNamesListEveryValidName) {
  try {
    initializers::get("Uniform");  // Keras' names are case-sensitive
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown initializer 'Uniform'"), std::string::npos) << m;
    const std::string kValid = "; valid: ";
    ASSERT_NE(m.find(kValid), std::string::npos) << m;
    std::vector<std::string> listed;
    std::string rest = m.substr(m.find(kValid) + kValid.size());
    for (std::size_t p; (p = rest.find(", ")) != std::string::npos; rest = rest.substr(p + 2)) {
      listed.push_back(rest.substr(0, p));
    }
    listed.push_back(rest);
    for (const KerasName& k : kKerasNames) {
      EXPECT_NE(std::find(listed.begin(), listed.end(), k.name), listed.end())
          << k.name << " missing from: " << m;
    }
    EXPECT_EQ(listed.size(), std::size(kKerasNames)) << m;
  }
  expect_error<ValueError>([] { initializers::get(""); }, {"unknown initializer ''", "valid:"});
}

TEST(Initializers, BadArgumentsAndDTypes) {
  using initializers::Distribution;
  using initializers::FanMode;
  expect_error<ValueError>([] { initializers::variance_scaling(0.0); }, {"scale > 0", "0"});
  expect_error<ValueError>(
      [] { initializers::variance_scaling(-1.0, FanMode::kFanAvg, Distribution::kUniform); },
      {"scale > 0", "-1"});
  expect_error<ValueError>([] { initializers::truncated_normal(0, -1); }, {"stddev >= 0"});
  for (const char* n : {"uniform", "truncated_normal", "lecun_uniform", "orthogonal"}) {
    expect_error<DTypeError>([n] { initializers::get(n)({2, 2}, int32, 0); }, {"int32"});
  }
}

}  // namespace
}  // namespace kiln
