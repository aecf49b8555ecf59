// int8 ops: quantize/dequantize known values (round half to even, saturation), quantized_matmul
// and quantized_conv2d fast (oneDNN) vs reference bit for bit over awkward shapes, zero
// points, ReLU and both output dtypes, their agreement with float math, max_pool2d in int8,
// the non-VNNI (AVX2) path, and every error message.
#include <gtest/gtest.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cmath>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::Expect;
using testing::expect_error;
using testing::random_tensor;

Tensor u8(double v) { return scalar(v, DType::kUInt8); }
Tensor s8(double v) { return scalar(v, DType::kInt8); }
Tensor f32(double v) { return scalar(v); }

bool vnni() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx2_vnni || isa == dnnl::cpu_isa::avx512_core_vnni ||
         isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

// Random parameters of a layer with `k` inputs per output and `n` outputs; weights in
// [-limit, limit].
QuantizedLinear layer(const Shape& w_shape, int64_t n, uint64_t seed, int x_zp, bool relu,
                      bool u8_out, double limit = 127) {
  QuantizedLinear p;
  p.x_scale = f32(0.02);
  p.x_zero_point = u8(x_zp);
  p.weights = random_tensor(w_shape, DType::kInt8, seed, -limit, limit + 0.999);
  p.weight_scales = random_tensor({n}, float32, seed + 1, 0.001, 0.01);
  p.bias = random_tensor({n}, float32, seed + 2, -2, 2);
  p.relu = relu;
  if (u8_out) {
    p.y_scale = f32(0.05);
    p.y_zero_point = u8(relu ? 0 : 128);
  }
  return p;
}

// ---- quantize / dequantize ---------------------------------------------------------------------

TEST(Quantize, RoundsHalfToEvenAndSaturates) {
  Tensor x = from_vector<float>({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 0.2f, 1000.f, -1000.f, 0.f});
  Tensor q = quantize(x, f32(1.0), u8(10));
  EXPECT_EQ(q.dtype(), DType::kUInt8);
  EXPECT_EQ(q.to_vector<int>(), (std::vector<int>{10, 12, 12, 10, 8, 10, 255, 0, 10}));
  Tensor qs = quantize(x, f32(0.5), s8(-3));
  EXPECT_EQ(qs.dtype(), DType::kInt8);
  EXPECT_EQ(qs.to_vector<int>(), (std::vector<int>{-2, 0, 2, -4, -6, -3, 127, -128, -3}));
}

TEST(Quantize, DequantizeInvertsWithinHalfAStep) {
  Tensor x = random_tensor({5, 33}, float32, 3, -1, 2.4);
  for (DType t : {DType::kUInt8, DType::kInt8}) {
    Tensor zp = scalar(t == DType::kUInt8 ? 64 : -32, t);
    const double scale = 4.0 / 255;
    Tensor y = dequantize(quantize(x, f32(scale), zp), f32(scale), zp);
    EXPECT_EQ(y.dtype(), float32);
    EXPECT_TRUE(all_close(y, x, 0, scale / 2 + 1e-6));
  }
}

TEST(Quantize, Errors) {
  Tensor x = ones({2, 3});
  expect_error<DTypeError>([&] { quantize(ones({2}, float64), f32(1), u8(0)); },
                           {"quantize", "x must be float32", "float64"});
  expect_error<DTypeError>([&] { quantize(x, f32(1), scalar(0, DType::kInt32)); },
                           {"quantize", "zero_point must be uint8 or int8", "int32"});
  expect_error<ShapeError>([&] { quantize(x, ones({2}), u8(0)); },
                           {"quantize", "scale must be a scalar", "[2]"});
  expect_error<ValueError>([&] { quantize(x, f32(0), u8(0)); },
                           {"quantize", "scale must be positive and finite", "0.0"});
  expect_error<DTypeError>([&] { dequantize(x, f32(1), u8(0)); },
                           {"dequantize", "q must be uint8 or int8", "float32"});
  expect_error<DTypeError>([&] { dequantize(quantize(x, f32(1), u8(0)), f32(1), s8(0)); },
                           {"dequantize", "zero_point must be uint8", "int8"});
  expect_error<ValueError>([&] { dequantize(quantize(x, f32(1), u8(0)), f32(-1), u8(0)); },
                           {"dequantize", "scale must be positive and finite", "-1"});
}

