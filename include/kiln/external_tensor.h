// Tensors over memory kiln does not own (NumPy arrays, memory-mapped files, another library's
// buffers), as LibTorch's from_blob: no copy, and the owner is told when kiln is done with it.
#pragma once

#include "kiln/dtype.h"
#include "kiln/shape.h"
#include "kiln/tensor.h"

namespace kiln {

// Called exactly once with its context when the last tensor (or view) over external memory is
// freed: on whichever thread frees it, possibly during process exit after main has returned.
// It must not throw and must not block on a thread that may be waiting for that tensor.
using ExternalRelease = void (*)(void* context) noexcept;

// A tensor over `data`: shape.numel() elements of `dtype`, contiguous row-major, valid and
// unchanged in place until `release(context)` is called (kiln reads it and writes it only
// through ops the caller runs, e.g. assign or copy_from on this tensor). kiln's own storage is
// 64-byte aligned, but no kernel relies on more than element alignment (views start at any
// row), so `data` needs only alignment to size_of(dtype).
// Throws ValueError when `data` is null (and numel() > 0), is not aligned to size_of(dtype),
// or `release` is null; on any throw `release` is not called and the caller still owns `data`.
Tensor from_external(void* data, const Shape& shape, DType dtype, ExternalRelease release,
                     void* context);

}  // namespace kiln
