// Cache limits from environment variables (KILN_*_CACHE_*; the list is in kiln/cache.h).
#pragma once

#include <cstdint>

namespace kiln::detail {

// The value of environment variable `name`, or `fallback` when unset or empty. A whole number,
// with an optional K, M or G suffix (powers of 1024) when `bytes`. Anything else is a
// ValueError naming the variable and the value.
uint64_t env_limit(const char* name, uint64_t fallback, bool bytes);

}  // namespace kiln::detail
