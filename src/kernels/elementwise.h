// Generic elementwise kernels, parameterized by a functor `F` with `template <class T> T
// operator()(T a, T b)` (binary) or `T operator()(T x)` (unary). The reference versions compute
// every index from scratch (slow, obviously right); the fast versions use a BroadcastPlan.
#pragma once

#include <cstdint>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/broadcast.h"

namespace kiln::kernels {

// Offset of output element `i` in an input of shape `in` broadcast to `out`.
inline int64_t broadcast_offset(int64_t i, const Shape& out, const Shape& in) {
  int64_t off = 0, stride = 1;
  for (int d = out.rank() - 1, e = in.rank() - 1; d >= 0; --d, --e) {
    int64_t c = i % out[d];
    i /= out[d];
    if (e >= 0) {
      if (in[e] != 1) off += c * stride;
      stride *= in[e];
    }
  }
  return off;
}

// out[i] = f(a[i'], b[i'']) with In the inputs' type and Out the output's.
template <typename In, typename Out, typename F>
void binary_reference_typed(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const In* pa = detail::ptr<In>(a);
  const In* pb = detail::ptr<In>(b);
  Out* po = detail::ptr<Out>(out);
  const Shape& os = out.shape();
  for (int64_t i = 0, n = os.numel(); i < n; ++i) {
    po[i] = static_cast<Out>(
        f(pa[broadcast_offset(i, os, a.shape())], pb[broadcast_offset(i, os, b.shape())]));
  }
}

template <typename In, typename Out, typename F>
void binary_fast_typed(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const In* pa = detail::ptr<In>(a);
  const In* pb = detail::ptr<In>(b);
  Out* po = detail::ptr<Out>(out);
  BroadcastPlan plan = make_plan(out.shape(), {&a.shape(), &b.shape()});
  for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
    Out* o = po + off[0];
    const In* x = pa + off[1];
    const In* y = pb + off[2];
    if (st[1] == 1 && st[2] == 1) {
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<Out>(f(x[j], y[j]));
    } else if (st[1] == 1 && st[2] == 0) {
      const In yv = *y;
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<Out>(f(x[j], yv));
    } else if (st[1] == 0 && st[2] == 1) {
      const In xv = *x;
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<Out>(f(xv, y[j]));
    } else {
      for (int64_t j = 0; j < n; ++j)
        o[j * st[0]] = static_cast<Out>(f(x[j * st[1]], y[j * st[2]]));
    }
  });
}

template <typename In, typename Out, typename F>
void unary_typed(const Tensor& x, Tensor& out, F f) {
  const In* px = detail::ptr<In>(x);
  Out* po = detail::ptr<Out>(out);
  parallel_range(x.numel(), 4, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) po[j] = static_cast<Out>(f(px[j]));
  });
}

}  // namespace kiln::kernels
