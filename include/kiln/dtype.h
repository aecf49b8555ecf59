// Element types. float32 is the main type; float64 serves gradient checks and references.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln {

enum class DType : uint8_t { kFloat32, kFloat64, kInt32, kInt64, kInt8, kUInt8, kBool };

inline constexpr DType float32 = DType::kFloat32;
inline constexpr DType float64 = DType::kFloat64;
inline constexpr DType int32 = DType::kInt32;
inline constexpr DType int64 = DType::kInt64;
inline constexpr DType int8 = DType::kInt8;
inline constexpr DType uint8 = DType::kUInt8;
inline constexpr DType boolean = DType::kBool;

// Bytes per element.
constexpr size_t size_of(DType t) {
  switch (t) {
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    default:
      return 1;
  }
}

constexpr bool is_floating(DType t) { return t == DType::kFloat32 || t == DType::kFloat64; }

// "float32", "int64", ... (the names NumPy and safetensors' lower-case spelling use).
std::string_view dtype_name(DType t);
// The dtype named `name` (dtype_name's spelling), or nullopt: file readers use it.
std::optional<DType> dtype_from_name(std::string_view name);

// The C++ type of each dtype, for kernels: CType<DType::kFloat32> is float.
template <DType D>
struct CTypeOf;
template <>
struct CTypeOf<DType::kFloat32> {
  using type = float;
};
template <>
struct CTypeOf<DType::kFloat64> {
  using type = double;
};
template <>
struct CTypeOf<DType::kInt32> {
  using type = int32_t;
};
template <>
struct CTypeOf<DType::kInt64> {
  using type = int64_t;
};
template <>
struct CTypeOf<DType::kInt8> {
  using type = int8_t;
};
template <>
struct CTypeOf<DType::kUInt8> {
  using type = uint8_t;
};
template <>
struct CTypeOf<DType::kBool> {
  using type = bool;
};
template <DType D>
using CType = typename CTypeOf<D>::type;

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kInt32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::kInt8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kUInt8;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::kBool;
}

}  // namespace kiln
