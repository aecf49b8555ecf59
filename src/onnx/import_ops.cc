// ONNX ops onto kiln ops: elementwise arithmetic, activations, comparisons and logic, casts;
// and the helpers every mapping shares. (Shapes and constants: import_shape_ops.cc; reductions,
// matmul and normalizations: import_math_ops.cc; convolution, pooling, resampling:
// import_nn_ops.cc.)
#include <algorithm>
#include <cmath>
#include <limits>

#include "graph/scoped_recorders.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"
#include "ops/registry.h"

namespace kiln::onnx_import {

// ---- shared helpers --------------------------------------------------------------------------

OValue binary(NodeCtx& c, OValue& a, OValue& b, BinaryFn f) {
  for (const OValue* v : {&a, &b}) {
    if (v->tainted && !c.folding()) {
      c.fail("an input is computed from a symbolic dim; kiln would bake one size into the graph");
    }
  }
  if (!a.perm.empty() || !b.perm.empty()) {
    const std::vector<int> p = a.perm.empty() ? b.perm : a.perm;
    const int r = static_cast<int>(p.size());
    auto follow = [&](OValue& v, Tensor& out) {
      if (v.perm == p) {
        out = v.t;
        return true;
      }
      if (!v.perm.empty() || v.t.rank() > r) return false;
      if (!is_symbolic(v.t)) {  // a constant: brought to the layout once, at import
        Shape s;
        for (int d = v.t.rank(); d < r; ++d) s.push_back(1);
        for (int d = 0; d < v.t.rank(); ++d) s.push_back(v.t.shape()[d]);
        c.charge(v.t.numel(), v.t.dtype());
        graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
        out = transpose(reshape(v.t, s), p);
        return true;
      }
      if (v.t.rank() != r) return false;
      out = transpose(v.t, p);
      return true;
    };
    Tensor ta, tb;
    if (follow(a, ta) && follow(b, tb)) {
      OValue o;
      o.t = f(ta, tb);
      o.perm = p;
      return o;
    }
  }
  OValue o;
  o.t = f(logical_of(a), logical_of(b));
  return o;
}

Tensor reshape_to(NodeCtx& c, const Tensor& x, const Shape& target,
                  const std::vector<bool>& unknown) {
  Shape s;
  int n_unknown = 0;
  for (int d = 0; d < target.rank(); ++d) {
    const bool u = d < static_cast<int>(unknown.size()) && unknown[d];
    n_unknown += u;
    s.push_back(target[d]);
  }
  if (n_unknown > 1) {
    c.fail("the result has " + std::to_string(n_unknown) +
           " symbolic dims; kiln's reshape infers at most one");
  }
  if (n_unknown == 0) return reshape(x, s);
  // Shape holds no -1: the op's attrs do (as kiln::reshape builds them).
  Attrs a;
  for (int d = 0; d < s.rank(); ++d) a.add_int(unknown[d] ? -1 : s[d]);
  return run_op(ops::kReshape, {x}, a);
}

void require_input_count(NodeCtx& c, int lo, int hi) {
  int n = 0;
  for (int k = 0; k < c.num_inputs(); ++k) n = c.has_input(k) ? k + 1 : n;
  if (n < lo || n > hi) {
    c.fail("takes " + std::to_string(lo) + (lo == hi ? "" : " to " + std::to_string(hi)) +
           " inputs, got " + std::to_string(n));
  }
}

// A rank-0 constant of `like`'s dtype.
Tensor scalar_of(double v, const Tensor& like) { return scalar(v, like.dtype()); }

void require_float(NodeCtx& c, const Tensor& t) {
  if (!is_floating(t.dtype())) {
    c.fail("dtype " + std::string(dtype_name(t.dtype())) +
           " is not supported (float and double are)");
  }
}

namespace {

// ---- elementwise -----------------------------------------------------------------------------

// Before opset 7 binary ops broadcast only with broadcast=1 and an axis: refused.
void refuse_legacy_broadcast(NodeCtx& c) {
  if (c.has_attr("broadcast") || c.has_attr("axis"))
    c.fail("legacy broadcast attributes are not supported");
}

template <BinaryFn F>
void map_binary(NodeCtx& c) {
  require_input_count(c, 2, 2);
  refuse_legacy_broadcast(c);
  c.set_out(0, binary(c, c.value(0), c.value(1), F));
}

Tensor pow_same(const Tensor& a, const Tensor& b) {
  return pow(a, b.dtype() == a.dtype() ? b : cast(b, a.dtype()));
}

void map_pow(NodeCtx& c) {
  require_input_count(c, 2, 2);
  refuse_legacy_broadcast(c);
  require_float(c, c.value(0).t);
  c.set_out(0, binary(c, c.value(0), c.value(1), pow_same));
}

// Max, Min, Sum, Mean: variadic, broadcasting.
template <int Kind>
void map_variadic(NodeCtx& c) {
  if (c.num_inputs() < 1) c.fail("needs at least one input");
  OValue acc = c.value(0);
  for (int k = 1; k < c.num_inputs(); ++k) {
    BinaryFn f = Kind == 0 ? BinaryFn{maximum} : Kind == 1 ? BinaryFn{minimum} : BinaryFn{add};
    acc = binary(c, acc, c.value(k), f);
  }
  if (Kind == 3) {
    require_float(c, acc.t);
    acc.t = div(acc.t, scalar_of(static_cast<double>(c.num_inputs()), acc.t));
  }
  acc.logical = Tensor();
  c.set_out(0, acc);
}

// Unary ops keep the input's layout.
template <Tensor (*F)(const Tensor&), bool FloatOnly>
void map_unary(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  if (x.tainted && !c.folding()) c.in(0);  // refuses
  if (FloatOnly) require_float(c, x.t);
  OValue o;
  o.t = F(x.t);
  o.perm = x.perm;
  c.set_out(0, o);
}

Tensor relu_any(const Tensor& x) { return relu(x); }
Tensor sigmoid_any(const Tensor& x) { return sigmoid(x); }
Tensor tanh_any(const Tensor& x) { return tanh(x); }
Tensor reciprocal(const Tensor& x) { return div(scalar_of(1, x), x); }
Tensor softsign(const Tensor& x) { return div(x, add(abs(x), scalar_of(1, x))); }
Tensor softplus(const Tensor& x) {
  // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow for large x.
  return add(relu(x), log(add(exp(neg(abs(x))), scalar_of(1, x))));
}

// Unary ops with float attributes, layout kept.
void map_leaky_relu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  c.set_out(0, OValue{leaky_relu(x.t, c.attr_float("alpha", 0.01)), x.perm});
}

Tensor hard_sigmoid(const Tensor& x, double alpha, double beta) {
  Tensor y = add(mul(x, scalar_of(alpha, x)), scalar_of(beta, x));
  return minimum(maximum(y, scalar_of(0, x)), scalar_of(1, x));
}

void map_hard_sigmoid(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  c.set_out(
      0, OValue{hard_sigmoid(x.t, c.attr_float("alpha", 0.2), c.attr_float("beta", 0.5)), x.perm});
}

void map_hard_swish(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  c.set_out(0, OValue{mul(x.t, hard_sigmoid(x.t, 1.0 / 6.0, 0.5)), x.perm});
}

void map_elu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  const double alpha = c.attr_float("alpha", 1.0);
  const Tensor& t = x.t;
  Tensor neg_part =
      mul(sub(exp(minimum(t, scalar_of(0, t))), scalar_of(1, t)), scalar_of(alpha, t));
  c.set_out(0, OValue{where(greater(t, scalar_of(0, t)), t, neg_part), x.perm});
}

