// Variable, VariableStore (scopes, reuse, lookup, unique names) and initializers.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "kiln/nn/initializers.h"
#include "kiln/nn/variable.h"
#include "kiln/nn/variable_store.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

TEST(Variable, HoldsADeepCopyAndTrainableValuesRequireGrad) {
  Tensor init = from_vector<float>({1, 2, 3});
  Variable v("w", init, true);
  init.data<float>()[0] = 100;  // the variable owns its own copy
  EXPECT_EQ(v.name(), "w");
  EXPECT_TRUE(v.trainable());
  EXPECT_EQ(v.value().to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_TRUE(v.value().requires_grad());
  EXPECT_EQ(v.shape(), Shape({3}));
  EXPECT_EQ(v.dtype(), float32);
  Variable frozen("m", init, false);
  EXPECT_FALSE(frozen.value().requires_grad());
  EXPECT_FALSE(frozen.trainable());
}

TEST(Variable, AssignWritesInPlaceAndBumpsTheVersion) {
  Variable v("w", zeros({2}));
  Tensor earlier = v.value();
  const void* data = v.value().raw_data();
  EXPECT_EQ(v.version(), 0u);
  v.assign(from_vector<float>({4, 5}));
  EXPECT_EQ(v.version(), 1u);
  EXPECT_EQ(v.value().raw_data(), data);
  EXPECT_EQ(earlier.to_vector<float>(), (std::vector<float>{4, 5}));
  v.mark_modified();
  EXPECT_EQ(v.version(), 2u);
}

TEST(Variable, AssignOfAnotherShapeNamesTheVariableAndShapes) {
  Variable v("enc/kernel", zeros({2, 3}));
  expect_error<ShapeError>([&] { v.assign(zeros({3, 2})); }, {"enc/kernel", "[3, 2]", "[2, 3]"});
  expect_error<ShapeError>([&] { v.assign(zeros({2, 3}, float64)); }, {"enc/kernel", "float64"});
  EXPECT_EQ(v.version(), 0u);
}

TEST(Variable, HandlesShareOneStateAndCloneIsIndependent) {
  Variable v("w", ones({2}));
  Variable alias = v;
  EXPECT_EQ(alias, v);
  alias.assign(full({2}, 3.0));
  EXPECT_EQ(v.value().to_vector<float>(), (std::vector<float>{3, 3}));
  Variable c = v.clone("w_copy");
  EXPECT_NE(c, v);
  EXPECT_EQ(c.name(), "w_copy");
  EXPECT_NE(c.value().raw_data(), v.value().raw_data());
  c.assign(zeros({2}));
  EXPECT_EQ(v.value().to_vector<float>(), (std::vector<float>{3, 3}));
  EXPECT_TRUE(c.value().requires_grad());
}

TEST(Variable, UndefinedVariableIsAStateError) {
  Variable v;
  EXPECT_FALSE(v.defined());
  expect_error<StateError>([&] { (void)v.value(); }, {"undefined"});
  expect_error<ValueError>([] { Variable("x", Tensor()); }, {"'x'", "undefined"});
}

TEST(VariableStore, CreatesListsAndLooksUp) {
  VariableStore store(1);
  Variable a = store.get_or_create("a", {2, 3});
  Variable b = store.get_or_create("b", {4}, float32, initializers::zeros(), false);
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(store.count_params(), 10);
  EXPECT_TRUE(store.contains("a"));
  EXPECT_FALSE(store.contains("c"));
  EXPECT_EQ(store.get("b"), b);
  EXPECT_FALSE(store.find("c").has_value());
  ASSERT_EQ(store.variables().size(), 2u);
  EXPECT_EQ(store.variables()[0], a);
  ASSERT_EQ(store.trainable_variables().size(), 1u);
  EXPECT_EQ(store.trainable_variables()[0], a);
  expect_error<ValueError>([&] { store.get("missing/w"); }, {"missing/w"});
  store.clear();
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(a.shape(), Shape({2, 3}));  // handles outlive the store's entries
}

TEST(VariableStore, CreatingAnExistingNameWithoutReuseIsAValueError) {
  VariableStore store(1);
  VariableStore::Scope s(store, "encoder");
  store.get_or_create("w", {2});
  expect_error<ValueError>([&] { store.get_or_create("w", {2}); }, {"encoder/w", "reuse"});
}

TEST(VariableStore, NestedScopesNameAndReuseScopesReturnTheSameVariable) {
  VariableStore store(1);
  Variable w;
  {
    VariableStore::Scope outer(store, "encoder", /*reuse=*/true);
    {
      VariableStore::Scope inner(store, "block");  // inherits reuse
      EXPECT_EQ(store.scope_prefix(), "encoder/block/");
      EXPECT_TRUE(store.reuse());
      w = store.get_or_create("w", {3, 3});
      EXPECT_EQ(store.get_or_create("w", {3, 3}), w);
    }
    EXPECT_EQ(store.scope_prefix(), "encoder/");
  }
  EXPECT_EQ(store.scope_prefix(), "");
  EXPECT_FALSE(store.reuse());
  EXPECT_EQ(w.name(), "encoder/block/w");
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.variables_under("encoder/").size(), 1u);
  EXPECT_EQ(store.variables_under("decoder/").size(), 0u);
}