// ---- quantized_matmul --------------------------------------------------------------------------

struct MatmulCase {
  int64_t m, k, n;
  int zp;
};

TEST(QuantizedMatmul, FastMatchesReferenceBitForBit) {
  const MatmulCase cases[] = {{1, 1, 1, 0},     {1, 7, 5, 3},     {3, 17, 9, 0},
                              {5, 33, 1, 200},  {1, 784, 128, 0}, {64, 784, 128, 17},
                              {13, 128, 10, 0}, {2, 3, 70, 255}};
  uint64_t seed = 10;
  for (const MatmulCase& c : cases) {
    for (bool relu : {false, true}) {
      for (bool u8_out : {false, true}) {
        SCOPED_TRACE(std::to_string(c.m) + "x" + std::to_string(c.k) + "x" + std::to_string(c.n) +
                     " zp " + std::to_string(c.zp) + (relu ? " relu" : "") +
                     (u8_out ? " u8" : " f32"));
        const double limit = vnni() ? 127 : 63;
        QuantizedLinear p = layer({c.k, c.n}, c.n, seed++, c.zp, relu, u8_out, limit);
        Tensor x = random_tensor({c.m, c.k}, DType::kUInt8, seed++, 0, 256);
        check_fast_matches_reference([&] { return quantized_matmul(x, p); }, 0, 0);
      }
    }
  }
}

// The integer result is the float computation on the dequantized operands.
TEST(QuantizedMatmul, AgreesWithFloatMath) {
  QuantizedLinear p = layer({40, 12}, 12, 7, 9, true, false);
  Tensor x = random_tensor({6, 40}, DType::kUInt8, 8, 0, 256);
  Tensor xf = dequantize(x, p.x_scale, p.x_zero_point);
  Tensor wf = mul(cast(p.weights, float32), reshape(p.weight_scales, {1, 12}));
  Tensor want = relu(add(matmul(xf, wf), p.bias));
  Tensor got = quantized_matmul(x, p);
  EXPECT_TRUE(all_close(got, want, 1e-5, 1e-5));
  // u8 output: within one output step of quantize(want).
  p.y_scale = f32(0.03);
  p.y_zero_point = u8(0);
  Tensor q = quantized_matmul(x, p);
  EXPECT_EQ(q.dtype(), DType::kUInt8);
  EXPECT_TRUE(all_close(cast(q, float32), cast(quantize(want, p.y_scale, u8(0)), float32), 0, 1));
}

TEST(QuantizedMatmul, Errors) {
  QuantizedLinear p = layer({4, 3}, 3, 1, 0, false, false);
  Tensor x = random_tensor({2, 4}, DType::kUInt8, 2, 0, 256);
  expect_error<DTypeError>(
      [&] {
        quantized_matmul(ones({2, 4}), p);
      },
      {"quantized_matmul", "the input must be uint8", "float32"});
  expect_error<ShapeError>(
      [&] {
        quantized_matmul(random_tensor({2, 5}, DType::kUInt8), p);
      },
      {"quantized_matmul", "[2, 5]", "[4, 3]", "[M, K]"});
  QuantizedLinear bad = p;
  bad.weights = cast(p.weights, DType::kUInt8);
  expect_error<DTypeError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "the weights must be int8", "uint8"});
  bad = p;
  bad.weight_scales = ones({4});
  expect_error<ShapeError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "weight scales must be [3]"});
  bad = p;
  bad.bias = ones({3}, float64);
  expect_error<DTypeError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "the bias must be float32", "float64"});
  bad = p;
  bad.x_zero_point = s8(0);
  expect_error<DTypeError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "input zero point must be uint8", "int8"});
  bad = p;
  bad.y_scale = f32(1);
  expect_error<ValueError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "both y_scale and y_zero_point"});
  bad.y_zero_point = s8(0);
  expect_error<DTypeError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "y_zero_point must be uint8", "int8"});
  bad = p;
  bad.weight_scales = from_vector<float>({0.1f, 0.f, 0.1f});
  expect_error<ValueError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "weight scale 1 must be positive"});
  bad = p;
  bad.x_scale = f32(std::nan(""));
  expect_error<ValueError>([&] { quantized_matmul(x, bad); },
                           {"quantized_matmul", "input scale must be positive and finite"});
  Tensor in[3] = {x, p.x_scale, p.x_zero_point};
  Tensor out[1];
  expect_error<ValueError>([&] { run_op(ops::kQuantizedMatmul, in, Attrs{0}, out); },
                           {"quantized_matmul", "takes 6 inputs", "or 8", "got 3"});
}