void map_selu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  const double alpha = c.attr_float("alpha", 1.67326319217681884765625);
  const double gamma = c.attr_float("gamma", 1.05070102214813232421875);
  const Tensor& t = x.t;
  Tensor neg_part =
      mul(sub(exp(minimum(t, scalar_of(0, t))), scalar_of(1, t)), scalar_of(alpha, t));
  Tensor y = mul(where(greater(t, scalar_of(0, t)), t, neg_part), scalar_of(gamma, t));
  c.set_out(0, OValue{y, x.perm});
}

Tensor prelu_fn(const Tensor& x, const Tensor& slope) {
  return where(less(x, scalar_of(0, x)), mul(x, slope), x);
}

void map_prelu(NodeCtx& c) {
  require_input_count(c, 2, 2);
  require_float(c, c.value(0).t);
  c.set_out(0, binary(c, c.value(0), c.value(1), prelu_fn));
}

void map_clip(NodeCtx& c) {
  require_input_count(c, 1, 3);
  OValue x = c.value(0);
  if (c.opset() < 11) {
    const double lo = c.attr_float("min", -std::numeric_limits<double>::infinity());
    const double hi = c.attr_float("max", std::numeric_limits<double>::infinity());
    require_float(c, x.t);
    OValue o{minimum(maximum(x.t, scalar_of(lo, x.t)), scalar_of(hi, x.t)), x.perm};
    c.set_out(0, o);
    return;
  }
  for (int k = 1; k <= 2; ++k) {
    if (!c.has_input(k)) continue;
    OValue& bound = c.value(k);
    if (bound.t.rank() != 0 && bound.t.numel() != 1) c.fail("min and max must be scalars");
    x = binary(c, x, bound, k == 1 ? BinaryFn{maximum} : BinaryFn{minimum});
  }
  c.set_out(0, x);
}

