// The mixed_bfloat16 dtype policy (src/ops/dtype_policy.cc) and its effect on the kernels that
// read it (matmul, conv2d and its two gradient ops, fused_matmul, fused_conv2d): the policy API
// and its refusals; each fast kernel under bf16 against the float32 reference kernel run on
// inputs rounded to bf16 (what the kernel computes, up to summation order) and against the
// plain float32 reference within bf16 tolerance, on awkward shapes; gradients under bf16
// against the float32 rules.
#include "kiln/dtype_policy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "kernels/onednn/bf16_input.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/dtype_policy.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// Sets the policy for a scope and restores float32 after.
struct PolicyScope {
  explicit PolicyScope(const char* name) { set_dtype_policy(name); }
  ~PolicyScope() { set_dtype_policy("float32"); }
};

bool have_bf16() { return bf16_unsupported_reason().empty(); }
#define REQUIRE_BF16() \
  if (!have_bf16()) GTEST_SKIP() << "no bf16 here: " << bf16_unsupported_reason()

// `t` (float32) rounded to the nearest bf16, ties to even: what oneDNN's reorder produces.
Tensor round_bf16(const Tensor& t) {
  std::vector<float> v = t.to_vector<float>();
  for (float& f : v) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
  }
  return from_vector<float>(v, t.shape());
}

// Runs fn on the reference kernels.
Tensor reference(const std::function<Tensor()>& fn) {
  ForceReferenceScope scope;
  return fn();
}

// fn(inputs) under bf16 on the fast kernels vs the float32 reference on rounded inputs (tight)
// and on the given inputs (bf16 tolerance: 8 mantissa bits per input, errors grow with the
// reduction length), and proof the bf16 path ran: the result differs from float32's.
void check_bf16(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                const std::vector<Tensor>& in, double inner) {
  std::vector<Tensor> rounded;
  for (const Tensor& t : in) rounded.push_back(round_bf16(t));
  const Tensor exact = reference([&] { return fn(rounded); });
  const Tensor f32 = reference([&] { return fn(in); });
  Tensor low;
  {
    PolicyScope bf16("mixed_bfloat16");
    low = fn(in);
  }
  EXPECT_TRUE(all_close(low, exact, 1e-5, 2e-6 * inner)) << "vs reference on bf16-rounded inputs";
  EXPECT_TRUE(all_close(low, f32, 1e-2, 8e-3 * std::sqrt(inner)))
      << "vs float32 within bf16 tolerance";
  EXPECT_FALSE(all_close(low, f32, 0, 1e-7)) << "the bf16 kernel did not run";
  // And float32 again afterwards: the policy's kernels are keyed apart.
  EXPECT_TRUE(all_close(fn(in), f32, 1e-5, 1e-6 * inner));
}

// ---- the conversion the bf16 kernels read through ---------------------------------------------

