// Loops over broadcast operands. make_plan() gives each operand strides (0 along broadcast
// dims) and merges dims that are contiguous in every operand, so most ops end up with one long
// unit-stride inner loop that the compiler vectorizes.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kiln/shape.h"

namespace kiln::kernels {

constexpr int kMaxOperands = 4;  // output + up to 3 inputs

struct BroadcastPlan {
  int rank = 0;  // after merging; >= 1
  int64_t shape[Shape::kMaxRank] = {};
  int64_t stride[kMaxOperands][Shape::kMaxRank] = {};  // operand 0 is the output
  int n_operands = 0;
};

// Plan for writing `out` from `ins` (each broadcastable to `out`).
inline BroadcastPlan make_plan(const Shape& out, std::initializer_list<const Shape*> ins) {
  BroadcastPlan p;
  p.n_operands = 1 + static_cast<int>(ins.size());
  const int r = out.rank();
  // Unmerged strides, right-aligned.
  int64_t st[kMaxOperands][Shape::kMaxRank] = {};
  int64_t dims[Shape::kMaxRank];
  for (int i = 0; i < r; ++i) dims[i] = out[i];
  contiguous_strides(out, st[0]);
  int k = 1;
  for (const Shape* s : ins) {
    int64_t cs[Shape::kMaxRank];
    contiguous_strides(*s, cs);
    for (int i = 0; i < r; ++i) {
      int j = i - (r - s->rank());
      st[k][i] = (j >= 0 && (*s)[j] != 1) ? cs[j] : 0;
    }
    ++k;
  }
  // Merge dim i into i+1 when every operand is contiguous across them; drop size-1 dims.
  int m = 0;
  for (int i = 0; i < r; ++i) {
    if (dims[i] == 1 && r > 1) continue;
    bool merge = m > 0;
    for (int o = 0; o < p.n_operands && merge; ++o) {
      merge = p.stride[o][m - 1] == st[o][i] * dims[i];
    }
    if (merge) {
      p.shape[m - 1] *= dims[i];
      for (int o = 0; o < p.n_operands; ++o) p.stride[o][m - 1] = st[o][i];
    } else {
      p.shape[m] = dims[i];
      for (int o = 0; o < p.n_operands; ++o) p.stride[o][m] = st[o][i];
      ++m;
    }
  }
  if (m == 0) {  // a scalar, or all dims 1
    p.shape[0] = 1;
    for (int o = 0; o < p.n_operands; ++o) p.stride[o][0] = 0;
    m = 1;
  }
  p.rank = m;
  return p;
}

// Work above this many elements is split across OpenMP threads.
constexpr int64_t kParallelThreshold = 1 << 15;

// Calls run(off, n, inner) for each innermost run of the plan: off[o] is the element offset of
// operand o at the run's start, inner[o] its stride along the run, n its length. Runs are split
// across threads when the plan is large.
template <typename Run>
void for_each_run(const BroadcastPlan& p, Run&& run) {
  const int r = p.rank;
  const int64_t inner_n = p.shape[r - 1];
  int64_t outer = 1;
  for (int i = 0; i < r - 1; ++i) outer *= p.shape[i];
  int64_t inner[kMaxOperands];
  for (int o = 0; o < p.n_operands; ++o) inner[o] = p.stride[o][r - 1];

  auto run_range = [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      int64_t off[kMaxOperands] = {};
      int64_t rem = idx;
      for (int i = r - 2; i >= 0; --i) {
        int64_t c = rem % p.shape[i];
        rem /= p.shape[i];
        for (int o = 0; o < p.n_operands; ++o) off[o] += c * p.stride[o][i];
      }
      run(off, inner_n, inner);
    }
  };
  const int64_t total = outer * inner_n;
  if (total < kParallelThreshold || outer < 2 || omp_get_max_threads() == 1) {
    run_range(0, outer);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (outer + nt - 1) / nt;
    run_range(std::min(outer, t * chunk), std::min(outer, (t + 1) * chunk));
  }
}

// Splits [0, n) across threads when n * cost_per_item is large; fn(begin, end).
template <typename Fn>
void parallel_range(int64_t n, int64_t cost_per_item, Fn&& fn) {
  if (n * cost_per_item < kParallelThreshold || n < 2 || omp_get_max_threads() == 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = std::min(n, t * chunk), e = std::min(n, (t + 1) * chunk);
    if (b < e) fn(b, e);
  }
}

}  // namespace kiln::kernels