// Softmax / LogSoftmax: opset 13 normalizes along `axis` (default -1); before 13 the input is
// flattened to 2-D at `axis` (default 1) and normalized along the second dim.
template <bool Log>
void map_softmax(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  require_float(c, x);
  const int r = x.rank();
  auto f = [](const Tensor& t, int axis) { return Log ? log_softmax(t, axis) : softmax(t, axis); };
  if (c.opset() >= 13) {
    c.set_out(0, f(x, normalize_axis(c, c.attr_int("axis", -1), r)));
    return;
  }
  const int axis = normalize_axis(c, c.attr_int("axis", 1), r);
  if (axis == r - 1) {
    c.set_out(0, f(x, axis));
    return;
  }
  const std::vector<bool> u = c.unknown_dims(0);
  int64_t outer = 1, inner = 1;
  bool u_outer = false, u_inner = false;
  for (int d = 0; d < r; ++d) {
    (d < axis ? outer : inner) *= x.shape()[d];
    (d < axis ? u_outer : u_inner) = (d < axis ? u_outer : u_inner) || u[d];
  }
  if (u_inner)
    c.fail("a symbolic dim at or after axis " + std::to_string(axis) + " is not supported");
  Tensor y = f(reshape_to(c, x, Shape{outer, inner}, {u_outer, false}), 1);
  c.set_out(0, ops::reshape_like(y, x));
}

// ---- comparisons, where, cast ----------------------------------------------------------------

void map_where(NodeCtx& c) {
  require_input_count(c, 3, 3);
  Tensor cond = c.in(0);
  if (cond.dtype() != boolean) c.fail("the condition must be bool");
  c.set_out(0, where(cond, c.in(1), c.in(2)));
}

void map_not(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  if (x.dtype() != boolean) c.fail("the input must be bool");
  c.set_out(0, equal(x, scalar(0, boolean)));
}

void map_cast(NodeCtx& c) {
  require_input_count(c, 1, 1);
  if (!c.has_attr("to")) c.fail("attribute 'to' is required");
  const DType to = dtype_from_onnx(static_cast<int32_t>(c.attr_int("to", 0)), c.where());
  OValue& x = c.value(0);
  if (x.tainted && !c.folding()) c.in(0);
  c.set_out(0, OValue{cast(x.t, to), x.perm});
}

void map_identity(NodeCtx& c) {
  require_input_count(c, 1, 1);
  c.set_out(0, c.value(0));
}

void map_dropout(NodeCtx& c) {
  require_input_count(c, 1, 3);
  if (c.has_input(2)) {
    const Tensor training = c.const_in(2, "training_mode");
    graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
    if (training.numel() != 1 || cast(training, float64).to_vector<double>()[0] != 0) {
      c.fail("training_mode=true is not supported");
    }
  }
  if (c.opset() < 7 && c.attr_int("is_test", 0) == 0)
    c.fail("is_test=0 (training) is not supported");
  c.set_out(0, c.value(0));
  if (c.num_outputs() > 1 && !c.node().output(1).empty()) {
    // Inference keeps every element: the mask is all true.
    c.set_out(1, ops::broadcast_like(scalar(1, boolean), c.in(0)));
  }
}

// ---- logic and tests ----------------------------------------------------------------------

Tensor logical_and(const Tensor& a, const Tensor& b) { return where(a, b, scalar(0, boolean)); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return where(a, scalar(1, boolean), b); }

template <BinaryFn F>
void map_logic(NodeCtx& c) {
  require_input_count(c, 2, 2);
  if (c.value(0).t.dtype() != boolean || c.value(1).t.dtype() != boolean)
    c.fail("inputs must be bool");
  c.set_out(0, binary(c, c.value(0), c.value(1), F));
}

void map_is_nan(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  require_float(c, x);
  c.set_out(0, not_equal(x, x));
}

