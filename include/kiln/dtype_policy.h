// Keras' global dtype policy: the precision matmul and conv compute in.
//
//   "float32"         everything float32 (the default).
//   "mixed_bfloat16"  matmul and conv2d (forward, backward-input, backward-filter, and their
//                     fused forms) read their float32 inputs rounded to bfloat16 and accumulate
//                     in float32 into float32 outputs; everything else (losses, softmax, batch
//                     norm, optimizers, the master weights) stays float32. Tensors stay float32:
//                     the rounding happens inside the oneDNN kernels, so a model, its saved
//                     weights and its graphs are the same under both policies.
//                     A convolution reducing over fewer than 16 channels per group (forward
//                     and filter gradient: input channels; input gradient: output channels),
//                     such as an image model's first layer, stays float32: bf16 gains nothing
//                     there and its conversions cost (more precise, never less).
//
// The policy is process-wide (as Keras' global policy) and read by each matmul/conv kernel call.
// Graph functions key their traces by it: a function traced under one policy retraces under the
// other (the miss is explained as "dtype_policy: float32 -> mixed_bfloat16").
// Thread safety: set_dtype_policy and dtype_policy may be called from any thread (an atomic);
// a kernel already running keeps the precision it started with. Set it before training.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

enum class DTypePolicy { kFloat32, kMixedBfloat16 };

// Sets the global policy by Keras name ("float32" or "mixed_bfloat16").
// Throws ValueError for any other name, naming the accepted ones, and ValueError when
// "mixed_bfloat16" is asked for on a CPU (or a oneDNN limited by DNNL_MAX_CPU_ISA) without
// AVX512_BF16 or AMX-BF16, naming the missing feature; the policy is then unchanged.
void set_dtype_policy(std::string_view name);
void set_dtype_policy(DTypePolicy policy);

// The global policy's Keras name: "float32" or "mixed_bfloat16".
const char* dtype_policy();
DTypePolicy dtype_policy_kind();
const char* dtype_policy_name(DTypePolicy policy);

// Empty when this process can compute matmul/conv in bfloat16 (oneDNN's ISA includes
// AVX512_BF16 or AMX-BF16); otherwise why not, naming the missing CPU feature.
std::string bf16_unsupported_reason();

}  // namespace kiln
