// kiln::function: one trace per signature, hits that skip the callable, retraces explained,
// budgets and policies, bounded cache, exception safety, and layers created inside a trace.
#include "kiln/function.h"

#include "kiln/cache_report.h"

#include <gtest/gtest.h>

#include "graph/signature.h"
#include "kiln/autograd.h"
#include "kiln/dtype_policy.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

TEST(Function, TracesOncePerSignatureAndHitsSkipTheCallable) {
  int runs = 0;
  Function f = function([&](const Tensor& x) {
    ++runs;
    return relu(x * 2.0) + 1.0;
  });
  Tensor a = random_tensor({4, 3}, float32, 1), b = random_tensor({4, 3}, float32, 2);
  EXPECT_TRUE(all_close(f(a), relu(a * 2.0) + 1.0));
  EXPECT_TRUE(all_close(f(b), relu(b * 2.0) + 1.0));
  EXPECT_TRUE(all_close(f(a), relu(a * 2.0) + 1.0));
  EXPECT_EQ(runs, 1);
  FunctionCacheInfo info = f.cache_info();
  EXPECT_EQ(info.traces, 1u);
  EXPECT_EQ(info.hits, 2u);
  EXPECT_EQ(info.misses, 1u);
  ASSERT_EQ(info.signatures.size(), 1u);
  EXPECT_EQ(info.signatures[0].to_string(), "(float32 [4, 3], training=false)");
  EXPECT_EQ(info.last_retrace_reason, "");
}

TEST(Function, RetracesAreExplainedAgainstTheNearestSignature) {
  Function f([](const std::vector<Tensor>& a,
                bool training) -> std::vector<Tensor> { return {training ? a[0] * 2.0 : a[0]}; },
             {.name = "step"});
  f({zeros({64, 784})});
  f({zeros({32, 784})});
  EXPECT_EQ(f.cache_info().last_retrace_reason, "arg 0: shape [64, 784] -> [32, 784]");
  f({zeros({32, 784})}, /*training=*/true);
  EXPECT_EQ(f.cache_info().last_retrace_reason, "training: false -> true");
  f({zeros({32, 784}, float64)}, true);
  EXPECT_EQ(f.cache_info().last_retrace_reason, "arg 0: dtype float32 -> float64");
  EXPECT_TRUE(all_close(f(ones({2}), true), full({2}, 2.0)));
  EXPECT_EQ(f.cache_info().traces, 5u);
}

TEST(Function, InputSignatureWithUnknownDimsTracesOnce) {
  int runs = 0;
  Function f = function(
      [&](const Tensor& x) {
        ++runs;
        return sum(x * x, {1});
      },
      {.input_signature = std::vector<TensorSpec>{{{kUnknownDim, 3}, float32}}});
  for (int64_t n : {4, 7, 1, 300}) {
    Tensor x = random_tensor({n, 3}, float32, n);
    EXPECT_TRUE(all_close(f(x), sum(x * x, {1})));
  }
  EXPECT_EQ(f.cache_info().traces, 1u);
  EXPECT_EQ(runs, 2);  // the trace, and one probe at another size proving the graph general
  EXPECT_EQ(f.cache_info().signatures[0].to_string(), "(float32 [None, 3], training=false)");
  expect_error<ShapeError>(
      [&] {
        f(zeros({4, 5}));
      },
      {"does not fit its input signature", "[4, 5]", "[None, 3]"});
}

TEST(Function, AGraphThatBakesAnUnknownSizeIsRefusedForTheInputSignature) {
  // slice attributes hold the size: the probe at another size yields another program.
  Function f = function([](const Tensor& x) { return slice(x, {0}, {x.dim(0) - 1}); },
                        {.input_signature = std::vector<TensorSpec>{{{kUnknownDim}, float32}}});
  expect_error<ShapeError>([&] { f(zeros({5})); }, {"depends on the sizes", "[None]"});
}