TEST(VariableStore, ReuseWithAnotherShapeNamesTheVariableAndBothShapes) {
  VariableStore store(1);
  VariableStore::Scope s(store, "enc", true);
  store.get_or_create("kernel", {4, 8});
  expect_error<ShapeError>(
      [&] {
        store.get_or_create("kernel", {4, 9});
      },
      {"enc/kernel", "[4, 8]", "[4, 9]"});
}

TEST(VariableStore, ScopesArePerStoreAndPerThread) {
  VariableStore a(1), b(1);
  VariableStore::Scope s(a, "only_a");
  EXPECT_EQ(a.scope_prefix(), "only_a/");
  EXPECT_EQ(b.scope_prefix(), "");
  std::string other_thread;
  std::thread t([&] { other_thread = a.scope_prefix(); });
  t.join();
  EXPECT_EQ(other_thread, "");
  expect_error<ValueError>([&] { VariableStore::Scope bad(a, "x/"); }, {"'x/'"});
  expect_error<ValueError>([&] { VariableStore::Scope bad(a, ""); }, {"scope name"});
}

TEST(VariableStore, UniqueNameSkipsTakenNamesAndScopes) {
  VariableStore store(1);
  EXPECT_EQ(store.unique_name("dense"), "dense");
  store.get_or_create("dense/kernel", {1});
  store.get_or_create("dense_1", {1});
  store.get_or_create("dense_22/bias", {1});
  EXPECT_EQ(store.unique_name("dense"), "dense_2");
  EXPECT_EQ(store.unique_name("den"), "den");  // a prefix of a name is not a scope
}

TEST(VariableStore, AddRegistersAnExistingVariable) {
  VariableStore store(1);
  Variable v("loaded/w", ones({2}));
  store.add(v);
  store.add(v);  // the same variable again is fine
  EXPECT_EQ(store.get("loaded/w"), v);
  expect_error<ValueError>([&] { store.add(Variable("loaded/w", ones({2}))); }, {"loaded/w"});
}

TEST(Initializers, FansFollowKeras) {
  EXPECT_EQ(compute_fans(Shape{3, 5}), std::make_pair(3.0, 5.0));
  EXPECT_EQ(compute_fans(Shape{3, 3, 4, 8}), std::make_pair(36.0, 72.0));  // HWIO
  EXPECT_EQ(compute_fans(Shape{7}), std::make_pair(7.0, 7.0));
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

double stddev(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / v.size());
}

