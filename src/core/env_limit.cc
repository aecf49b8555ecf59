#include "core/env_limit.h"

#include <cstdlib>
#include <string>

#include "kiln/error.h"

namespace kiln::detail {

uint64_t env_limit(const char* name, uint64_t fallback, bool bytes) {
  const char* raw = std::getenv(name);
  if (!raw || !*raw) return fallback;
  const std::string v(raw);
  size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  uint64_t scale = 1;
  std::string rest = v.substr(digits);
  if (bytes && rest.size() == 1) {
    const char c = rest[0] | 0x20;  // lower case
    scale = c == 'k' ? 1ull << 10 : c == 'm' ? 1ull << 20 : c == 'g' ? 1ull << 30 : 0;
    if (scale) rest.clear();
  }
  if (digits == 0 || !rest.empty() || digits > 15) {
    throw ValueError(std::string(name) + "='" + v + "': expected a whole number" +
                     (bytes ? " of bytes, optionally with a K, M or G suffix" : ""));
  }
  return std::stoull(v.substr(0, digits)) * scale;
}

}  // namespace kiln::detail