// ---- quantized_conv2d --------------------------------------------------------------------------

Conv2DOptions opts(int64_t s, Padding p, int64_t d = 1, int64_t g = 1) {
  Conv2DOptions o;
  o.strides = {s, s};
  o.padding = p;
  o.dilation = {d, d};
  o.groups = g;
  return o;
}

struct ConvCase {
  Shape x, f;
  Conv2DOptions o;
  int zp;
};

TEST(QuantizedConv2D, FastMatchesReferenceBitForBit) {
  Conv2DOptions asym = opts(1, Padding::kSame);
  asym.strides = {2, 1};
  asym.dilation = {1, 2};
  const ConvCase cases[] = {
      {{1, 7, 9, 3}, {3, 3, 3, 4}, opts(1, Padding::kValid), 0},
      {{3, 7, 9, 3}, {3, 3, 3, 4}, opts(1, Padding::kSame), 5},
      {{1, 9, 7, 2}, {3, 3, 2, 5}, opts(2, Padding::kSame), 128},
      {{3, 8, 8, 3}, {3, 3, 3, 2}, opts(2, Padding::kValid), 0},
      {{1, 11, 9, 2}, {3, 3, 2, 3}, opts(1, Padding::kSame, 2), 7},
      {{1, 7, 7, 4}, {3, 3, 2, 6}, opts(1, Padding::kSame, 1, 2), 0},
      {{3, 9, 9, 6}, {3, 3, 3, 4}, opts(2, Padding::kValid, 1, 2), 30},
      {{1, 5, 7, 5}, {1, 1, 5, 3}, opts(2, Padding::kSame), 0},
      {{1, 3, 2, 2}, {5, 5, 2, 2}, opts(1, Padding::kSame), 255},  // window larger than image
      {{1, 8, 7, 3}, {2, 3, 3, 2}, asym, 9},
      {{2, 28, 28, 1}, {3, 3, 1, 32}, opts(1, Padding::kSame), 0},  // the cnn's layers
      {{2, 14, 14, 32}, {3, 3, 32, 64}, opts(1, Padding::kSame), 0},
      // Batches run in chunks of images whose accumulators fit the L2 cache: 3 chunks of 4,
      // 7 of 1 (a prime batch), one of 10.
      {{12, 28, 28, 1}, {3, 3, 1, 32}, opts(1, Padding::kSame), 3},
      {{7, 28, 28, 1}, {3, 3, 1, 32}, opts(1, Padding::kSame), 0},
      {{10, 14, 14, 32}, {3, 3, 32, 64}, opts(1, Padding::kSame), 0},
  };
  uint64_t seed = 100;
  for (const ConvCase& c : cases) {
    for (bool relu : {false, true}) {
      for (bool u8_out : {false, true}) {
        SCOPED_TRACE(to_string(c.x) + " * " + to_string(c.f) + " zp " + std::to_string(c.zp) +
                     (relu ? " relu" : "") + (u8_out ? " u8" : " f32"));
        QuantizedLinear p = layer(c.f, c.f[3], seed++, c.zp, relu, u8_out, vnni() ? 127 : 63);
        Tensor x = random_tensor(c.x, DType::kUInt8, seed++, 0, 256);
        check_fast_matches_reference([&] { return quantized_conv2d(x, p, c.o); }, 0, 0);
      }
    }
  }
}

