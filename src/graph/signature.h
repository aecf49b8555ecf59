// Signatures of graph-function calls: computing one, explaining a retrace as a diff against
// the nearest cached signature, and relaxing the dims that changed.
#pragma once

#include <string>
#include <vector>

#include "kiln/function.h"

namespace kiln::graph {

// The concrete signature of a call (every dim known).
Signature signature_of(const std::vector<Tensor>& args, bool training);

// How far `b` is from `a` (number of differing dims, dtypes, arities and flags; a different
// number of arguments counts as far away).
int signature_distance(const Signature& a, const Signature& b);

// The changes from `from` to `to`, one line each:
//   arg 0: shape [64, 784] -> [32, 784]
//   arg 1: dtype float32 -> float64
//   training: false -> true
//   dtype_policy: float32 -> mixed_bfloat16
std::vector<std::string> signature_diff(const Signature& from, const Signature& to);

// `to` with every dim that differs from `from` (same rank) set to kUnknownDim.
Signature relax(const Signature& from, const Signature& to);

std::string dims_str(const std::vector<int64_t>& dims);  // "[64, None]"

}  // namespace kiln::graph
