// The global dtype policy as kernels read it (public API: include/kiln/dtype_policy.h).
// Internal: matmul, conv and fused kernels call mixed_bf16() on every call (one relaxed load).
#pragma once

#include <atomic>

namespace kiln::detail {

extern std::atomic<bool> g_mixed_bf16;

// Whether matmul/conv kernels compute in bfloat16 now (policy "mixed_bfloat16").
inline bool mixed_bf16() { return g_mixed_bf16.load(std::memory_order_relaxed); }

// Convolutions reducing over fewer channels per group than this stay float32 under
// mixed_bfloat16 (forward and filter gradient: input channels; input gradient: output
// channels). oneDNN's bf16 kernels block channels by 16, so a 1-channel image layer only pays
// for the conversions: the cnn's first conv on a Zen 5-class CPU, 2 threads, batch 64, took
// 555 us forward and 618 us filter gradient in bf16 against 396 and 148 us in float32.
inline constexpr long kBf16MinConvChannels = 16;
inline bool conv_in_bf16(long channels) { return mixed_bf16() && channels >= kBf16MinConvChannels; }

// Testing: makes bf16_unsupported_reason() report `reason` as if the CPU lacked bf16 (empty:
// detect again). Lets the refusal be tested on a CPU that has AVX512_BF16. Not thread-safe
// against concurrent set_dtype_policy calls.
void set_bf16_unsupported_for_testing(const char* reason);

}  // namespace kiln::detail
