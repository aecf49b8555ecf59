// Optimizers against hand-written float64 references of Keras' update rules, three steps each.
#include "kiln/nn/optimizers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

// Per-element reference state: w plus up to two slots.
struct Ref {
  std::vector<double> w, s0, s1;
};

const std::vector<double> kW0 = {0.5, -1.25, 2.0, 0.0, -0.75, 3.5, 1e-3};

std::vector<double> grad_at(int step) {  // a different gradient each step, some zeros
  std::vector<double> g;
  for (size_t i = 0; i < kW0.size(); ++i) {
    g.push_back(i == 3 ? 0.0 : std::sin(1.0 + i * 0.7 + step * 1.3) * (1 + step));
  }
  return g;
}

using RefStep = std::function<void(Ref&, const std::vector<double>&, int step)>;

// Runs opt for 3 steps on a float32 (or float64) variable and compares with `ref`.
void check_three_steps(Optimizer& opt, const RefStep& ref, DType dtype, double tol) {
  Variable var("w", cast(from_vector(kW0), dtype));
  Ref r{kW0, std::vector<double>(kW0.size()), std::vector<double>(kW0.size())};
  for (int step = 1; step <= 3; ++step) {
    std::vector<double> g = grad_at(step);
    uint64_t before = var.version();
    opt.apply_gradients({var}, {cast(from_vector(g), dtype)});
    EXPECT_GT(var.version(), before);
    ref(r, g, step);
    std::vector<double> got = var.value().to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], r.w[i], tol * (1 + std::abs(r.w[i]))) << "step " << step << " i " << i;
    }
  }
  EXPECT_EQ(opt.iterations(), 3);
}

TEST(SGD, PlainMatchesReference) {
  SGD opt(0.1);
  auto ref = [](Ref& r, const std::vector<double>& g, int) {
    for (size_t i = 0; i < g.size(); ++i) r.w[i] -= 0.1 * g[i];
  };
  check_three_steps(opt, ref, float32, 1e-6);
  EXPECT_TRUE(opt.variables().empty());  // no momentum, no slots
}

TEST(SGD, MomentumMatchesReference) {
  SGD opt(0.05, 0.9);
  auto ref = [](Ref& r, const std::vector<double>& g, int) {
    for (size_t i = 0; i < g.size(); ++i) {
      r.s0[i] = 0.9 * r.s0[i] - 0.05 * g[i];
      r.w[i] += r.s0[i];
    }
  };
  check_three_steps(opt, ref, float32, 1e-6);
  ASSERT_EQ(opt.variables().size(), 1u);
  EXPECT_EQ(opt.variables()[0].name(), "sgd/w/momentum");
  EXPECT_FALSE(opt.variables()[0].trainable());
}

TEST(SGD, NesterovMatchesReference) {
  SGD opt(0.05, 0.8, /*nesterov=*/true);
  auto ref = [](Ref& r, const std::vector<double>& g, int) {
    for (size_t i = 0; i < g.size(); ++i) {
      r.s0[i] = 0.8 * r.s0[i] - 0.05 * g[i];
      r.w[i] += 0.8 * r.s0[i] - 0.05 * g[i];
    }
  };
  check_three_steps(opt, ref, float32, 1e-6);
}

RefStep adam_ref(double lr, double b1, double b2, double eps, double wd) {
  return [=](Ref& r, const std::vector<double>& g, int t) {
    double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (size_t i = 0; i < g.size(); ++i) {
      r.w[i] -= r.w[i] * wd * lr;
      r.s0[i] += (g[i] - r.s0[i]) * (1 - b1);
      r.s1[i] += (g[i] * g[i] - r.s1[i]) * (1 - b2);
      r.w[i] -= alpha * r.s0[i] / (std::sqrt(r.s1[i]) + eps);
    }
  };
}

TEST(Adam, MatchesReferenceWithKerasDefaults) {
  Adam opt;  // lr 1e-3, 0.9, 0.999, 1e-7
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 1e-3);
  check_three_steps(opt, adam_ref(1e-3, 0.9, 0.999, 1e-7, 0), float32, 1e-6);
}

TEST(Adam, MatchesReferenceFloat64AndCustomBetas) {
  Adam opt(0.1, 0.5, 0.75, 1e-3);
  check_three_steps(opt, adam_ref(0.1, 0.5, 0.75, 1e-3, 0), float64, 1e-13);
  Variable probe("w", zeros({1}));  // slots are named and exposed per variable
  EXPECT_FALSE(opt.slot(probe, "m").defined());
}

