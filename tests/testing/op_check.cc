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

const char* path_name(KernelPath p) {
  switch (p) {
    case KernelPath::kFast:
      return "fast";
    case KernelPath::kReference:
      return "reference";
    case KernelPath::kView:
      return "view";
    default:
      return "none";
  }
}

void check_fast_matches_reference(const std::function<Tensor()>& fn, double rtol, double atol,
                                  Expect expect) {
  reset_kernel_stats();
  Tensor fast = fn();
  const KernelStats st = kernel_stats();
  const KernelPath want = expect == Expect::kFast       ? KernelPath::kFast
                          : expect == Expect::kDeclined ? KernelPath::kReference
                                                        : KernelPath::kView;
  EXPECT_EQ(path_name(st.first_path), std::string(path_name(want)))
      << (st.first_op ? st.first_op->name : "no op") << " (the first op of " << st.ops_run
      << ") took an unexpected path";
  Tensor ref;
  {
    ForceReferenceScope scope;
    reset_kernel_stats();
    ref = fn();
    EXPECT_EQ(path_name(kernel_stats().first_path), std::string("reference"));
  }
  EXPECT_TRUE(all_close(fast, ref, rtol, atol));
}

namespace {
// Central differences of the scalar loss(xs) with respect to every element of xs[k].
Tensor numeric_gradient(const std::function<Tensor(const std::vector<Tensor>&)>& loss,
                        std::vector<Tensor>& xs, size_t k, double eps) {
  Tensor numeric = zeros_like(xs[k]);
  double* x = xs[k].data<double>();
  double* g = numeric.data<double>();
  for (int64_t i = 0; i < xs[k].numel(); ++i) {
    double saved = x[i];
    x[i] = saved + eps;
    double up = loss(xs).item<double>();
    x[i] = saved - eps;
    double down = loss(xs).item<double>();
    x[i] = saved;
    g[i] = (up - down) / (2 * eps);
  }
  return numeric;
}
}  // namespace

void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                     std::vector<Tensor> inputs, double eps, double tol, bool second_order) {
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
    Tensor numeric = numeric_gradient(loss, inputs, k, eps);
    ASSERT_TRUE(analytic[k].defined()) << "no gradient for input " << k;
    EXPECT_TRUE(all_close(analytic[k], numeric, tol, tol)) << "gradient of input " << k;
  }
  if (!second_order) return;

  // Second order: h(x) = sum_k sum(grad_k(x) * V_k), differentiated by an outer tape.
  std::vector<Tensor> v;
  for (size_t k = 0; k < inputs.size(); ++k) {
    v.push_back(random_uniform(inputs[k].shape(), 0.5, 1.5, 777 + k, float64));
  }
  auto grad_dot = [&](const std::vector<Tensor>& xs) {
    GradientTape inner;
    for (const Tensor& t : xs) inner.watch(t);
    std::vector<Tensor> g = inner.gradient(loss(xs), xs);
    Tensor h = scalar(0, float64);
    for (size_t k = 0; k < xs.size(); ++k) {
      if (g[k].defined()) h = add(h, sum(mul(g[k], v[k])));
    }
    return h;
  };
  std::vector<Tensor> second;
  try {
    GradientTape outer;
    for (const Tensor& t : inputs) outer.watch(t);
    Tensor h = grad_dot(inputs);
    second = outer.gradient(h, inputs);
  } catch (const Error& e) {
    FAIL() << "second-order gradient failed: " << e.what();
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor numeric = numeric_gradient(grad_dot, inputs, k, eps);
    // An undefined second-order gradient means "zero" (the gradient does not depend on x_k).
    Tensor got = second[k].defined() ? second[k] : zeros_like(inputs[k]);
    EXPECT_TRUE(all_close(got, numeric, 10 * tol, 10 * tol))
        << "second-order gradient of input " << k;
  }
}

}  // namespace kiln::testing
