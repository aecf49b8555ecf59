// Ready-made models the CLI and examples use (fresh layers, default names), returned built for
// Fashion-MNIST images [batch, 28, 28, 1] so weights exist at once. Their variables go in
// `store` when given (set before building, so e.g. a test's seeded store), else the default
// store.
#pragma once

#include <memory>

#include "kiln/nn/model.h"
#include "kiln/nn/variable_store.h"

namespace kiln {

// Flatten, Dense 256 relu, Dense 128 relu, Dense 10 (logits). On [28, 28, 1]: 235,146 params.
std::shared_ptr<Sequential> make_mlp(VariableStore* store = nullptr);
// Conv2D 32 3x3 same relu, MaxPool 2, Conv2D 64 3x3 same relu, MaxPool 2, Flatten,
// Dense 128 relu, Dense 10 (logits). On [28, 28, 1]: 421,642 params.
std::shared_ptr<Sequential> make_cnn(VariableStore* store = nullptr);

}  // namespace kiln