TEST(AdamW, MatchesReferenceWithDecoupledDecay) {
  AdamW opt(0.01);
  EXPECT_DOUBLE_EQ(opt.weight_decay(), 0.004);
  check_three_steps(opt, adam_ref(0.01, 0.9, 0.999, 1e-7, 0.004), float32, 1e-6);
  AdamW strong(0.1, 0.5);
  check_three_steps(strong, adam_ref(0.1, 0.9, 0.999, 1e-7, 0.5), float64, 1e-13);
}

TEST(RMSprop, MatchesReference) {
  RMSprop opt(0.01);
  auto ref = [](Ref& r, const std::vector<double>& g, int) {
    for (size_t i = 0; i < g.size(); ++i) {
      r.s0[i] = 0.9 * r.s0[i] + 0.1 * g[i] * g[i];
      r.w[i] -= 0.01 * g[i] / std::sqrt(r.s0[i] + 1e-7);
    }
  };
  check_three_steps(opt, ref, float32, 1e-6);
}

TEST(RMSprop, MomentumMatchesReference) {
  RMSprop opt(0.01, 0.8, 0.5, 1e-4);
  auto ref = [](Ref& r, const std::vector<double>& g, int) {
    for (size_t i = 0; i < g.size(); ++i) {
      r.s0[i] = 0.8 * r.s0[i] + 0.2 * g[i] * g[i];
      r.s1[i] = 0.5 * r.s1[i] + 0.01 * g[i] / std::sqrt(r.s0[i] + 1e-4);
      r.w[i] -= r.s1[i];
    }
  };
  check_three_steps(opt, ref, float64, 1e-13);
  EXPECT_EQ(opt.variables().size(), 2u);
}

TEST(Optimizer, LargeVariableTakesParallelPathAndAgrees) {
  // Above the OpenMP threshold: the result must equal the element-by-element rule.
  const int64_t n = 200003;
  Tensor w0 = testing::random_tensor({n}, float32, 3);
  Tensor g = testing::random_tensor({n}, float32, 4);
  Variable var("big", w0.clone());
  Adam opt(0.01);
  opt.apply_gradients({var}, {g});
  std::vector<float> w = var.value().to_vector<float>(), wi = w0.to_vector<float>(),
                     gi = g.to_vector<float>();
  for (int64_t i = 0; i < n; i += 9973) {
    // Step 1 of Adam: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1.
    double m = 0.1 * gi[i], v = 0.001 * double(gi[i]) * gi[i];
    double want = wi[i] - 0.01 * std::sqrt(0.001) / 0.1 * m / (std::sqrt(v) + 1e-7);
    EXPECT_NEAR(w[i], want, 1e-5);
  }
}

// Multi-tensor updates (the default) against one op per variable: the same bits for every
// rule, over 8 variables of two dtypes (so several multi ops and a one-variable leftover),
// an undefined gradient, and a variable listed twice (updated twice, in order).
TEST(Optimizer, ForeachMatchesOneOpPerVariableBitForBit) {
  using Make = std::function<std::unique_ptr<Optimizer>()>;
  const std::vector<Make> makes = {
      [] { return std::make_unique<SGD>(0.1); },
      [] { return std::make_unique<SGD>(0.1, 0.9, true); },
      [] { return std::make_unique<Adam>(0.01); },
      [] { return std::make_unique<AdamW>(0.01, 0.01); },
      [] { return std::make_unique<RMSprop>(0.01); },
      [] { return std::make_unique<RMSprop>(0.01, 0.9, 0.5); },
  };
  const std::vector<Shape> shapes = {{3}, {17, 3}, {513}, {1}, {40, 500}, {7}, {2, 2}, {9}};
  for (size_t r = 0; r < makes.size(); ++r) {
    std::vector<Variable> vars[2];
    std::unique_ptr<Optimizer> opt[2] = {makes[r](), makes[r]()};
    opt[0]->set_foreach(false);
    EXPECT_TRUE(opt[1]->foreach ());
    for (int k = 0; k < 2; ++k) {
      for (size_t i = 0; i < shapes.size(); ++i) {
        const DType dt = i == 1 || i == 6 ? float64 : float32;
        vars[k].emplace_back("v" + std::to_string(i),
                             testing::random_tensor(shapes[i], dt, 20 + i));
      }
    }
    for (int step = 0; step < 3; ++step) {
      for (bool twice : {false, true}) {
        for (int k = 0; k < 2; ++k) {
          std::vector<Variable> v = vars[k];
          std::vector<Tensor> g;
          for (size_t i = 0; i < shapes.size(); ++i) {
            g.push_back(i == 5 ? Tensor()
                               : testing::random_tensor(shapes[i], vars[k][i].dtype(),
                                                        100 + 10 * step + i));
          }
          if (twice) {  // variable 2 again, with another gradient
            v.push_back(vars[k][2]);
            g.push_back(testing::random_tensor(shapes[2], float32, 999));
          }
          opt[k]->apply_gradients(v, g);
        }
      }
    }
    for (size_t i = 0; i < shapes.size(); ++i) {
      SCOPED_TRACE(opt[0]->name() + " variable " + std::to_string(i));
      EXPECT_TRUE(testing::all_close(vars[1][i].value(), vars[0][i].value(), 0, 0));
      for (const std::string& slot : opt[0]->slot_names()) {
        if (i == 5) continue;  // never updated: no slots
        EXPECT_TRUE(testing::all_close(opt[1]->slot(vars[1][i], slot).value(),
                                       opt[0]->slot(vars[0][i], slot).value(), 0, 0));
      }
    }
  }
}

