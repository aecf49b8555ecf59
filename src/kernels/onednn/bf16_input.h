// A float32 operand rounded to bfloat16 before a bf16 primitive reads it (the "mixed_bfloat16"
// dtype policy, include/kiln/dtype_policy.h). Internal: include from src/ops/*.cc only.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstring>

#include "kernels/onednn/primitive_cache.h"

namespace kiln::onednn {

// `desc` with its data type set to bf16 (same dims and strides or format).
inline dnnl::memory::desc as_bf16(const dnnl::memory::desc& desc) {
  dnnl_memory_desc_t d = desc.data;
  d.data_type = dnnl_bf16;
  return dnnl::memory::desc(d);
}

// to[i] = from[i] rounded to the nearest bf16, ties to even (as oneDNN's reorder), NaN kept
// quiet. A plain loop the compiler vectorizes, on the calling thread: a oneDNN reorder is one
// more OpenMP region per operand, and on these shared 2-core machines each region may wait
// milliseconds for its second thread, more than the conversion itself costs.
inline void round_to_bf16(const float* from, uint16_t* to, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, from + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    to[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
  }
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