TEST(QuantizedConv2D, AgreesWithFloatMathIncludingPadding) {
  QuantizedLinear p = layer({3, 3, 4, 5}, 5, 21, 77, false, false);
  Tensor x = random_tensor({2, 6, 5, 4}, DType::kUInt8, 22, 0, 256);
  const Conv2DOptions o = opts(1, Padding::kSame);
  Tensor xf = dequantize(x, p.x_scale, p.x_zero_point);
  Tensor wf = mul(cast(p.weights, float32), reshape(p.weight_scales, {1, 1, 1, 5}));
  Tensor want = add(conv2d(xf, wf, o), p.bias);
  EXPECT_TRUE(all_close(quantized_conv2d(x, p, o), want, 1e-5, 1e-5));
}

TEST(QuantizedConv2D, Errors) {
  QuantizedLinear p = layer({3, 3, 2, 4}, 4, 1, 0, false, false);
  Tensor x = random_tensor({1, 5, 5, 2}, DType::kUInt8, 2, 0, 256);
  expect_error<ShapeError>(
      [&] {
        quantized_conv2d(random_tensor({1, 5, 5, 3}, DType::kUInt8), p);
      },
      {"quantized_conv2d", "conv2d: shapes [1, 5, 5, 3]", "[3, 3, 2, 4]"});
  expect_error<ShapeError>(
      [&] {
        quantized_conv2d(random_tensor({1, 2, 2, 2}, DType::kUInt8), p);
      },
      {"quantized_conv2d", "larger than the input"});
  expect_error<ValueError>([&] { quantized_conv2d(x, p, opts(0, Padding::kValid)); },
                           {"quantized_conv2d", "strides", ">= 1"});
  expect_error<DTypeError>([&] { quantized_conv2d(cast(x, DType::kInt8), p); },
                           {"quantized_conv2d", "the input must be uint8", "int8"});
  QuantizedLinear bad = p;
  bad.bias = ones({3});
  expect_error<ShapeError>([&] { quantized_conv2d(x, bad); },
                           {"quantized_conv2d", "the bias must be [4]"});
}

// ---- the non-VNNI path
// ---------------------------------------------------------------------------

// Without VNNI (oneDNN's effective ISA; DNNL_MAX_CPU_ISA=AVX2 on this machine) oneDNN's
// vpmaddubsw saturates: 8-bit weights must go to the reference, 7-bit ones may run fast.
// With VNNI both run fast. Either way the results are the reference's.
TEST(QuantizedIsa, SaturatingWeightsStayExact) {
  QuantizedLinear p = layer({64, 16}, 16, 5, 0, false, false);
  p.weights = full({64, 16}, 127, DType::kInt8);  // u8 255 * 127 pairs: 64770 > int16
  Tensor x = full({4, 64}, 255, DType::kUInt8);
  check_fast_matches_reference([&] { return quantized_matmul(x, p); }, 0, 0,
                               vnni() ? Expect::kFast : Expect::kDeclined);
  p.weights = full({64, 16}, -64, DType::kInt8);
  check_fast_matches_reference([&] { return quantized_matmul(x, p); }, 0, 0, Expect::kFast);
  QuantizedLinear c = layer({3, 3, 8, 4}, 4, 6, 0, false, false);
  c.weights = full({3, 3, 8, 4}, 127, DType::kInt8);
  Tensor xi = full({1, 6, 6, 8}, 255, DType::kUInt8);
  check_fast_matches_reference([&] { return quantized_conv2d(xi, c); }, 0, 0,
                               vnni() ? Expect::kFast : Expect::kDeclined);
  c.weights = full({3, 3, 8, 4}, 63, DType::kInt8);
  check_fast_matches_reference([&] { return quantized_conv2d(xi, c); }, 0, 0, Expect::kFast);
}

