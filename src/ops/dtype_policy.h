// The global dtype policy as kernels read it (public API: include/kiln/dtype_policy.h).
// Internal: matmul, conv and fused kernels call mixed_bf16() on every call (one relaxed load).
#pragma once

#include <atomic>

namespace kiln::detail {

extern std::atomic<bool> g_mixed_bf16;

// Whether matmul/conv kernels compute in bfloat16 now (policy "mixed_bfloat16").
inline bool mixed_bf16() { return g_mixed_bf16.load(std::memory_order_relaxed); }

// Testing: makes bf16_unsupported_reason() report `reason` as if the CPU lacked bf16 (empty:
// detect again). Lets the refusal be tested on a CPU that has AVX512_BF16. Not thread-safe
// against concurrent set_dtype_policy calls.
void set_bf16_unsupported_for_testing(const char* reason);

}  // namespace kiln::detail