TEST(Optimizer, SkipsUndefinedGradientsAndSharesSlotsByIdentity) {
  Variable a("a", ones({2})), b("b", ones({3}));
  Variable a_again = a;  // another handle to the same variable
  SGD opt(1.0, 0.5);
  opt.apply_gradients({a, b}, {full({2}, 1.0), Tensor()});
  EXPECT_EQ(b.value().to_vector<float>(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(a.value().to_vector<float>(), (std::vector<float>{0, 0}));
  opt.apply_gradients({a_again}, {full({2}, 1.0)});
  // The momentum slot is shared through identity: m = 0.5 * -1 - 1 = -1.5.
  EXPECT_EQ(a.value().to_vector<float>(), (std::vector<float>{-1.5f, -1.5f}));
  EXPECT_EQ(opt.variables().size(), 1u);
  EXPECT_EQ(opt.slot(a_again, "momentum").value().to_vector<float>(),
            (std::vector<float>{-1.5f, -1.5f}));
  EXPECT_EQ(opt.iterations(), 2);
}

TEST(Optimizer, LearningRateCanBeChanged) {
  Variable a("a", ones({1}));
  SGD opt(0.5);
  opt.set_learning_rate(0.25);
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.25);
  opt.apply_gradients({a}, {ones({1})});
  EXPECT_FLOAT_EQ(a.value().item<float>(), 0.75f);
  expect_error<ValueError>([&] { opt.set_learning_rate(-1); }, {"sgd", "learning_rate", "-1"});
}

TEST(Optimizer, ErrorsNameTheVariableAndChangeNothing) {
  Variable a("dense/kernel", ones({2, 3})), b("dense/bias", ones({3}));
  Adam opt;
  expect_error<ShapeError>(
      [&] {
        opt.apply_gradients({b, a}, {ones({3}), ones({3, 2})});
      },
      {"adam", "dense/kernel", "[3, 2]", "[2, 3]"});
  // The valid first variable was not updated either.
  EXPECT_EQ(b.value().to_vector<float>(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(opt.iterations(), 0);
  expect_error<ValueError>(
      [&] {
        opt.apply_gradients({a, b}, {ones({2, 3})});
      },
      {"2 variables", "1 gradients"});
  expect_error<DTypeError>([&] { opt.apply_gradients({b}, {ones({3}, float64)}); },
                           {"dense/bias", "float64", "float32"});
  Variable i("step", zeros({1}, int64));
  expect_error<DTypeError>([&] { opt.apply_gradients({i}, {zeros({1}, int64)}); },
                           {"step", "int64"});
  expect_error<ValueError>([&] { opt.apply_gradients({Variable()}, {Tensor()}); }, {"undefined"});
}

TEST(Optimizer, ConstructorsRejectBadHyperparameters) {
  expect_error<ValueError>([] { SGD(-0.1); }, {"sgd", "learning_rate"});
  expect_error<ValueError>([] { SGD(0.1, 1.5); }, {"sgd", "momentum", "1.5"});
  expect_error<ValueError>([] { Adam(0.1, 1.0); }, {"adam", "beta_1"});
  expect_error<ValueError>([] { Adam(0.1, 0.9, -0.1); }, {"adam", "beta_2"});
  expect_error<ValueError>([] { Adam(0.1, 0.9, 0.999, -1); }, {"adam", "epsilon"});
  expect_error<ValueError>([] { AdamW(0.1, -0.5); }, {"adamw", "weight_decay"});
  expect_error<ValueError>([] { RMSprop(0.1, 1.0); }, {"rmsprop", "rho"});
  expect_error<ValueError>([] { RMSprop(0.1, 0.9, 2.0); }, {"rmsprop", "momentum"});
}

}  // namespace
}  // namespace kiln
