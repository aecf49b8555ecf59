// ONNX ops onto kiln ops: reductions, matrix products and normalizations.
#include <algorithm>
#include <cmath>
#include <limits>

#include "graph/scoped_recorders.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"
#include "ops/registry.h"

namespace kiln::onnx_import {

namespace {

// ---- reductions -----------------------------------------------------------------------------

// kind: 0 sum, 1 mean, 2 max, 3 min, 4 sum of squares, 5 L1, 6 L2, 7 log-sum, 8 log-sum-exp
template <int Kind>
void map_reduce(NodeCtx& c) {
  require_input_count(c, 1, 2);
  Tensor x = c.in(0);
  std::vector<int64_t> axes;
  const bool axes_input = Kind == 0 && c.opset() >= 13;
  if (axes_input) {
    if (c.has_input(1)) axes = c.ints_in(1, "axes");
  } else {
    if (c.has_input(1)) c.fail("takes axes as an attribute in this opset");
    axes = c.attr_ints("axes");
  }
  const bool keepdims = c.attr_int("keepdims", 1) != 0;
  if (axes.empty() && c.attr_int("noop_with_empty_axes", 0) != 0) {
    c.set_out(0, c.value(0));
    return;
  }
  std::vector<int> ax;
  for (int64_t a : axes) ax.push_back(normalize_axis(c, a, x.rank()));
  if (ax.empty()) {
    for (int d = 0; d < x.rank(); ++d) ax.push_back(d);
  }
  if (Kind == 1 || Kind >= 4) require_float(c, x);
  Tensor y;
  switch (Kind) {
    case 0:
      y = sum(x, ax, keepdims);
      break;
    case 1:
      y = mean(x, ax, keepdims);
      break;
    case 2:
      y = max(x, ax, keepdims);
      break;
    case 3:
      y = neg(max(neg(x), ax, keepdims));
      break;
    case 4:
      y = sum(mul(x, x), ax, keepdims);
      break;
    case 5:
      y = sum(abs(x), ax, keepdims);
      break;
    case 6:
      y = sqrt(sum(mul(x, x), ax, keepdims));
      break;
    case 7:
      y = log(sum(x, ax, keepdims));
      break;
    default: {
      Tensor m = max(x, ax, true);
      Tensor s = log(sum(exp(sub(x, m)), ax, true));
      y = add(s, m);
      if (!keepdims) y = sum(y, ax, false);  // drops the size-1 dims
      break;
    }
  }
  c.set_out(0, y);
}

void map_argmax(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  if (c.attr_int("select_last_index", 0) != 0) c.fail("select_last_index=1 is not supported");
  const int axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  c.set_out(0, argmax(x, axis, c.attr_int("keepdims", 1) != 0));
}

// ---- matmul --------------------------------------------------------------------------------

void map_matmul(NodeCtx& c) {
  require_input_count(c, 2, 2);
  Tensor a = c.in(0), b = c.in(1);
  if (a.rank() == 0 || b.rank() == 0) c.fail("scalars are not supported");
  const bool a1 = a.rank() == 1, b1 = b.rank() == 1;
  if (a1) a = reshape(a, Shape{1, a.shape()[0]});
  if (b1) b = reshape(b, Shape{b.shape()[0], 1});
  Tensor y = matmul(a, b);
  if (a1 || b1) {
    Shape s;
    for (int d = 0; d < y.rank() - 2; ++d) s.push_back(y.shape()[d]);
    if (!a1) s.push_back(y.shape()[y.rank() - 2]);
    if (!b1) s.push_back(y.shape()[y.rank() - 1]);
    y = reshape_to(c, y, s, c.unknown_out_dims(0, s));
  }
  c.set_out(0, y);
}

void map_gemm(NodeCtx& c) {
  require_input_count(c, 2, 3);
  Tensor a = c.in(0), b = c.in(1);
  if (a.rank() != 2 || b.rank() != 2) c.fail("A and B must be 2-D");
  const double alpha = c.attr_float("alpha", 1.0), beta = c.attr_float("beta", 1.0);
  Tensor y = matmul(a, b, c.attr_int("transA", 0) != 0, c.attr_int("transB", 0) != 0);
  if (alpha != 1.0) y = mul(y, scalar_of(alpha, y));
  if (c.has_input(2) && beta != 0.0) {
    Tensor bias = c.in(2);
    if (beta != 1.0) bias = mul(bias, scalar_of(beta, bias));
    y = add(y, bias);
  }
  c.set_out(0, y);
}

// ---- normalizations ---------------------------------------------------------------------------

// (x - mean) / sqrt(var + eps) over `axes`, kept.
Tensor normalized(const Tensor& x, const std::vector<int>& axes, double eps) {
  Tensor m = mean(x, axes, true);
  Tensor centered = sub(x, m);
  Tensor var = mean(mul(centered, centered), axes, true);
  return div(centered, sqrt(add(var, scalar_of(eps, x))));
}

void map_instance_norm(NodeCtx& c) {
  require_input_count(c, 3, 3);
  Tensor x = c.in(0);
  require_float(c, x);
  if (x.rank() < 3) c.fail("the input must have spatial dims");
  std::vector<int> axes;
  for (int d = 2; d < x.rank(); ++d) axes.push_back(d);
  Shape ps{x.shape()[1]};
  for (int d = 2; d < x.rank(); ++d) ps.push_back(1);
  Tensor scale = c.in(1), bias = c.in(2);
  if (scale.numel() != x.shape()[1] || bias.numel() != x.shape()[1])
    c.fail("scale and B must be [C]");
  Tensor y = normalized(x, axes, c.attr_float("epsilon", 1e-5));
  c.set_out(0, add(mul(y, reshape(scale, ps)), reshape(bias, ps)));
}

void map_layer_norm(NodeCtx& c) {
  require_input_count(c, 2, 3);
  Tensor x = c.in(0);
  require_float(c, x);
  const int axis = normalize_axis(c, c.attr_int("axis", -1), x.rank());
  std::vector<int> axes;
  for (int d = axis; d < x.rank(); ++d) axes.push_back(d);
  const double eps = c.attr_float("epsilon", 1e-5);
  Tensor m = mean(x, axes, true);
  Tensor centered = sub(x, m);
  Tensor inv_std =
      div(scalar_of(1, x), sqrt(add(mean(mul(centered, centered), axes, true), scalar_of(eps, x))));
  Tensor y = mul(mul(centered, inv_std), c.in(1));
  if (c.has_input(2)) y = add(y, c.in(2));
  c.set_out(0, y);
  c.set_out(1, m);  // the optional Mean and InvStdDev outputs
  c.set_out(2, inv_std);
}

void map_mean_variance_norm(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  require_float(c, x);
  std::vector<int64_t> axes = c.attr_ints("axes");
  if (axes.empty() && !c.has_attr("axes")) axes = {0, 2, 3};
  std::vector<int> ax;
  for (int64_t a : axes) ax.push_back(normalize_axis(c, a, x.rank()));
  // As ONNX's function: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9).
  Tensor m = mean(x, ax, true);
  Tensor var = sub(mean(mul(x, x), ax, true), mul(m, m));
  c.set_out(0, div(sub(x, m), add(sqrt(var), scalar_of(1e-9, x))));
}

}  // namespace

std::vector<Mapping> math_mappings() {
  return {
      {"ReduceSum", map_reduce<0>},
      {"ReduceMean", map_reduce<1>},
      {"ReduceMax", map_reduce<2>},
      {"ReduceMin", map_reduce<3>},
      {"ReduceSumSquare", map_reduce<4>},
      {"ReduceL1", map_reduce<5>},
      {"ReduceL2", map_reduce<6>},
      {"ReduceLogSum", map_reduce<7>},
      {"ReduceLogSumExp", map_reduce<8>},
      {"ArgMax", map_argmax},
      {"MatMul", map_matmul},
      {"Gemm", map_gemm},
      {"InstanceNormalization", map_instance_norm},
      {"LayerNormalization", map_layer_norm},
      {"MeanVarianceNormalization", map_mean_variance_norm},
  };
}

}  // namespace kiln::onnx_import
