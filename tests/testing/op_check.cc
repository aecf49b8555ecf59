#include "testing/op_check.h"

#include <cmath>
#include <sstream>

#include "ops/op_def.h"

namespace kiln::testing {

Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double low, double high) {
  Tensor u = random_uniform(shape, low, high, seed, float64);
  if (dtype == float64) return u;
  if (is_floating(dtype)) return cast(u, dtype);
  return cast(u, dtype);  // integers truncate toward zero
}

::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) {
    return ::testing::AssertionFailure()
           << "shapes differ: " << to_string(a.shape()) << " vs " << to_string(b.shape());
  }
  if (a.dtype() != b.dtype()) {
    return ::testing::AssertionFailure()
           << "dtypes differ: " << dtype_name(a.dtype()) << " vs " << dtype_name(b.dtype());
  }
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < x.size(); ++i) {
    bool both_nan = std::isnan(x[i]) && std::isnan(y[i]);
    bool same_inf = std::isinf(x[i]) && x[i] == y[i];
    if (both_nan || same_inf) continue;
    double d = std::abs(x[i] - y[i]);
    double excess = d - (atol + rtol * std::abs(y[i]));
    if (!(excess <= 0) && (at < 0 || excess > worst || std::isnan(d))) {
      worst = excess;
      at = static_cast<int64_t>(i);
    }
  }
  if (at >= 0) {
    return ::testing::AssertionFailure()
           << "element " << at << " differs: " << x[at] << " vs " << y[at] << " (shape "
           << to_string(a.shape()) << ", rtol " << rtol << ", atol " << atol << ")";
  }
  return ::testing::AssertionSuccess();
}

void check_fast_matches_reference(const std::function<Tensor()>& fn, double rtol, double atol) {
  Tensor fast = fn();
  Tensor ref;
  {
    ForceReferenceScope scope;
    ref = fn();
  }
  EXPECT_TRUE(all_close(fast, ref, rtol, atol));
}

void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                     std::vector<Tensor> inputs, double eps, double tol) {
  for (Tensor& t : inputs) ASSERT_EQ(t.dtype(), float64) << "gradient checks run in float64";
  Tensor probe = f(inputs);
  Tensor weights = random_uniform(probe.shape(), 0.5, 1.5, 12345, float64);
  auto loss = [&](const std::vector<Tensor>& xs) { return sum(mul(f(xs), weights)); };

  std::vector<Tensor> analytic;
  {
    GradientTape tape;
    for (const Tensor& t : inputs) tape.watch(t);
    Tensor l = loss(inputs);
    analytic = tape.gradient(l, inputs);
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor numeric = zeros_like(inputs[k]);
    double* x = inputs[k].data<double>();
    double* g = numeric.data<double>();
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      double saved = x[i];
      x[i] = saved + eps;
      double up = loss(inputs).item<double>();
      x[i] = saved - eps;
      double down = loss(inputs).item<double>();
      x[i] = saved;
      g[i] = (up - down) / (2 * eps);
    }
    ASSERT_TRUE(analytic[k].defined()) << "no gradient for input " << k;
    EXPECT_TRUE(all_close(analytic[k], numeric, tol, tol)) << "gradient of input " << k;
  }
}

}  // namespace kiln::testing
