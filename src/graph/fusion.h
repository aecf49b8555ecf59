// Fusion passes: rewrite chains of ops as one fused op (ops/fused.h), so the executor runs one
// kernel where the traced graph had several and the intermediates never reach memory.
//
// A chain is fused only when each intermediate has exactly one reader (inside the chain) and
// is not a graph output, and no stateful node lies between the chain's first and last node
// (moving a read across a write would change it). The fused node takes the place of the
// chain's last node. Fused ops have gradient rules built from the unfused ops' rules, so a
// tape over a fused graph gets the same gradients.
#pragma once

#include "graph/graph.h"

namespace kiln::graph {

// matmul (rank-2 operands) or conv2d, then optionally an add of a [N] bias over the last dim,
// then optionally relu / leaky_relu / tanh / sigmoid / gelu: one fused_matmul / fused_conv2d
// whose fast kernel is one oneDNN primitive with a bias and an eltwise post-op. Chains of just
// the first op are left alone. Returns the number of nodes removed.
int fuse_matmul_conv(Graph& g);

// max_pool2d_grad(x, dy) read only by E(., x), E an elementwise op linear in its first input
// (OpDef flag kLinearInInput0: relu_grad, the backward of conv -> relu -> max_pool): one
// fused_max_pool2d_grad, which applies E only where a window's gradient lands instead of a
// second pass over the whole input-sized gradient. Returns the number of nodes removed.
int fuse_pool_grad(Graph& g);

// fused_conv2d(x, f, b) with relu whose output only max_pool2d reads (and, in a train step,
// the fused_max_pool2d_grad with relu_grad of its backward, whose output only the bias's
// sum_to_like and the filter's conv2d_backward_filter read: x needs no gradient), for convs
// conv_pool_direct takes (kh * kw * channels <= 32, the first conv of an image model): one
// fused_conv2d_pool (pooled output and window slots) and, for the backward, one
// fused_conv2d_pool_grad, so the conv output and its gradient never reach memory. Returns the
// number of nodes removed.
int fuse_conv_pool(Graph& g);

// Chains of float elementwise ops (every registered op whose OpDef carries an elementwise
// function: neg exp log sqrt abs square relu sigmoid tanh, add sub mul div pow maximum minimum
// relu_grad)
// whose operands have the result's shape, one element, or are a row over its last dim (a bias,
// batch norm's per-channel vectors), one operand at least full-shaped: one fused_elementwise
// running a small program in one pass. At most 16 inputs and 39 ops per chain. Returns the
// number of nodes removed.
int fuse_elementwise(Graph& g);

// All four: matmul/conv, pool gradients, conv -> pool (whose backward is a fused pool
// gradient), then elementwise chains (the others take their activation or epilogue first),
// then compact(). Returns the number of nodes removed.
int fuse(Graph& g);

}  // namespace kiln::graph
