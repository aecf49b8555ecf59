// Internal to src/ops/conv_pool.cc (the fused_conv2d_pool ops) and conv_pool_direct.cc (their
// fast kernels): the attrs layout and pooling geometry both read.
#pragma once

#include <string>

#include "kiln/error.h"
#include "ops/conv_geom.h"
#include "ops/op_def.h"
#include "ops/pool_geom.h"

namespace kiln::conv_pool {

inline constexpr int kPoolAt = conv::kConvAttrs;  // attrs: conv's 6, then pool's 5
inline constexpr int kKernelAt = kPoolAt + 5;     // the gradient op's kh, kw
inline constexpr int64_t kMaxDirectTaps = 32;     // kh * kw * channels the fast kernels take

inline Attrs pool_part(const Attrs& a) {
  return Attrs{a.i(kPoolAt), a.i(kPoolAt + 1), a.i(kPoolAt + 2), a.i(kPoolAt + 3),
               a.i(kPoolAt + 4)};
}

// The conv output's pooling geometry; throws when a window cannot be named by a uint8 slot.
inline pool::Geom pool_geom(const char* op, const conv::Geom& cg, const Attrs& a) {
  const pool::Geom pg = pool::geom(op, conv::out_shape(cg), pool_part(a));
  if (pg.ph * pg.pw > 256) {
    throw ValueError(std::string(op) + ": a pool window of " + std::to_string(pg.ph) + "x" +
                     std::to_string(pg.pw) + " pixels has more positions than a uint8 slot " +
                     "names (256)");
  }
  return pg;
}

// Whether the fast kernels take a conv of this geometry and dtype.
inline bool direct(DType dt, const conv::Geom& g) {
  return dt == DType::kFloat32 && g.groups == 1 && g.kh * g.kw * g.c <= kMaxDirectTaps && g.n > 0 &&
         g.oh > 0 && g.ow > 0 && g.o > 0;
}

// The fast kernels of kFusedConv2DPool and kFusedConv2DPoolGrad (conv_pool_direct.cc): false
// (declined) unless direct(). Thread-safe; scratch buffers are per thread.
bool forward_fast(const KernelArgs& k);
bool grad_fast(const KernelArgs& k);

}  // namespace kiln::conv_pool
