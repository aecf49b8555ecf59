// ElementwiseFn (ops/elementwise_fn.h): the per-element loops an op carries for fusion are its
// own math. For every registered op with one: f32/f64 equal the op's reference kernel exactly,
// fast_f32 its default (fast) kernel to a few ulp, on awkward values (signed zeros, infinities,
// NaN, large magnitudes).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Both NaN, equal (infinities, zeros), or within rtol.
bool agree(double got, double want, double rtol) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
  if (got == want) return true;
  if (std::isinf(got) || std::isinf(want)) return false;
  return std::fabs(got - want) <= rtol * std::max(std::fabs(got), std::fabs(want));
}

template <typename T>
void check_op(const OpDef& op, const std::vector<double>& xs, const std::vector<double>& ys) {
  const ElementwiseFn& fn = *op.elementwise;
  const DType dtype = std::is_same_v<T, float> ? float32 : float64;
  std::vector<T> x(xs.begin(), xs.end()), y(ys.begin(), ys.end());
  const int64_t n = static_cast<int64_t>(x.size());
  Tensor tx = from_vector<T>(x), ty = from_vector<T>(y);
  ASSERT_EQ(tx.dtype(), dtype);
  auto run = [&] { return fn.arity == 2 ? run_op(op, {tx, ty}) : run_op(op, {tx}); };
  Tensor want_ref;
  {
    ForceReferenceScope ref;
    want_ref = run();
  }
  Tensor want = run();  // the op's fast kernel where it has one
  const T* r = want_ref.data<T>();
  const T* w = want.data<T>();
  std::vector<T> got(x.size());
  if constexpr (std::is_same_v<T, float>) {
    fn.f32(x.data(), fn.arity == 2 ? y.data() : nullptr, got.data(), n);
  } else {
    fn.f64(x.data(), fn.arity == 2 ? y.data() : nullptr, got.data(), n);
  }
  for (int64_t i = 0; i < n; ++i) {  // the reference math exactly
    EXPECT_TRUE(agree(got[i], r[i], 0))
        << op.name << "(" << x[i] << ", " << y[i] << "): " << got[i] << " vs " << r[i];
  }
  if constexpr (std::is_same_v<T, float>) {
    // The fast form (exp_f32, tanh_f32, ...): within a few ulp, same NaN and infinity cases.
    fn.fast_f32(x.data(), fn.arity == 2 ? y.data() : nullptr, got.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_TRUE(agree(got[i], w[i], 1e-6))
          << op.name << " fast(" << x[i] << ", " << y[i] << "): " << got[i] << " vs " << w[i];
    }
    // In place: out may be x.
    std::vector<float> inplace = x;
    fn.fast_f32(inplace.data(), fn.arity == 2 ? y.data() : nullptr, inplace.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_TRUE(agree(inplace[i], got[i], 0)) << op.name << i;
  }
}

TEST(ElementwiseFn, EveryOpsLoopsAreItsOwnMath) {
  std::vector<double> xs = {-3.5, -1, -0.0, 0.0, 0.25, 1, 2.5, 60, -60, kInf, -kInf, kNaN};
  std::vector<double> ys = {2, -0.0, 0.5, -1.5, 0.0, kNaN, 3, -2, kInf, 1, -kInf, 0.75};
  // 67 elements: the awkward values, then a ragged run of ordinary ones.
  for (int i = 0; xs.size() < 67; ++i) {
    xs.push_back(std::sin(i) * 4);
    ys.push_back(std::cos(i * 0.7) * 3 + 0.1);
  }
  int count = 0;
  for (const OpDef* op : ops::all_ops()) {
    if (!op->elementwise) continue;
    ++count;
    SCOPED_TRACE(op->name);
    ASSERT_TRUE(op->elementwise->arity == 1 || op->elementwise->arity == 2);
    ASSERT_NE(op->elementwise->f32, nullptr);
    ASSERT_NE(op->elementwise->f64, nullptr);
    ASSERT_NE(op->elementwise->fast_f32, nullptr);
    check_op<float>(*op, xs, ys);
    check_op<double>(*op, xs, ys);
  }
  EXPECT_GE(count, 16);
}

}  // namespace
}  // namespace kiln