TEST(Initializers, GlorotUniformStaysWithinTheKerasLimit) {
  Tensor w = initializers::glorot_uniform()({100, 50}, float32, 3);
  const double limit = std::sqrt(6.0 / 150);
  EXPECT_LE(max_abs(w), limit);
  EXPECT_GT(max_abs(w), 0.9 * limit);
  EXPECT_NEAR(stddev(w), limit / std::sqrt(3.0), 0.01);
  Tensor k = initializers::glorot_uniform()({3, 3, 4, 8}, float64, 3);
  EXPECT_LE(max_abs(k), std::sqrt(6.0 / (36 + 72)));
  EXPECT_EQ(k.dtype(), float64);
}

TEST(Initializers, HeNormalIsTruncatedWithKerasStddev) {
  Tensor w = initializers::he_normal()({200, 100}, float32, 5);
  const double sd = std::sqrt(2.0 / 200);
  EXPECT_NEAR(stddev(w), sd, 0.05 * sd);
  EXPECT_LE(max_abs(w), 2 * sd / 0.87962566103423978 + 1e-6);
}

TEST(Initializers, ConstantsAndRandomDistributions) {
  EXPECT_EQ(initializers::zeros()({2}, float32, 0).to_vector<float>(), (std::vector<float>{0, 0}));
  EXPECT_EQ(initializers::ones()({2}, int32, 0).to_vector<int32_t>(), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(initializers::constant(2.5)({1}, float64, 0).item<double>(), 2.5);
  Tensor u = initializers::random_uniform(2, 3)({1000}, float32, 9);
  for (float x : u.to_vector<float>()) {
    EXPECT_GE(x, 2);
    EXPECT_LT(x, 3);
  }
  Tensor n = initializers::random_normal(1, 0.5)({4000}, float64, 9);
  EXPECT_NEAR(stddev(n), 0.5, 0.03);
  EXPECT_EQ(initializers::get("he_normal").name(), "he_normal");
}

TEST(Initializers, BadArgumentsAreErrors) {
  expect_error<ValueError>([] { initializers::random_uniform(1, 1); }, {"low < high"});
  expect_error<ValueError>([] { initializers::random_normal(0, -1); }, {"stddev"});
  expect_error<ValueError>([] { initializers::get("glorot_bogus"); },
                           {"glorot_bogus", "glorot_uniform", "he_normal", "zeros"});
  expect_error<DTypeError>(
      [] {
        initializers::glorot_uniform()({2, 2}, int32, 0);
      },
      {"glorot_uniform", "int32"});
  expect_error<StateError>([] { Initializer()({1}, float32, 0); }, {"undefined"});
}

TEST(Initializers, ValuesDependOnlyOnTheSeedAndTheName) {
  VariableStore a(42), b(42), c(43);
  Tensor wa = a.get_or_create("dense/kernel", {4, 4}).value();
  a.get_or_create("other", {9});
  b.get_or_create("first_in_b", {9});  // creation order does not matter
  Tensor wb = b.get_or_create("dense/kernel", {4, 4}).value();
  Tensor wc = c.get_or_create("dense/kernel", {4, 4}).value();
  Tensor wd = a.get_or_create("dense_1/kernel", {4, 4}).value();
  EXPECT_EQ(wa.to_vector<float>(), wb.to_vector<float>());
  EXPECT_NE(wa.to_vector<float>(), wc.to_vector<float>());
  EXPECT_NE(wa.to_vector<float>(), wd.to_vector<float>());
}

TEST(Initializers, StoresWithoutASeedFollowTheGlobalSeed) {
  uint64_t saved = global_seed();
  set_global_seed(1234);
  VariableStore a, b(1234);
  EXPECT_EQ(a.seed(), 1234u);
  EXPECT_EQ(a.get_or_create("w", {5}).value().to_vector<float>(),
            b.get_or_create("w", {5}).value().to_vector<float>());
  set_global_seed(saved);
}

}  // namespace
}  // namespace kiln
