// Test helpers shared by every op test:
//   check_fast_matches_reference  the fast kernel agrees with the reference kernel
//   check_gradients               tape gradients agree with central finite differences (float64)
//   expect_error                  an error of the right type whose message names what it must
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/tensor.h"

namespace kiln::testing {

// Uniform values in [low, high), reproducible from `seed`.
Tensor random_tensor(const Shape& shape, DType dtype = float32, uint64_t seed = 1, double low = -1,
                     double high = 1);

// Max |a - b| <= atol + rtol * |b| elementwise, same shape and dtype; reports the worst element.
::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol = 1e-5,
                                     double atol = 1e-6);

// Which kernel the last op of fn() must have used in check_fast_matches_reference.
enum class Expect {
  kFast,      // the fast kernel ran (the default: a test that meant it would fail otherwise)
  kDeclined,  // the fast kernel declined the case, or the op has none: the reference ran
  kView,      // the op returned a view of its input (reshape, rows)
};

// Runs fn() with the fast kernels, then with reference kernels only, and compares every output.
// Fails unless the first op fn() runs (the op under test: put wrappers after it) took the
// `expect` path in the first run.
void check_fast_matches_reference(const std::function<Tensor()>& fn, double rtol = 1e-5,
                                  double atol = 1e-6, Expect expect = Expect::kFast);

// f maps float64 inputs to a float64 tensor. Compares the tape gradient of sum(f(x) * R) (R a
// fixed random tensor, so every output element matters) with central differences of step eps.
// Then the same for the gradient itself (second order, through nested tapes): every op a
// gradient rule emits must have a rule of its own, or the tape throws and the check fails.
// second_order = false skips that part (for f whose gradient is not smooth at the inputs).
void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                     std::vector<Tensor> inputs, double eps = 1e-6, double tol = 1e-6,
                     bool second_order = true);

// fn() throws E whose what() contains every string in `parts`.
template <typename E>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception, none was thrown";
  } catch (const E& e) {
    std::string what = e.what();
    for (const std::string& p : parts) {
      EXPECT_NE(what.find(p), std::string::npos)
          << "message \"" << what << "\" lacks \"" << p << "\"";
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

}  // namespace kiln::testing