// oneDNN's blocked copy of the weights is cached per tensor and version: two weight tensors of
// one shape alternate without mixing, and a write that bumps the version (as every kiln op
// that writes a tensor does) is seen.
TEST(QuantizedMatmul, BlockedWeightsFollowTheTensorAndItsVersion) {
  QuantizedLinear p = layer({96, 40}, 40, 50, 7, false, false, vnni() ? 127 : 63);
  QuantizedLinear p2 = layer({96, 40}, 40, 53, 7, false, false, vnni() ? 127 : 63);
  p2.weight_scales = p.weight_scales;
  p2.bias = p.bias;
  Tensor x = random_tensor({5, 96}, DType::kUInt8, 51, 0, 256);
  for (int round = 0; round < 2; ++round) {
    check_fast_matches_reference([&] { return quantized_matmul(x, p); }, 0, 0, Expect::kFast);
    check_fast_matches_reference([&] { return quantized_matmul(x, p2); }, 0, 0, Expect::kFast);
  }
  const Tensor before = quantized_matmul(x, p);
  int8_t* w = p.weights.data<int8_t>();
  for (int64_t i = 0; i < p.weights.numel(); ++i) w[i] = static_cast<int8_t>(-w[i] / 2);
  p.weights.impl()->version.fetch_add(1);
  check_fast_matches_reference([&] { return quantized_matmul(x, p); }, 0, 0, Expect::kFast);
  EXPECT_FALSE(all_close(quantized_matmul(x, p), before, 0, 0));
}

// Runs this program's int8 tests again with oneDNN limited to AVX2 (no VNNI).
TEST(QuantizedIsa, Avx2RunPasses) {
  if (std::getenv("DNNL_MAX_CPU_ISA")) GTEST_SKIP() << "already the inner run";
  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  const std::string cmd =
      "DNNL_MAX_CPU_ISA=AVX2 '" + std::string(self) +
      "' "
      "--gtest_filter='QuantizedMatmul.*:QuantizedConv2D.*:QuantizedIsa.*:QuantizedPool.*' "
      "> /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "rerun by hand: " << cmd;
}

// ---- pooling stays in int8 ----------------------------------------------------------------------

TEST(QuantizedPool, MaxPoolInUInt8AndInt8) {
  for (DType t : {DType::kUInt8, DType::kInt8}) {
    Tensor x = t == DType::kUInt8 ? random_tensor({2, 7, 9, 5}, t, 3, 0, 256)
                                  : random_tensor({2, 7, 9, 5}, t, 3, -128, 128);
    for (Padding pad : {Padding::kValid, Padding::kSame}) {
      Pool2DOptions o;
      o.padding = pad;
      check_fast_matches_reference([&] { return max_pool2d(x, o); }, 0, 0);
      Tensor want = max_pool2d(cast(x, float32), o);
      Tensor got = max_pool2d(x, o);
      EXPECT_EQ(got.dtype(), t);
      EXPECT_TRUE(all_close(cast(got, float32), want, 0, 0));
    }
  }
  expect_error<DTypeError>(
      [] {
        avg_pool2d(zeros({1, 4, 4, 1}, DType::kUInt8));
      },
      {"avg_pool2d", "uint8"});
}

TEST(QuantizedPool, ReshapeKeepsInt8) {
  Tensor x = random_tensor({2, 3, 3, 4}, DType::kUInt8, 4, 0, 256);
  Tensor y = reshape(x, {2, -1});
  EXPECT_EQ(y.dtype(), DType::kUInt8);
  EXPECT_EQ(y.to_vector<int>(), x.to_vector<int>());
}

}  // namespace
}  // namespace kiln