TEST(DTypePolicy, Bf16RoundingMatchesTheReferenceLoopAcrossThreadsAndTails) {
  // Ties both ways, signs, zeros, infinities, NaN, the largest floats, on 100003 elements (many
  // work items and a ragged tail); the vectorized path flushes denormals, checked apart.
  std::vector<float> from;
  const float specials[] = {
      0.0f,       -0.0f,    1.0f,      -1.5f, 3.0e38f,
      -3.4e38f,   INFINITY, -INFINITY, NAN,   1.00390625f /* tie: even down */,
      1.01171875f /* tie: up */};
  for (float v : specials) from.push_back(v);
  Tensor r =
      random_tensor({100003 - static_cast<int64_t>(std::size(specials))}, float32, 9, -1e3, 1e3);
  for (float v : r.to_vector<float>()) from.push_back(v);
  std::vector<uint16_t> fast(from.size()), loop(from.size());
  onednn::round_to_bf16(from.data(), fast.data(), static_cast<int64_t>(from.size()));
  onednn::round_to_bf16_loop(from.data(), loop.data(), static_cast<int64_t>(from.size()));
  for (size_t i = 0; i < from.size(); ++i) {
    ASSERT_EQ(fast[i], loop[i]) << "element " << i << " = " << from[i];
  }
  EXPECT_EQ(loop[9], 0x3f80);           // 1 + 2^-8: the tie rounds to even (1.0)
  EXPECT_EQ(loop[10], 0x3f82);          // 1 + 3 * 2^-8: the tie rounds up to even
  EXPECT_EQ(loop[8] & 0x7fc0, 0x7fc0);  // NaN stays a quiet NaN
  // Denormals: 0 (or -0) from the vectorized path, as oneDNN's reorders; kept by the loop.
  const float tiny[16] = {1e-39f, -1e-39f, 1e-40f, 5e-39f, 1e-39f, 1e-39f, 1e-39f, 1e-39f,
                          1e-39f, 1e-39f,  1e-39f, 1e-39f, 1e-39f, 1e-39f, 1e-39f, 1e-39f};
  uint16_t out[16];
  onednn::round_to_bf16(tiny, out, 16);
  if (__builtin_cpu_supports("avx512bf16")) {
    for (uint16_t v : out) EXPECT_EQ(v & 0x7fff, 0);
  }
}

// ---- the policy ------------------------------------------------------------------------------

TEST(DTypePolicy, DefaultsToFloat32AndSwitchesByKerasName) {
  EXPECT_STREQ(dtype_policy(), "float32");
  EXPECT_EQ(dtype_policy_kind(), DTypePolicy::kFloat32);
  REQUIRE_BF16();
  set_dtype_policy("mixed_bfloat16");
  EXPECT_STREQ(dtype_policy(), "mixed_bfloat16");
  EXPECT_TRUE(detail::mixed_bf16());
  set_dtype_policy(DTypePolicy::kFloat32);
  EXPECT_STREQ(dtype_policy(), "float32");
  EXPECT_FALSE(detail::mixed_bf16());
}

TEST(DTypePolicy, UnknownNameIsRefusedNamingTheAcceptedOnes) {
  expect_error<ValueError>(
      [] { set_dtype_policy("mixed_float16"); },
      {"set_dtype_policy", "'mixed_float16'", "\"float32\"", "\"mixed_bfloat16\""});
  EXPECT_STREQ(dtype_policy(), "float32");
}

TEST(DTypePolicy, RefusedWithoutBf16NamingTheMissingFeature) {
  detail::set_bf16_unsupported_for_testing(
      "this CPU lacks AVX512_BF16 and AMX-BF16 (oneDNN's ISA here is avx2)");
  expect_error<ValueError>([] { set_dtype_policy("mixed_bfloat16"); },
                           {"set_dtype_policy(\"mixed_bfloat16\")", "lacks AVX512_BF16", "AMX-BF16",
                            "avx2", "use \"float32\""});
  EXPECT_STREQ(dtype_policy(), "float32");  // unchanged
  set_dtype_policy("float32");              // float32 is always allowed
  detail::set_bf16_unsupported_for_testing("");
}

// The real detection, in a child process whose oneDNN is capped below bf16 (as on a CPU without
// it): DNNL_MAX_CPU_ISA is read once per process, so it must be set before oneDNN starts.
TEST(DTypePolicy, RefusedWhenOneDnnIsCappedBelowBf16) {
  if (std::getenv("KILN_DTYPE_POLICY_CHILD")) {
    const std::string why = bf16_unsupported_reason();
    ASSERT_FALSE(why.empty());
    expect_error<ValueError>([] { set_dtype_policy("mixed_bfloat16"); },
                             {"mixed_bfloat16", "AVX512_BF16", "avx512_core"});
    return;
  }
  REQUIRE_BF16();  // on a CPU without bf16 the first case already is the real one
  const std::string cmd =
      "DNNL_MAX_CPU_ISA=AVX512_CORE KILN_DTYPE_POLICY_CHILD=1 " +
      std::filesystem::read_symlink("/proc/self/exe").string() +
      " --gtest_filter=DTypePolicy.RefusedWhenOneDnnIsCappedBelowBf16 > /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(DTypePolicy, ReasonIsEmptyOrNamesTheFeature) {
  const std::string why = bf16_unsupported_reason();
  if (!why.empty()) EXPECT_NE(why.find("AVX512_BF16"), std::string::npos) << why;
}

