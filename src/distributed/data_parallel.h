// The data-parallel step behind FitOptions::distributed: fit() hands each local gradient over
// as the backward pass finishes it, and gets back the global batch's mean gradients.
#pragma once

#include <memory>

#include "distributed/communicator.h"
#include "kiln/distributed.h"
#include "nn/gradient_sync.h"

namespace kiln::distributed::detail {

// Bucketed all-reduce over `comm` with the bucket size and overlap of `options`; adds each
// step's communication to `stats`. `comm` and `stats` must outlive the result.
std::unique_ptr<kiln::detail::GradientSync> make_data_parallel(Communicator& comm,
                                                               const Options& options,
                                                               Stats& stats);

}  // namespace kiln::distributed::detail
