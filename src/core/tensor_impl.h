// TensorImpl: what a Tensor handle points to. Internal; kernels and the dispatcher use it.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/storage.h"
#include "kiln/instance_token.h"
#include "kiln/tensor.h"

namespace kiln::detail {

struct TensorImpl {
  std::atomic<int32_t> refs{1};
  DType dtype = DType::kFloat32;
  bool requires_grad = false;  // tapes record ops on it without watch() (trainable variables)
  bool is_variable = false;    // a Variable's value: tracers capture it by reference
  Shape shape;
  Storage* storage = nullptr;  // null only for symbolic (traced) values
  int64_t offset = 0;          // bytes into storage
  // The one tape that keeps this tensor's slot here, packed as (tape id << 32 | slot); 0: none.
  // Claimed by compare-and-swap and released by that tape, so tapes on several threads that
  // share tensors (variables) never overwrite each other's slots (see autograd/tape.cc).
  std::atomic<uint64_t> tape_claim{0};
  // Bumped by every stateful op that writes this tensor (a Variable's version() reads it);
  // conv keys its per-variable cache of the reordered filter on it.
  std::atomic<uint64_t> version{0};
  // This tensor's identity for per-instance caches; reset when the impl is freed or pooled.
  InstanceToken token;

  char* bytes() const { return static_cast<char*>(storage->data) + offset; }
};

// A new impl with fresh storage for `shape` x `dtype` (uninitialized), refcount 1.
TensorImpl* impl_new(const Shape& shape, DType dtype);
// A new impl viewing `storage` (takes a new reference to it).
TensorImpl* impl_view(Storage* storage, int64_t offset, const Shape& shape, DType dtype);
void impl_unref(TensorImpl* impl);

// Shorthands for kernels: typed pointers into a tensor's data.
template <typename T>
inline T* ptr(const Tensor& t) {
  return reinterpret_cast<T*>(t.impl()->bytes());
}

}  // namespace kiln::detail

namespace kiln {
// `want` with its one -1 resolved against from.numel(); throws ShapeError naming `op`.
Shape resolve_reshape(const Shape& from, const Shape& want, const char* op);
}  // namespace kiln
