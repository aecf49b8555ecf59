// Float32 math written as plain branch-free arithmetic, so GCC vectorizes loops that call it
// (the libm functions do not vectorize without -ffast-math). Shared by activation.cc and nn.cc.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace kiln::kernels {

// e^x for float32, within ~2 ulp of std::exp over the whole range; 0 below -87.34 (where
// std::exp gives denormals), inf above 88.38, NaN for NaN. Cephes' range reduction and
// polynomial; 2^n is built in the exponent bits.
inline float exp_f32(float x) {
  constexpr float kHi = 88.3762626647949f, kLo = -87.3365447505531f;
  float xc = x > kHi ? kHi : x;
  xc = xc < kLo ? kLo : xc;
  // Round x*log2(e) to the nearest integer n: adding 1.5*2^23 leaves n in the low mantissa bits.
  constexpr float kMagic = 12582912.0f;
  float t = xc * 1.44269504088896341f + kMagic;
  float n = t - kMagic;
  int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kMagic);
  float r = xc - n * 0.693359375f;  // x - n*ln2, ln2 split in two for accuracy
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  y *= std::bit_cast<float>((ni + 127) << 23);
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;
}

// tanh for float32: an odd Taylor polynomial near 0 (where 1 - e^-2|x| would cancel), the
// exp form elsewhere. Relative error ~1e-7.
inline float tanh_f32(float x) {
  float a = x < 0 ? -x : x;
  float e = exp_f32(-2.0f * a);
  float big = (1.0f - e) / (1.0f + e);
  float x2 = a * a;
  // x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925 (|x| < 0.3: error < 1e-9)
  float small = -8.8632355e-3f;
  small = small * x2 + 2.1869489e-2f;
  small = small * x2 - 5.3968254e-2f;
  small = small * x2 + 1.3333334e-1f;
  small = small * x2 - 3.3333334e-1f;
  small = (small * x2 + 1.0f) * a;
  float y = a < 0.3f ? small : big;
  return x < 0 ? -y : y;
}

// Sum and max of n floats with 16 independent accumulators: an in-order float reduction cannot
// be vectorized without -ffast-math, 16 lanes can. f maps each element first.
template <typename F>
inline float sum_map_f32(const float* x, int64_t n, F f) {
  constexpr int kW = 16;
  float acc[kW] = {};
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    for (int j = 0; j < kW; ++j) acc[j] += f(x[i + j]);
  }
  float s = 0;
  for (; i < n; ++i) s += f(x[i]);
  for (int j = 0; j < kW; ++j) s += acc[j];
  return s;
}

inline float sum_f32(const float* x, int64_t n) {
  return sum_map_f32(x, n, [](float v) { return v; });
}

// Max of n floats (-inf when n == 0). NaN elements are skipped; callers computing exp(x - max)
// still get NaN for them.
inline float max_f32(const float* x, int64_t n) {
  constexpr int kW = 16;
  float acc[kW];
  for (int j = 0; j < kW; ++j) acc[j] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    for (int j = 0; j < kW; ++j) {
      float v = x[i + j];
      acc[j] = v > acc[j] ? v : acc[j];
    }
  }
  float m = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (int j = 0; j < kW; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

// Row softmax building block for a [rows, n] array: m[r] = max of row r, e[r*n + j] =
// exp(x[r*n + j] - m[r]), s[r] = sum of row r of e. The exps run over the whole block at once,
// so short rows (10 classes) vectorize as well as long ones. Callers pass blocks of a few
// thousand elements so e stays in cache.
inline void exp_rows_f32(const float* x, int64_t rows, int64_t n, float* m, float* e, float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* er = e + r * n;
    const float mr = max_f32(xr, n);
    m[r] = mr;
    for (int64_t j = 0; j < n; ++j) er[j] = xr[j] - mr;
  }
  for (int64_t i = 0, len = rows * n; i < len; ++i) e[i] = exp_f32(e[i]);
  for (int64_t r = 0; r < rows; ++r) s[r] = sum_f32(e + r * n, n);
}

// Rows per exp_rows_f32 block for rows of length n.
inline int64_t rows_per_block(int64_t n) { return n >= 2048 ? 1 : 2048 / (n > 0 ? n : 1); }

}  // namespace kiln::kernels
