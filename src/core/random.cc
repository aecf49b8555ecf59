#include "core/random.h"

#include <cmath>

namespace kiln::detail {

void philox_uniform(uint64_t seed, uint64_t stream, int64_t n, double* out) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t b = 0; b < (n + 1) / 2; ++b) {
    auto r = philox4x32(seed, stream, static_cast<uint64_t>(b));
    out[2 * b] = uniform01_53(r[0], r[1]);
    if (2 * b + 1 < n) out[2 * b + 1] = uniform01_53(r[2], r[3]);
  }
}

void philox_normal(uint64_t seed, uint64_t stream, int64_t n, double* out) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t b = 0; b < (n + 1) / 2; ++b) {
    auto r = philox4x32(seed, stream, static_cast<uint64_t>(b));
    double u1 = 1.0 - uniform01_53(r[0], r[1]);  // (0, 1]: log is finite
    double u2 = uniform01_53(r[2], r[3]);
    double rad = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    out[2 * b] = rad * std::cos(th);
    if (2 * b + 1 < n) out[2 * b + 1] = rad * std::sin(th);
  }
}

void philox_uniform_at(uint64_t seed, uint64_t stream, int64_t first, int64_t n, double* out) {
  for (int64_t i = 0; i < n; i += 2) {
    auto r = philox4x32(seed, stream, static_cast<uint64_t>((first + i) / 2));
    out[i] = uniform01_53(r[0], r[1]);
    if (i + 1 < n) out[i + 1] = uniform01_53(r[2], r[3]);
  }
}

void philox_normal_at(uint64_t seed, uint64_t stream, int64_t first, int64_t n, double* out) {
  for (int64_t i = 0; i < n; i += 2) {
    auto r = philox4x32(seed, stream, static_cast<uint64_t>((first + i) / 2));
    double u1 = 1.0 - uniform01_53(r[0], r[1]);
    double u2 = uniform01_53(r[2], r[3]);
    double rad = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    out[i] = rad * std::cos(th);
    if (i + 1 < n) out[i + 1] = rad * std::sin(th);
  }
}

}  // namespace kiln::detail