TEST(Function, RetraceBudgetPolicies) {
  auto body = [](const Tensor& x) { return x + 1.0; };
  Function strict =
      function(body, {.name = "strict", .retrace_budget = 1, .policy = RetracePolicy::kThrow});
  strict(zeros({1}));
  strict(zeros({2}));
  expect_error<StateError>([&] { strict(zeros({3})); },
                           {"strict", "budget of 1", "arg 0: shape [2] -> [3]", "[None]"});

  Function relaxed = function(body, {.retrace_budget = 1, .policy = RetracePolicy::kRelax});
  for (int64_t n : {1, 2, 3, 4, 5, 6}) relaxed(zeros({n}));
  EXPECT_EQ(relaxed.cache_info().traces, 3u);  // [1], [2], then [None] serves 3..6
  EXPECT_EQ(relaxed.cache_info().signatures[0].to_string(), "(float32 [None], training=false)");

  Function warn = function(body, {.name = "chatty", .retrace_budget = 1});
  for (int64_t n : {1, 2, 3, 4}) warn(zeros({n}));
  FunctionCacheInfo info = warn.cache_info();
  EXPECT_EQ(info.traces, 4u);
  ASSERT_EQ(info.warnings.size(), 1u);  // once
  EXPECT_NE(info.warnings[0].find("'chatty' traced 3 times"), std::string::npos)
      << info.warnings[0];
  EXPECT_NE(info.warnings[0].find("[None]"), std::string::npos) << info.warnings[0];
}

TEST(Function, CacheIsAnLruBoundedByEntries) {
  Function f = function([](const Tensor& x) { return x * 3.0; }, {.max_entries = 2});
  f(zeros({1}));
  f(zeros({2}));
  f(zeros({1}));  // [1] most recent
  f(zeros({3}));  // evicts [2]
  FunctionCacheInfo info = f.cache_info();
  EXPECT_EQ(info.evictions, 1u);
  ASSERT_EQ(info.signatures.size(), 2u);
  EXPECT_EQ(info.signatures[0].to_string(), "(float32 [3], training=false)");
  EXPECT_EQ(info.signatures[1].to_string(), "(float32 [1], training=false)");
  f(zeros({2}));
  EXPECT_EQ(f.cache_info().last_retrace_reason, "evicted from the cache earlier");
}

// exp(x) is an intermediate (512 KiB for 128 Ki floats) in the plan's arena.
Tensor exp_gram(const Tensor& x) { return matmul(exp(x), x, false, true); }

// Plans' arenas count against max_bytes: a 768 KiB bound holds one plan with a 512 KiB
// intermediate but not two; the one just used is never evicted.
TEST(Function, CacheIsBoundedByBytesOfArenas) {
  constexpr size_t kBound = size_t{768} << 10;
  Function f = function(exp_gram, {.max_bytes = kBound});
  f(zeros({256, 512}));
  FunctionCacheInfo one = f.cache_info();
  ASSERT_GT(one.arena_bytes, 0u);
  ASSERT_LE(one.arena_bytes, kBound);
  f(zeros({512, 256}));  // another signature, as big: the first is evicted
  FunctionCacheInfo two = f.cache_info();
  EXPECT_EQ(two.evictions, 1u);
  ASSERT_EQ(two.signatures.size(), 1u);
  EXPECT_EQ(two.signatures[0].to_string(), "(float32 [512, 256], training=false)");
  EXPECT_LE(two.arena_bytes, kBound);
  // Small signatures fit beside each other.
  f(zeros({2, 2}));
  EXPECT_EQ(f.cache_info().signatures.size(), 2u);
}

// Every Function's plans appear in kiln::cache_report()'s arenas while it lives.
TEST(Function, ArenasAreInTheCacheReport) {
  auto arena_of = [](const std::string& owner) {
    for (const ArenaInfo& a : cache_report().arenas) {
      if (a.owner == owner) return a;
    }
    return ArenaInfo{};
  };
  {
    Function f = function(exp_gram, {.name = "arena_report_test"});
    f(zeros({64, 64}));
    ArenaInfo a = arena_of("function 'arena_report_test'");
    EXPECT_EQ(a.bytes, f.cache_info().arena_bytes);
    EXPECT_GT(a.bytes, 0u);
    EXPECT_EQ(a.buffers, 1u);
  }
  EXPECT_EQ(arena_of("function 'arena_report_test'").owner, "");
}

TEST(Function, VariablesAreCapturedByReference) {
  Variable v("function_test/v", from_vector<float>({1, 2}), true);
  Function f = function([&](const Tensor& x) { return x * v.value(); });
  EXPECT_EQ(f(ones({2})).to_vector<float>(), (std::vector<float>{1, 2}));
  v.assign(from_vector<float>({5, 6}));
  EXPECT_EQ(f(ones({2})).to_vector<float>(), (std::vector<float>{5, 6}));
  EXPECT_EQ(f.cache_info().traces, 1u);
  EXPECT_NE(f.graph_text({ones({2})}).find("variable"), std::string::npos);
}

