// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so value i of a stream depends only on (seed, i) and any thread can compute it.
#pragma once

#include <array>
#include <cstdint>

namespace kiln::detail {

// Inline: dropout and the initializers call it once per 4 values.
inline std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo) {
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

// The Philox seed of a random key {seed, counter} (SeedGenerator, dropout, random ops):
// counter 0 is the seed itself, so keyed ops draw what the seeded creators draw; each later
// counter moves by the golden-ratio increment.
inline uint64_t key_seed(int64_t seed, int64_t counter) {
  return static_cast<uint64_t>(seed) + static_cast<uint64_t>(counter) * 0x9E3779B97F4A7C15ull;
}

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
// Values [first, first + n) of the same streams; `first` must be even (a counter holds two).
void philox_uniform_at(uint64_t seed, uint64_t stream, int64_t first, int64_t n, double* out);
void philox_normal_at(uint64_t seed, uint64_t stream, int64_t first, int64_t n, double* out);

}  // namespace kiln::detail
