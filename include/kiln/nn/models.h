// Ready-made models the CLI and examples use (fresh layers, default store, default names).
#pragma once

#include <memory>

#include "kiln/nn/model.h"

namespace kiln {

// Flatten, Dense 256 relu, Dense 128 relu, Dense 10 (logits). On [28, 28, 1]: 235,146 params.
std::shared_ptr<Sequential> make_mlp();
// Conv2D 32 3x3 same relu, MaxPool 2, Conv2D 64 3x3 same relu, MaxPool 2, Flatten,
// Dense 128 relu, Dense 10 (logits). On [28, 28, 1]: 421,642 params.
std::shared_ptr<Sequential> make_cnn();

}  // namespace kiln