TEST(Function, GraphTextAndDot) {
  Function f = function([](const Tensor& x, const Tensor& w) { return relu(matmul(x, w)); });
  std::vector<Tensor> args = {zeros({4, 3}), zeros({3, 5})};
  std::string text = f.graph_text(args);
  EXPECT_NE(text.find("%0 = input 0 : [4, 3] float32"), std::string::npos) << text;
  // Optimized: matmul and relu are one fused op (attrs: no transposes, no bias, relu).
  EXPECT_NE(text.find("%2 = fused_matmul(%0, %1) {transpose_a=false, transpose_b=false, "
                      "bias=false, activation=relu, approximate=false, alpha=0} : [4, 5] float32"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("return %2"), std::string::npos) << text;
  std::string traced = f.graph_text(args, false, /*optimized=*/false);
  EXPECT_NE(traced.find("= matmul(%0, %1) {transpose_a=false, transpose_b=false} : [4, 5] float32"),
            std::string::npos)
      << traced;
  EXPECT_NE(traced.find("= relu(%2)"), std::string::npos) << traced;
  EXPECT_NE(traced.find("return %3"), std::string::npos) << traced;
  std::string dot = f.graph_dot(args, false, /*optimized=*/false);
  EXPECT_EQ(dot.rfind("digraph \"function\" {", 0), 0u) << dot;
  EXPECT_NE(dot.find("label=\"matmul\""), std::string::npos) << dot;
}

TEST(Function, ATraceThatThrowsLeavesCacheAndVariablesAsTheyWere) {
  VariableStore& store = VariableStore::default_store();
  Function f(
      [](const std::vector<Tensor>& a, bool training) -> std::vector<Tensor> {
        Dense d(4);
        Tensor y = d(a[0]);
        if (training) {
          Dense extra(2);
          extra(y);
          throw ValueError("boom while tracing");
        }
        return {y};
      },
      {.name = "fails_when_training"});
  f({zeros({2, 3})});
  const size_t vars = store.size();
  const FunctionCacheInfo before = f.cache_info();
  expect_error<ValueError>([&] { f({zeros({2, 3})}, true); }, {"boom while tracing"});
  EXPECT_EQ(store.size(), vars);
  EXPECT_TRUE(store.contains("fails_when_training/dense/kernel"));  // from the good trace
  EXPECT_FALSE(store.contains("fails_when_training/dense_1/kernel"));
  EXPECT_EQ(f.cache_info().signatures.size(), before.signatures.size());
  EXPECT_EQ(f.cache_info().traces, before.traces);
  // A layer made inside the function must see the shapes its variables were made for.
  expect_error<ShapeError>(
      [&] {
        f({zeros({2, 5})});
      },
      {"fails_when_training/dense/kernel", "[3, 4]", "[5, 4]"});
}

TEST(Function, LayersCreatedInsideAreCreatedOnceAndTrained) {
  VariableStore& store = VariableStore::default_store();
  const size_t before = store.size();
  Function f = function(
      [](const Tensor& x) {
        Dense a(8, "relu");
        Dense b(3);
        return b(a(x));
      },
      {.name = "mlp_inside"});
  Tensor x4 = random_tensor({4, 5}, float32, 1), x9 = random_tensor({9, 5}, float32, 2);
  f(x4);
  const size_t after_first = store.size();
  EXPECT_EQ(after_first - before, 4u);  // two kernels, two biases
  ASSERT_TRUE(store.contains("mlp_inside/dense/kernel"));
  ASSERT_TRUE(store.contains("mlp_inside/dense_1/bias"));
  for (int i = 0; i < 1000; ++i) f(i % 2 ? x4 : x9);
  f(random_tensor({1, 5}, float32, 3));
  EXPECT_EQ(store.size(), after_first);
  EXPECT_EQ(f.cache_info().traces, 3u);
  EXPECT_EQ(f.cache_info().variables, 4u);

  // Training through the function updates those same variables.
  std::vector<Tensor> w;
  for (const char* n : {"mlp_inside/dense/kernel", "mlp_inside/dense/bias",
                        "mlp_inside/dense_1/kernel", "mlp_inside/dense_1/bias"}) {
    w.push_back(store.get(n).value());
  }
  Tensor y = random_tensor({4, 3}, float32, 4);
  float first_loss = 0, last_loss = 0;
  for (int step = 0; step < 50; ++step) {
    GradientTape tape;
    Tensor loss = mean(square(f(x4) - y));
    std::vector<Tensor> g = tape.gradient(loss, w);
    for (size_t k = 0; k < w.size(); ++k) {
      ASSERT_TRUE(g[k].defined()) << k;
      w[k].copy_from(w[k] - g[k] * 0.1);
    }
    (step == 0 ? first_loss : last_loss) = loss.item<float>();
  }
  EXPECT_LT(last_loss, first_loss * 0.7f);
  EXPECT_EQ(store.size(), after_first);
}

TEST(Function, TapeInsideATracedFunction) {
  Tensor w = from_vector<float>({1, 2, 3});
  Function grad_of = function([&](const Tensor& x) {
    GradientTape tape;
    tape.watch(x);
    Tensor y = sum(x * x * w);
    return tape.gradient(y, {x})[0];
  });
  Tensor x = from_vector<float>({1, 1, 2});
  EXPECT_TRUE(all_close(grad_of(x), x * w * 2.0));
  EXPECT_TRUE(all_close(grad_of(x * 3.0), x * w * 6.0));
  EXPECT_EQ(grad_of.cache_info().traces, 1u);
}

TEST(Function, CallingAFunctionWhileTracingInlinesIt) {
  Function inner = function([](const Tensor& x) { return x * 2.0; });
  Function outer = function([&](const Tensor& x) { return inner(x) + 1.0; });
  EXPECT_EQ(outer(from_vector<float>({1})).item<float>(), 3.f);
  EXPECT_EQ(inner.cache_info().traces, 0u);
  EXPECT_NE(outer.graph_text({zeros({1})}, false, /*optimized=*/false).find("mul"),
            std::string::npos);
}

TEST(Function, BadArgumentsAndOptions) {
  expect_error<ValueError>([] { Function f(Function::Callable{}); }, {"callable is empty"});
  expect_error<ValueError>([] { function([](const Tensor& x) { return x; }, {.max_entries = 0}); },
                           {"max_entries"});
  expect_error<ValueError>([] { function([](const Tensor& x) { return x; }, {.name = "a/b"}); },
                           {"'a/b'", "no '/'"});
  Function f = function([](const Tensor& x) { return x; });
  expect_error<ValueError>([&] { f(Tensor()); }, {"argument 0", "undefined"});
  Function g = function([](const Tensor& x) { return x.item<float>() > 0 ? x : -x; });
  expect_error<StateError>([&] { g(ones({1})); }, {"symbolic"});
}

// The dtype policy is part of a signature: shown when not float32, diffed, and a function traced
// under one policy retraces under the other, then hits under each.
TEST(Function, DtypePolicyIsPartOfTheSignature) {
  Signature a = graph::signature_of({ones({2, 3})}, false), b = a;
  b.dtype_policy = DTypePolicy::kMixedBfloat16;
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(a.accepts(b));
  EXPECT_EQ(a.to_string(), "(float32 [2, 3], training=false)");
  EXPECT_EQ(b.to_string(), "(float32 [2, 3], training=false, dtype_policy=mixed_bfloat16)");
  EXPECT_EQ(graph::signature_diff(a, b),
            std::vector<std::string>{"dtype_policy: float32 -> mixed_bfloat16"});
  if (!bf16_unsupported_reason().empty()) GTEST_SKIP() << bf16_unsupported_reason();
  Function f = function([](const Tensor& x) { return matmul(x, x, false, true); });
  Tensor x = random_tensor({4, 3}, float32, 1);
  Tensor y32 = f(x);
  set_dtype_policy("mixed_bfloat16");
  Tensor y16 = f(x);
  f(x);
  set_dtype_policy("float32");
  f(x);
  FunctionCacheInfo info = f.cache_info();
  EXPECT_EQ(info.traces, 2u);
  EXPECT_EQ(info.hits, 2u);
  EXPECT_EQ(info.last_retrace_reason, "dtype_policy: float32 -> mixed_bfloat16");
  EXPECT_TRUE(all_close(y16, y32, 1e-2, 1e-2));
  EXPECT_FALSE(all_close(y16, y32, 0, 1e-7));  // computed in bf16
}

}  // namespace
}  // namespace kiln
