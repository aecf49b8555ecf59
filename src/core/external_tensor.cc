#include "kiln/external_tensor.h"

#include <cstdint>
#include <sstream>

#include "core/adopted_storage.h"
#include "core/tensor_impl.h"

namespace kiln {

Tensor from_external(void* data, const Shape& shape, DType dtype, ExternalRelease release,
                     void* context) {
  if (!release) throw ValueError("from_external: the release callback is null");
  const size_t nbytes = static_cast<size_t>(shape.numel()) * size_of(dtype);
  if (!data && nbytes > 0) {
    throw ValueError("from_external: data is null for " + std::to_string(nbytes) + " bytes");
  }
  if (reinterpret_cast<uintptr_t>(data) % size_of(dtype) != 0) {
    std::ostringstream msg;
    msg << "from_external: data " << data << " is not aligned to " << size_of(dtype)
        << " bytes, the size of " << dtype_name(dtype);
    throw ValueError(msg.str());
  }
  // The impl first: only the storage's creation can throw after it, and then nothing of the
  // caller's has been taken.
  detail::TensorImpl* impl = detail::impl_view(nullptr, 0, shape, dtype);
  try {
    impl->storage = detail::storage_adopt(data, nbytes, release, context);
  } catch (...) {
    detail::impl_unref(impl);
    throw;
  }
  return Tensor::adopt(impl);
}

}  // namespace kiln