void map_is_inf(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  require_float(c, x);
  const double inf = std::numeric_limits<double>::infinity();
  const bool pos = c.attr_int("detect_positive", 1) != 0,
             neg_ = c.attr_int("detect_negative", 1) != 0;
  Tensor y = pos && neg_ ? equal(abs(x), scalar_of(inf, x))
             : pos       ? equal(x, scalar_of(inf, x))
             : neg_      ? equal(x, scalar_of(-inf, x))
                         : not_equal(x, x);
  if (!pos && !neg_) y = logical_and(y, scalar(0, boolean));  // nothing detected
  c.set_out(0, y);
}

void map_sign(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  Tensor x = v.t;
  if (x.dtype() == boolean) c.fail("bool inputs are not supported");
  if (v.tainted && !c.folding()) c.in(0);
  const Tensor zero = scalar_of(0, x);
  Tensor y = where(greater(x, zero), scalar_of(1, x), where(less(x, zero), scalar_of(-1, x), zero));
  c.set_out(0, OValue{y, v.perm});
}

void map_arg_min(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  require_float(c, x);
  if (c.attr_int("select_last_index", 0) != 0) c.fail("select_last_index=1 is not supported");
  const int axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  c.set_out(0, argmax(neg(x), axis, c.attr_int("keepdims", 1) != 0));
}

void map_celu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  require_float(c, v.t);
  const double alpha = c.attr_float("alpha", 1.0);
  const Tensor& x = v.t;
  Tensor negative =
      mul(sub(exp(div(minimum(x, scalar_of(0, x)), scalar_of(alpha, x))), scalar_of(1, x)),
          scalar_of(alpha, x));
  c.set_out(0, OValue{add(relu(x), negative), v.perm});
}

void map_thresholded_relu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  require_float(c, v.t);
  const Tensor& x = v.t;
  c.set_out(0,
            OValue{where(greater(x, scalar_of(c.attr_float("alpha", 1.0), x)), x, scalar_of(0, x)),
                   v.perm});
}

void map_shrink(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  require_float(c, v.t);
  const double bias = c.attr_float("bias", 0.0), lambd = c.attr_float("lambd", 0.5);
  const Tensor& x = v.t;
  Tensor y =
      where(less(x, scalar_of(-lambd, x)), add(x, scalar_of(bias, x)),
            where(greater(x, scalar_of(lambd, x)), sub(x, scalar_of(bias, x)), scalar_of(0, x)));
  c.set_out(0, OValue{y, v.perm});
}

}  // namespace

std::vector<Mapping> elementwise_mappings() {
  return {
      {"Add", map_binary<add>},
      {"Sub", map_binary<sub>},
      {"Mul", map_binary<mul>},
      {"Div", map_binary<div>},
      {"Pow", map_pow},
      {"Equal", map_binary<equal>},
      {"Less", map_binary<less>},
      {"LessOrEqual", map_binary<less_equal>},
      {"Greater", map_binary<greater>},
      {"GreaterOrEqual", map_binary<greater_equal>},
      {"Max", map_variadic<0>},
      {"Min", map_variadic<1>},
      {"Sum", map_variadic<2>},
      {"Mean", map_variadic<3>},
      {"Sqrt", map_unary<sqrt, true>},
      {"Exp", map_unary<exp, true>},
      {"Log", map_unary<log, true>},
      {"Neg", map_unary<neg, false>},
      {"Abs", map_unary<abs, false>},
      {"Relu", map_unary<relu_any, true>},
      {"Sigmoid", map_unary<sigmoid_any, true>},
      {"Tanh", map_unary<tanh_any, true>},
      {"Reciprocal", map_unary<reciprocal, true>},
      {"Softsign", map_unary<softsign, true>},
      {"Softplus", map_unary<softplus, true>},
      {"LeakyRelu", map_leaky_relu},
      {"HardSigmoid", map_hard_sigmoid},
      {"HardSwish", map_hard_swish},
      {"Elu", map_elu},
      {"Selu", map_selu},
      {"PRelu", map_prelu},
      {"Clip", map_clip},
      {"Softmax", map_softmax<false>},
      {"LogSoftmax", map_softmax<true>},
      {"Where", map_where},
      {"Not", map_not},
      {"Cast", map_cast},
      {"Identity", map_identity},
      {"Dropout", map_dropout},
      {"And", map_logic<logical_and>},
      {"Or", map_logic<logical_or>},
      {"Xor", map_logic<not_equal>},
      {"IsNaN", map_is_nan},
      {"IsInf", map_is_inf},
      {"Sign", map_sign},
      {"ArgMin", map_arg_min},
      {"Celu", map_celu},
      {"ThresholdedRelu", map_thresholded_relu},
      {"Shrink", map_shrink},
  };
}

}  // namespace kiln::onnx_import
