// Strided copies, the core of the shape ops (src/ops/shape.cc): every element of an iteration
// shape is read at one strided offset and written at another. copy_reference moves element by
// element; copy_fast merges dims, then copies whole rows (memcpy when both sides are
// contiguous) or, when the two sides are contiguous along different dims (a transpose), 32x32
// tiles through a local buffer, split across threads above kParallelThreshold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/broadcast.h"
#include "kiln/shape.h"

namespace kiln::kernels {

// Where a copy reads and writes: element c (coordinates over `shape`) moves from
// src + src_off + sum(c * src_st) to dst + dst_off + sum(c * dst_st).
struct CopyPlan {
  Shape shape;
  int64_t src_off = 0, dst_off = 0;
  int64_t src_st[Shape::kMaxRank] = {}, dst_st[Shape::kMaxRank] = {};
};

// Element by element, every index computed from scratch: slow and obviously right.
template <typename T>
void copy_reference(const CopyPlan& p, const T* src, T* dst) {
  const int r = p.shape.rank();
  for (int64_t i = 0, n = p.shape.numel(); i < n; ++i) {
    int64_t rem = i, s = p.src_off, d = p.dst_off;
    for (int k = r - 1; k >= 0; --k) {
      const int64_t c = rem % p.shape[k];
      rem /= p.shape[k];
      s += c * p.src_st[k];
      d += c * p.dst_st[k];
    }
    dst[d] = src[s];
  }
}

// Offsets of outer index `idx` over the plan's first `dims` dims.
inline void outer_offsets(const CopyPlan& p, int dims, int64_t idx, int64_t& s, int64_t& d) {
  s = p.src_off;
  d = p.dst_off;
  for (int k = dims - 1; k >= 0; --k) {
    const int64_t c = idx % p.shape[k];
    idx /= p.shape[k];
    s += c * p.src_st[k];
    d += c * p.dst_st[k];
  }
}

// Drops size-1 dims and merges neighbours that are contiguous on both sides.
inline CopyPlan simplify(const CopyPlan& p) {
  CopyPlan q;
  q.src_off = p.src_off;
  q.dst_off = p.dst_off;
  for (int i = 0, m = 0; i < p.shape.rank(); ++i) {
    if (p.shape[i] == 1) continue;
    if (m > 0 && q.src_st[m - 1] == p.src_st[i] * p.shape[i] &&
        q.dst_st[m - 1] == p.dst_st[i] * p.shape[i]) {
      q.shape[m - 1] *= p.shape[i];
    } else {
      q.shape.push_back(p.shape[i]);
      ++m;
    }
    q.src_st[m - 1] = p.src_st[i];
    q.dst_st[m - 1] = p.dst_st[i];
  }
  return q;
}

// The last two dims A, B are read contiguously along A and written contiguously along B: copy
// 32x32 tiles through a local buffer, so both sides of main memory move in rows.
template <typename T>
void copy_tiled(const CopyPlan& p, const T* src, T* dst) {
  constexpr int64_t kTile = 32;
  const int r = p.shape.rank();
  const int64_t A = p.shape[r - 2], B = p.shape[r - 1], da = p.dst_st[r - 2], sb = p.src_st[r - 1];
  const int64_t ta = (A + kTile - 1) / kTile, tb = (B + kTile - 1) / kTile;
  const int64_t outer = p.shape.numel() / (A * B);
  parallel_range(outer * ta * tb, kTile * kTile, [&](int64_t begin, int64_t end) {
    T buf[kTile][kTile + 1];  // +1: the columns of buf do not share cache sets
    for (int64_t t = begin; t < end; ++t) {
      int64_t s, d;
      outer_offsets(p, r - 2, t / (ta * tb), s, d);
      const int64_t a0 = t / tb % ta * kTile, b0 = t % tb * kTile;
      const int64_t na = std::min(kTile, A - a0), nb = std::min(kTile, B - b0);
      for (int64_t b = 0; b < nb; ++b) {
        const T* in = src + s + (b0 + b) * sb + a0;
        for (int64_t a = 0; a < na; ++a) buf[b][a] = in[a];
      }
      for (int64_t a = 0; a < na; ++a) {
        T* out = dst + d + (a0 + a) * da + b0;
        for (int64_t b = 0; b < nb; ++b) out[b] = buf[b][a];
      }
    }
  });
}

// Same result as copy_reference, by rows or tiles.
template <typename T>
void copy_fast(const CopyPlan& plan, const T* src, T* dst) {
  if (plan.shape.numel() == 0) return;
  const CopyPlan p = simplify(plan);
  const int r = p.shape.rank();
  if (r == 0) {
    dst[p.dst_off] = src[p.src_off];
    return;
  }
  const int64_t inner = p.shape[r - 1], ss = p.src_st[r - 1], ds = p.dst_st[r - 1];
  if (r >= 2 && ss != 1 && ds == 1 && p.src_st[r - 2] == 1) return copy_tiled(p, src, dst);
  parallel_range(p.shape.numel() / inner, inner, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      int64_t s, d;
      outer_offsets(p, r - 1, row, s, d);
      if (ss == 1 && ds == 1) {
        std::memcpy(dst + d, src + s, inner * sizeof(T));
      } else {
        for (int64_t j = 0; j < inner; ++j) dst[d + j * ds] = src[s + j * ss];
      }
    }
  });
}

}  // namespace kiln::kernels