// ---- kernels under mixed_bfloat16 ---------------------------------------------------------------

TEST(DTypePolicy, MatmulInBf16) {
  REQUIRE_BF16();
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  const Case cases[] = {
      {{1, 1}, {1, 1}, false, false},       {{7, 13}, {13, 5}, false, false},
      {{13, 7}, {13, 5}, true, false},      {{7, 13}, {5, 13}, false, true},
      {{13, 7}, {5, 13}, true, true},       {{2, 1, 5, 17}, {3, 17, 4}, false, false},
      {{64, 784}, {784, 33}, false, false}, {{3, 300}, {300, 1}, false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(to_string(c.a) + " x " + to_string(c.b));
    const double inner = c.ta ? c.a[c.a.rank() - 2] : c.a[c.a.rank() - 1];
    check_bf16([&](const std::vector<Tensor>& v) { return matmul(v[0], v[1], c.ta, c.tb); },
               {random_tensor(c.a, float32, 1), random_tensor(c.b, float32, 2)}, inner);
  }
}

Conv2DOptions opts(int64_t s, Padding p, int64_t d = 1, int64_t g = 1) {
  Conv2DOptions o;
  o.strides = {s, s};
  o.padding = p;
  o.dilation = {d, d};
  o.groups = g;
  return o;
}
Attrs conv_attrs(const Conv2DOptions& o) {
  return Attrs{o.strides[0],  o.strides[1],  o.padding == Padding::kSame ? 1 : 0,
               o.dilation[0], o.dilation[1], o.groups};
}

// fn computes in float32 under mixed_bfloat16 (a conv reducing over fewer than
// kBf16MinConvChannels channels): the same result as without the policy.
void check_float32_under_bf16(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                              const std::vector<Tensor>& in) {
  const Tensor f32 = fn(in);
  PolicyScope bf16("mixed_bfloat16");
  EXPECT_TRUE(all_close(fn(in), f32, 0, 0)) << "a conv over few channels must stay float32";
}

TEST(DTypePolicy, Conv2DAndItsGradientOpsInBf16) {
  REQUIRE_BF16();
  struct Case {
    Shape x, f;
    Conv2DOptions o;
  };
  // Channels per group: input (forward, filter gradient) and output (input gradient); below
  // kBf16MinConvChannels (16) the direction stays float32, at or above it runs in bf16.
  const Case cases[] = {
      {{1, 7, 9, 3}, {3, 3, 3, 4}, opts(1, Padding::kValid)},
      {{3, 9, 7, 2}, {3, 3, 2, 5}, opts(2, Padding::kSame)},
      {{1, 11, 9, 16}, {3, 3, 16, 3}, opts(1, Padding::kSame, 2)},
      {{3, 9, 9, 6}, {3, 3, 3, 36}, opts(2, Padding::kValid, 1, 2)},
      {{3, 5, 7, 17}, {1, 1, 17, 16}, opts(1, Padding::kValid)},
      {{2, 9, 9, 32}, {3, 3, 16, 40}, opts(1, Padding::kSame, 1, 2)},
      {{4, 14, 14, 32}, {3, 3, 32, 64}, opts(1, Padding::kSame)},  // the cnn's second conv
      {{4, 28, 28, 1}, {3, 3, 1, 32}, opts(1, Padding::kSame)},    // and its first
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(to_string(c.x) + " " + to_string(c.f));
    const double inner = c.f[0] * c.f[1] * c.f[2];
    const int64_t in_channels = c.f[2], out_channels = c.f[3] / c.o.groups;
    Tensor x = random_tensor(c.x, float32, 1), f = random_tensor(c.f, float32, 2);
    Tensor dy = random_tensor(conv2d(x, f, c.o).shape(), float32, 3);
    auto forward = [&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], c.o); };
    auto input_grad = [&](const std::vector<Tensor>& v) {
      return run_op(ops::kConv2DBackwardInput, {v[0], v[1], x}, conv_attrs(c.o));
    };
    Attrs fa = conv_attrs(c.o);
    for (int64_t d : c.f) fa.add_int(d);
    auto filter_grad = [&](const std::vector<Tensor>& v) {
      return run_op(ops::kConv2DBackwardFilter, {v[0], v[1]}, fa);
    };
    if (in_channels >= detail::kBf16MinConvChannels) {
      check_bf16(forward, {x, f}, inner);
      check_bf16(filter_grad, {x, dy}, static_cast<double>(dy.numel() / c.f[3]));
    } else {
      check_float32_under_bf16(forward, {x, f});
      check_float32_under_bf16(filter_grad, {x, dy});
    }
    if (out_channels >= detail::kBf16MinConvChannels) {
      check_bf16(input_grad, {dy, f}, c.f[0] * c.f[1] * c.f[3] / c.o.groups);
    } else {
      check_float32_under_bf16(input_grad, {dy, f});
    }
  }
}

