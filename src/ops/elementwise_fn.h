// ElementwiseFn (ops/op_def.h) from an op's functor, so the functor stays the one definition of
// the op's math: its kernels and fused_elementwise both run it.
//
//   OpDef{..., .elementwise = &kUnaryFn<ExpF>}    F maps one element: T F::ref<T>(T) or
//   OpDef{..., .elementwise = &kBinaryFn<AddF>}   T F::operator()(T) (binary: two arguments),
//                                                 plus optionally float F::fast(float...), a
//                                                 vectorizable float32 form.
// F is default-constructible or built from (empty) Attrs, as activation.cc's functors are.
#pragma once

#include <cstdint>
#include <type_traits>

#include "ops/op_def.h"

namespace kiln::elementwise_fn {

template <class F>
F make() {
  if constexpr (std::is_constructible_v<F, const Attrs&>) {
    static const Attrs none;
    return F(none);
  } else {
    return F{};
  }
}

template <class T, class F, class... Args>
T ref(const F& f, Args... x) {
  if constexpr (requires { f.template ref<T>(x...); }) {
    return f.template ref<T>(x...);
  } else {
    return static_cast<T>(f(x...));
  }
}

template <class F, class... Args>
float fast(const F& f, Args... x) {
  if constexpr (requires { f.fast(x...); }) {
    return f.fast(x...);
  } else {
    return ref<float>(f, x...);
  }
}

template <class F, class T>
void unary_ref(const T* x, const T*, T* out, int64_t n) {
  const F f = make<F>();
  for (int64_t i = 0; i < n; ++i) out[i] = ref<T>(f, x[i]);
}
template <class F>
void unary_fast(const float* x, const float*, float* out, int64_t n) {
  const F f = make<F>();
  for (int64_t i = 0; i < n; ++i) out[i] = fast(f, x[i]);
}
template <class F, class T>
void binary_ref(const T* x, const T* y, T* out, int64_t n) {
  const F f = make<F>();
  for (int64_t i = 0; i < n; ++i) out[i] = ref<T>(f, x[i], y[i]);
}
template <class F>
void binary_fast(const float* x, const float* y, float* out, int64_t n) {
  const F f = make<F>();
  for (int64_t i = 0; i < n; ++i) out[i] = fast(f, x[i], y[i]);
}

}  // namespace kiln::elementwise_fn

namespace kiln {

template <class F>
inline constexpr ElementwiseFn kUnaryFn{1, elementwise_fn::unary_ref<F, float>,
                                        elementwise_fn::unary_ref<F, double>,
                                        elementwise_fn::unary_fast<F>};
template <class F>
inline constexpr ElementwiseFn kBinaryFn{2, elementwise_fn::binary_ref<F, float>,
                                         elementwise_fn::binary_ref<F, double>,
                                         elementwise_fn::binary_fast<F>};

}  // namespace kiln
