#include "core/random.h"

#include <cmath>

namespace kiln::detail {

std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo) {
  constexpr uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57;
  constexpr uint32_t kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t{kM0} * c0, p1 = uint64_t{kM1} * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = static_cast<uint32_t>(p1);
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

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

}  // namespace kiln::detail
