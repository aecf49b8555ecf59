// A float32 operand rounded to bfloat16 before a bf16 primitive reads it (the "mixed_bfloat16"
// dtype policy, include/kiln/dtype_policy.h). Internal: include from src/ops/*.cc only.
#pragma once

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/broadcast.h"
#include "kernels/onednn/primitive_cache.h"

namespace kiln::onednn {

// `desc` with its data type set to bf16 (same dims and strides or format).
inline dnnl::memory::desc as_bf16(const dnnl::memory::desc& desc) {
  dnnl_memory_desc_t d = desc.data;
  d.data_type = dnnl_bf16;
  return dnnl::memory::desc(d);
}

// to[i] = from[i] rounded to the nearest bf16, ties to even (as oneDNN's reorder), NaN kept
// quiet. A plain loop the compiler vectorizes: the fallback of round_to_bf16.
inline void round_to_bf16_loop(const float* from, uint16_t* to, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, from + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    to[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
  }
}

// The same with AVX512_BF16's vcvtneps2bf16 (16 floats per instruction; every CPU that runs the
// mixed_bfloat16 policy has it). It flushes denormal inputs (below 1.2e-38) to zero, as
// oneDNN's own f32 -> bf16 reorders do; otherwise bit-identical to the loop.
__attribute__((target("avx512f,avx512vl,avx512bf16"))) inline void round_to_bf16_avx512(
    const float* from, uint16_t* to, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(from + i));
    __m256i bits;
    std::memcpy(&bits, &r, sizeof bits);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(to + i), bits);
  }
  round_to_bf16_loop(from + i, to + i, n - i);
}

// to[0, n) = from[0, n) rounded to bf16, split across threads above kernels' threshold (the
// conversions were 1.15 ms of a 6.5 ms bf16 cnn step when single-threaded loops).
inline void round_to_bf16(const float* from, uint16_t* to, int64_t n) {
  static const bool avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  constexpr int64_t kBlock = 4096;  // floats per work item
  kernels::parallel_range((n + kBlock - 1) / kBlock, kBlock, [&](int64_t b, int64_t e) {
    const int64_t lo = b * kBlock, hi = std::min(n, e * kBlock);
    if (avx512_bf16) {
      round_to_bf16_avx512(from + lo, to + lo, hi - lo);
    } else {
      round_to_bf16_loop(from + lo, to + lo, hi - lo);
    }
  });
}

// An owned bf16 copy (`low`, in the layout of the float32 operand it copies: same dims and
// strides, so element i of the buffer is element i of the operand's dense storage) that a
// primitive reads. Lives in a primitive cache entry and is used under that entry's lock.
struct Bf16Input {
  dnnl::memory low;
  int64_t elements = 0;

  // `desc` is the bf16 layout (as_bf16 of the float32 operand's, or an nhwc desc for one);
  // `elements` the operand's element count. Returns the bytes owned, for the entry's count.
  size_t init(const dnnl::memory::desc& desc, int64_t n) {
    low = dnnl::memory(desc, engine());
    elements = n;
    return desc.get_size();
  }
  // Rounds the float32 data at `data` (elements floats) into `low`.
  void convert(const void* data) {
    round_to_bf16(static_cast<const float*>(data), static_cast<uint16_t*>(low.get_data_handle()),
                  elements);
  }
};

}  // namespace kiln::onednn