TEST(DTypePolicy, FusedOpsInBf16) {
  REQUIRE_BF16();
  // fused_matmul: attrs {transpose_a, transpose_b, has_bias, act, act_int}.
  Tensor bias = random_tensor({9}, float32, 5);
  check_bf16(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kFusedMatmul, {v[0], v[1], bias},
                      Attrs{0, 0, 1, kActRelu, 0}.add_float(0));
      },
      {random_tensor({5, 37}, float32, 1), random_tensor({37, 9}, float32, 2)}, 37);
  // fused_conv2d: the conv attrs, then has_bias, act, act_int.
  Attrs a = conv_attrs(opts(1, Padding::kSame));
  a.add_int(1).add_int(kActRelu).add_int(0).add_float(0);
  Tensor cb = random_tensor({6}, float32, 6);
  check_bf16(
      [&](const std::vector<Tensor>& v) {
        return run_op(ops::kFusedConv2D, {v[0], v[1], cb}, a);
      },
      {random_tensor({2, 8, 7, 16}, float32, 1), random_tensor({3, 3, 16, 6}, float32, 2)}, 144);
}

// Tape gradients under bf16 (the rules run bf16 kernels) agree with float32's within bf16
// tolerance; the float64 finite-difference checks of the rules run under float32 in the op tests.
TEST(DTypePolicy, GradientsUnderBf16AgreeWithFloat32) {
  REQUIRE_BF16();
  Tensor x = random_tensor({4, 9, 9, 3}, float32, 1), f = random_tensor({3, 3, 3, 8}, float32, 2);
  Tensor w = random_tensor({9 * 9 * 8, 5}, float32, 3);
  auto grads = [&] {
    GradientTape tape;
    tape.watch(x);
    tape.watch(f);
    tape.watch(w);
    Tensor h = relu(conv2d(x, f, opts(1, Padding::kSame))).reshape({4, 9 * 9 * 8});
    Tensor loss = sum(matmul(h, w) * matmul(h, w));
    return tape.gradient(loss, {x, f, w});
  };
  std::vector<Tensor> g32 = grads(), g16;
  {
    PolicyScope bf16("mixed_bfloat16");
    g16 = grads();
  }
  for (size_t i = 0; i < g32.size(); ++i) {
    SCOPED_TRACE(i);
    const double scale = max(abs(g32[i])).to_vector<float>()[0];
    EXPECT_TRUE(all_close(g16[i], g32[i], 3e-2, 3e-2 * scale));
  }
}

}  // namespace
}  // namespace kiln
