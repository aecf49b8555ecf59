// Calls f.template operator()<T>() with T the C++ type of `t`:
//   visit_dtype(t, [&]<typename T>() { ... T ... });
#pragma once

#include "kiln/dtype.h"

namespace kiln::detail {

template <typename F>
void visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32:
      f.template operator()<float>();
      break;
    case DType::kFloat64:
      f.template operator()<double>();
      break;
    case DType::kInt32:
      f.template operator()<int32_t>();
      break;
    case DType::kInt64:
      f.template operator()<int64_t>();
      break;
    case DType::kInt8:
      f.template operator()<int8_t>();
      break;
    case DType::kUInt8:
      f.template operator()<uint8_t>();
      break;
    case DType::kBool:
      f.template operator()<bool>();
      break;
  }
}

// Floating types only (callers have checked the dtype).
template <typename F>
void visit_floating(DType t, F&& f) {
  if (t == DType::kFloat64) {
    f.template operator()<double>();
  } else {
    f.template operator()<float>();
  }
}

}  // namespace kiln::detail
