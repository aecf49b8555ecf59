// Activation ranges from calibration values: min/max, percentile, and the clipping range with
// the least quantization MSE (searched over shrinking ranges of the min/max one).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "kiln/compress.h"
#include "kiln/error.h"

namespace kiln {
namespace {

// At most this many values feed percentile and MSE (an even stride through the tensor):
// enough for a 99.99th percentile, cheap enough for large activations.
constexpr int64_t kMaxSample = 1 << 20;

std::vector<float> sample(const float* v, int64_t n) {
  const int64_t stride = std::max<int64_t>(1, n / kMaxSample);
  std::vector<float> s;
  s.reserve(n / stride + 1);
  for (int64_t i = 0; i < n; i += stride) s.push_back(v[i]);
  return s;
}

// Mean squared error of quantizing `s` to uint8 over [lo, hi].
double quant_mse(const std::vector<float>& s, float lo, float hi) {
  const double scale = (hi - lo) / 255.0;
  if (scale <= 0) return 0;
  const double zp = std::nearbyint(-lo / scale);
  double err = 0;
  for (float x : s) {
    const double q = std::clamp(std::nearbyint(x / scale) + zp, 0.0, 255.0);
    const double d = (q - zp) * scale - x;
    err += d * d;
  }
  return err / static_cast<double>(s.size());
}

}  // namespace

ActivationRange calibrate_range(const Tensor& values, Calibration method, double percentile) {
  if (values.dtype() != float32) {
    throw ValueError("calibrate_range: values must be float32, got " +
                     std::string(dtype_name(values.dtype())));
  }
  const int64_t n = values.numel();
  if (n == 0) throw ValueError("calibrate_range: no values (an empty tensor)");
  if (method == Calibration::kPercentile && !(percentile > 50 && percentile <= 100)) {
    throw ValueError("calibrate_range: the percentile must be in (50, 100], got " +
                     std::to_string(percentile));
  }
  const float* v = detail::ptr<float>(values);
  float lo = 0, hi = 0;  // the range always holds 0 (so zero, ReLU's floor, is exact)
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) continue;
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  if (method == Calibration::kMinMax || hi - lo <= 0) return {lo, hi};
  std::vector<float> s = sample(v, n);
  if (method == Calibration::kPercentile) {
    std::sort(s.begin(), s.end());
    auto at = [&](double p) {
      const double pos = p / 100.0 * static_cast<double>(s.size() - 1);
      return s[static_cast<size_t>(std::llround(pos))];
    };
    return {std::min(0.f, at(100 - percentile)), std::max(0.f, at(percentile))};
  }
  // kMse: shrink both ends together from the min/max range, keep the best of 100 candidates.
  ActivationRange best{lo, hi};
  double best_err = quant_mse(s, lo, hi);
  for (int step = 1; step < 100; ++step) {
    const float f = 1.f - 0.0095f * static_cast<float>(step);  // down to 6% of the range
    const double err = quant_mse(s, lo * f, hi * f);
    if (err < best_err) best_err = err, best = {lo * f, hi * f};
  }
  return best;
}

}  // namespace kiln
