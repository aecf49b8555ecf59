// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so value i of a stream depends only on (seed, i) and any thread can compute it.
#pragma once

#include <array>
#include <cstdint>

namespace kiln::detail {

std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo);

// Uniform in [0, 1) from 32 random bits (24 significant, exact in float and double).
inline double uniform01(uint32_t bits) { return (bits >> 8) * (1.0 / 16777216.0); }
// Uniform in [0, 1) from two 32-bit words (53 bits).
inline double uniform01_53(uint32_t hi, uint32_t lo) {
  return ((uint64_t{hi} >> 5) * 67108864.0 + (lo >> 6)) * (1.0 / 9007199254740992.0);
}

// n values of a stream: uniform in [0,1) (double precision).
void philox_uniform(uint64_t seed, uint64_t stream, int64_t n, double* out);
// n standard normal values (Box-Muller over pairs of uniforms).
void philox_normal(uint64_t seed, uint64_t stream, int64_t n, double* out);

}  // namespace kiln::detail
