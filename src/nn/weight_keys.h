// The keys weights are saved under (their place in the layer tree: "2/kernel") and the checked
// assignment of a file's tensors to them. Shared by checkpoints and model files.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kiln/io.h"
#include "kiln/nn/layer.h"

namespace kiln {

using Keyed = std::vector<std::pair<std::string, Variable>>;

// Every weight of `layer` keyed by its place in the layer tree: "2/kernel" is the weight
// "kernel" of sublayer 2, "0/1/bias" nests. A variable reachable from two places (shared) is
// listed under both. StateError when the layer is not built.
void collect_keys(const Layer& layer, const std::string& prefix, Keyed& out);
Keyed weight_keys(const Layer& model);

// Assigns file[prefix + key] to each variable after checking everything (the file's tensors
// under `prefix` are exactly the keys; shapes, dtypes, and shared variables being one tensor in
// the file): FormatError / ShapeError / DTypeError naming `path` and the variable, and then
// nothing has changed.
void assign_keyed(const Keyed& keyed, const SafetensorsFile& file, const std::string& prefix,
                  const std::string& path);

}  // namespace kiln
