// Storage over memory kiln does not own (NumPy arrays, another library's buffers): not from
// the size-class cache, not 64-byte aligned, handed back through a release callback when the
// last reference goes. storage_unref (core/storage.h) tells it apart by capacity == 0, which
// no cached storage has (the smallest size class is 64 bytes).
#pragma once

#include <cstddef>

#include "core/storage.h"

namespace kiln::detail {

using StorageRelease = void (*)(void* context) noexcept;

// A storage over `data` (`nbytes` bytes owned by someone else), refcount 1, capacity 0. When
// the last reference goes, `release(context)` is called exactly once, outside kiln's locks, on
// whichever thread drops it (possibly during process exit, after main returns); it must not
// throw. `data` may be null only when nbytes is 0. Throws std::bad_alloc (the header only);
// then `release` is not called.
Storage* storage_adopt(void* data, size_t nbytes, StorageRelease release, void* context);

// Whether `s` was made by storage_adopt.
inline bool storage_is_adopted(const Storage* s) { return s->capacity == 0; }

}  // namespace kiln::detail
