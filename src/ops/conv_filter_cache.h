// A variable's conv filter kept in a primitive's preferred layout, reordered once per version
// of the variable instead of on every call (src/ops/conv.cc). Used by conv2d's forward and
// backward-input kernels and by fused_conv2d (src/ops/fused.cc).
#pragma once

#include <dnnl.hpp>

#include "core/tensor_impl.h"
#include "kernels/onednn/primitive_cache.h"

namespace kiln::conv_filter {

// Runs `prim` with `args`, its DNNL_ARG_WEIGHTS replaced by `filter`'s data in `w`'s layout:
// a cached copy, made by `reorder` (from `user_w`, the HWIO view) on the first call for each
// version of the variable. Returns false, running nothing, unless the filter is a variable's
// value and the cache is enabled (then the caller reorders as usual). The caller holds the
// lock of the entry owning user_w, reorder and args. `which` names one cache per layout
// family (0: conv2d forward, 1: conv2d backward input, 2: fused_conv2d inference).
bool execute_with_cached_filter(const detail::TensorImpl* filter, dnnl::memory& user_w,
                                const dnnl::memory& w, const dnnl::primitive& reorder,
                                const dnnl::primitive& prim, const onednn::ExecArgs& args,
                                int which);

}  // namespace kiln::conv_filter
