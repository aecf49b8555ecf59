// ONNX ops onto kiln ops: elementwise, activations, reductions, shape and constant ops.
// (Convolution, pooling, normalization and resampling: import_nn_ops.cc.)
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

namespace {

// Larger dims are refused before anything multiplies them (no overflow, no huge allocation).
constexpr int64_t kMaxDim = int64_t{1} << 31;

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

// ---- elementwise -----------------------------------------------------------------------------

// Before opset 7 binary ops broadcast only with broadcast=1 and an axis: refused.
void refuse_legacy_broadcast(NodeCtx& c) {
  if (c.has_attr("broadcast") || c.has_attr("axis")) c.fail("legacy broadcast attributes are not supported");
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
  c.set_out(0, OValue{hard_sigmoid(x.t, c.attr_float("alpha", 0.2), c.attr_float("beta", 0.5)),
                      x.perm});
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
  Tensor neg_part = mul(sub(exp(minimum(t, scalar_of(0, t))), scalar_of(1, t)), scalar_of(alpha, t));
  c.set_out(0, OValue{where(greater(t, scalar_of(0, t)), t, neg_part), x.perm});
}

void map_selu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& x = c.value(0);
  require_float(c, x.t);
  const double alpha = c.attr_float("alpha", 1.67326319217681884765625);
  const double gamma = c.attr_float("gamma", 1.05070102214813232421875);
  const Tensor& t = x.t;
  Tensor neg_part = mul(sub(exp(minimum(t, scalar_of(0, t))), scalar_of(1, t)), scalar_of(alpha, t));
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
  if (u_inner) c.fail("a symbolic dim at or after axis " + std::to_string(axis) + " is not supported");
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
  if (c.opset() < 7 && c.attr_int("is_test", 0) == 0) c.fail("is_test=0 (training) is not supported");
  c.set_out(0, c.value(0));
  if (c.num_outputs() > 1 && !c.node().output(1).empty()) {
    // Inference keeps every element: the mask is all true.
    c.set_out(1, ops::broadcast_like(scalar(1, boolean), c.in(0)));
  }
}

// ---- constants and shapes --------------------------------------------------------------------

void map_constant(NodeCtx& c) {
  require_input_count(c, 0, 0);
  Tensor t;
  if (const onnx::TensorProto* p = c.attr_tensor("value")) {
    c.charge(0, float32);
    t = tensor_from_proto(*p, c.where());
  } else if (c.has_attr("value_float")) {
    t = scalar(c.attr_float("value_float", 0), float32);
  } else if (c.has_attr("value_int")) {
    t = scalar(static_cast<double>(c.attr_int("value_int", 0)), int64);
  } else if (c.has_attr("value_floats")) {
    std::vector<double> v = c.attr_floats("value_floats");
    t = cast(from_vector<double>(v), float32);
  } else if (c.has_attr("value_ints")) {
    t = from_vector<int64_t>(c.attr_ints("value_ints"));
  } else {
    c.fail("only value, value_float(s) and value_int(s) are supported");
  }
  c.set_out(0, t);
}

void map_shape(NodeCtx& c) {
  require_input_count(c, 1, 1);
  const Shape s = c.traced_shape(0);
  const int r = s.rank();
  auto clamp = [&](int64_t v) {
    v = v < 0 ? v + r : v;
    return std::clamp<int64_t>(v, 0, r);
  };
  const int64_t start = clamp(c.attr_int("start", 0)), end = clamp(c.attr_int("end", r));
  std::vector<int64_t> dims;
  for (int64_t d = start; d < end; ++d) dims.push_back(s[static_cast<int>(d)]);
  c.set_out(0, from_vector<int64_t>(dims));
}

void map_size(NodeCtx& c) {
  require_input_count(c, 1, 1);
  c.set_out(0, scalar(static_cast<double>(c.traced_shape(0).numel()), int64));
}

void map_reshape(NodeCtx& c) {
  require_input_count(c, 2, 2);
  Tensor x = c.in(0);
  const std::vector<int64_t> want = c.ints_in(1, "shape", /*allow_tainted=*/true);
  const bool allow_zero = c.attr_int("allowzero", 0) != 0;
  if (want.size() > static_cast<size_t>(Shape::kMaxRank)) c.fail("the shape has too many dims");
  Shape target;
  int infer_at = -1;
  int64_t known = 1;
  for (size_t d = 0; d < want.size(); ++d) {
    int64_t v = want[d];
    if (v > kMaxDim) c.fail("shape dim " + std::to_string(v) + " is too large");
    if (v == 0 && !allow_zero) {
      if (d >= static_cast<size_t>(x.rank())) c.fail("shape dim 0 copies a dim the input lacks");
      v = x.shape()[static_cast<int>(d)];
    }
    if (v == -1) {
      if (infer_at >= 0) c.fail("the shape has more than one -1");
      infer_at = static_cast<int>(d);
      v = 1;
    } else if (v < 0) {
      c.fail("shape dim " + std::to_string(v) + " is negative");
    } else if (__builtin_mul_overflow(known, v, &known)) {
      c.fail("the shape holds too many elements");
    }
    target.push_back(v);
  }
  if (infer_at >= 0) {
    if (known == 0 || x.numel() % known != 0) {
      c.fail("cannot reshape " + to_string(x.shape()) + " with a -1 dim beside " +
             std::to_string(known) + " elements");
    }
    target[infer_at] = x.numel() / known;
  }
  if (target.numel() != x.numel()) {
    c.fail("cannot reshape " + to_string(x.shape()) + " to " + to_string(target));
  }
  c.set_out(0, reshape_to(c, x, target, c.unknown_out_dims(0, target)));
}

void map_flatten(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  const int r = x.rank();
  int64_t axis = c.attr_int("axis", 1);
  if (axis < -r || axis > r) c.fail("axis " + std::to_string(axis) + " is out of range");
  if (axis < 0) axis += r;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < r; ++d) (d < axis ? outer : inner) *= x.shape()[d];
  const Shape target{outer, inner};
  c.set_out(0, reshape_to(c, x, target, c.unknown_out_dims(0, target)));
}

std::vector<int64_t> axes_of(NodeCtx& c, int input, int since_opset) {
  if (c.opset() >= since_opset) {
    if (c.has_attr("axes")) c.fail("takes axes as an input since opset " + std::to_string(since_opset));
    return c.has_input(input) ? c.ints_in(input, "axes") : std::vector<int64_t>{};
  }
  return c.attr_ints("axes");
}

void map_squeeze(NodeCtx& c) {
  require_input_count(c, 1, 2);
  Tensor x = c.in(0);
  const int r = x.rank();
  std::vector<int64_t> axes = axes_of(c, 1, 13);
  std::vector<bool> drop(r, axes.empty());
  const std::vector<bool> u = c.unknown_dims(0);
  if (axes.empty()) {
    for (int d = 0; d < r; ++d) {
      drop[d] = x.shape()[d] == 1 && !u[d];
    }
  }
  for (int64_t a : axes) {
    const int d = normalize_axis(c, a, r);
    if (x.shape()[d] != 1 || u[d]) c.fail("cannot squeeze dim " + std::to_string(d) + " of " + to_string(x.shape()));
    drop[d] = true;
  }
  Shape target;
  std::vector<bool> unknown;
  for (int d = 0; d < r; ++d) {
    if (drop[d]) continue;
    target.push_back(x.shape()[d]);
    unknown.push_back(u[d]);
  }
  c.set_out(0, reshape_to(c, x, target, unknown));
}

void map_unsqueeze(NodeCtx& c) {
  require_input_count(c, 1, 2);
  Tensor x = c.in(0);
  const std::vector<int64_t> axes = axes_of(c, 1, 13);
  if (axes.empty()) c.fail("axes are required");
  const int out_rank = x.rank() + static_cast<int>(axes.size());
  if (out_rank > Shape::kMaxRank) c.fail("the result would have more than 8 dims");
  std::vector<bool> inserted(out_rank, false);
  for (int64_t a : axes) {
    const int d = normalize_axis(c, a, out_rank);
    if (inserted[d]) c.fail("axis " + std::to_string(a) + " is given twice");
    inserted[d] = true;
  }
  const std::vector<bool> u = c.unknown_dims(0);
  Shape target;
  std::vector<bool> unknown;
  int src = 0;
  for (int d = 0; d < out_rank; ++d) {
    if (inserted[d]) {
      target.push_back(1);
      unknown.push_back(false);
    } else {
      target.push_back(x.shape()[src]);
      unknown.push_back(u[src]);
      ++src;
    }
  }
  c.set_out(0, reshape_to(c, x, target, unknown));
}

void map_transpose(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  if (v.tainted && !c.folding()) c.in(0);
  const int r = v.t.rank();
  std::vector<int64_t> perm = c.attr_ints("perm");
  if (perm.empty()) {
    for (int d = r - 1; d >= 0; --d) perm.push_back(d);
  }
  if (static_cast<int>(perm.size()) != r) c.fail("perm must list every dim");
  std::vector<bool> seen(r, false);
  std::vector<int> q;
  for (int64_t p : perm) {
    if (p < 0 || p >= r || seen[p]) c.fail("perm is not a permutation");
    seen[p] = true;
    q.push_back(static_cast<int>(p));
  }
  // Nothing moves: the result is the held tensor under a new layout, composed with the held
  // one, so a Transpose next to a conv (NCHW -> NHWC and back) cancels, and one that does not
  // is done once where a value is read in the ONNX layout.
  std::vector<int> composed(r);
  const std::vector<int> inv = v.perm.empty() ? std::vector<int>() : inverse_perm(v.perm);
  bool identity = true;
  for (int i = 0; i < r; ++i) {
    composed[i] = inv.empty() ? q[i] : inv[q[i]];
    identity = identity && composed[i] == i;
  }
  c.set_out(0, OValue{v.t, identity ? std::vector<int>() : inverse_perm(composed)});
}

void map_concat(NodeCtx& c) {
  if (c.num_inputs() < 1) c.fail("needs at least one input");
  if (!c.has_attr("axis")) c.fail("attribute 'axis' is required");
  OValue& first = c.value(0);
  const int r = first.t.rank();
  const int axis = normalize_axis(c, c.attr_int("axis", 0), r);
  bool same_layout = !first.perm.empty();
  for (int k = 0; k < c.num_inputs(); ++k) {
    OValue& v = c.value(k);
    if (v.tainted && !c.folding()) c.in(k);
    same_layout = same_layout && v.perm == first.perm;
  }
  std::vector<Tensor> xs;
  if (same_layout) {
    for (int k = 0; k < c.num_inputs(); ++k) xs.push_back(c.value(k).t);
    c.set_out(0, OValue{concat(xs, inverse_perm(first.perm)[axis]), first.perm});
    return;
  }
  for (int k = 0; k < c.num_inputs(); ++k) xs.push_back(c.in(k));
  c.set_out(0, concat(xs, axis));
}

void map_slice(NodeCtx& c) {
  Tensor x = c.in(0);
  const int r = x.rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (c.opset() < 10) {
    require_input_count(c, 1, 1);
    starts = c.attr_ints("starts");
    ends = c.attr_ints("ends");
    axes = c.attr_ints("axes");
  } else {
    require_input_count(c, 3, 5);
    starts = c.ints_in(1, "starts");
    ends = c.ints_in(2, "ends");
    if (c.has_input(3)) axes = c.ints_in(3, "axes");
    if (c.has_input(4)) steps = c.ints_in(4, "steps");
  }
  if (starts.size() != ends.size() || (!axes.empty() && axes.size() != starts.size()) ||
      (!steps.empty() && steps.size() != starts.size())) {
    c.fail("starts, ends, axes and steps must be equally long");
  }
  std::vector<int64_t> b(r, 0), e(r, std::numeric_limits<int64_t>::max()), s(r, 1);
  std::vector<bool> seen(r, false);
  const std::vector<bool> u = c.unknown_dims(0);
  std::vector<int> reversed;
  for (size_t k = 0; k < starts.size(); ++k) {
    const int d = normalize_axis(c, axes.empty() ? static_cast<int64_t>(k) : axes[k], r);
    if (seen[d]) c.fail("axis " + std::to_string(d) + " is sliced twice");
    seen[d] = true;
    const int64_t step = steps.empty() ? 1 : steps[k];
    if (step == 0) c.fail("a step is 0");
    if (step > 0) {
      b[d] = starts[k];
      e[d] = ends[k];
      s[d] = step;
      continue;
    }
    // A negative step: the indices it picks, gathered (the dim must be known).
    if (u[d]) c.fail("a negative step on a symbolic dim is not supported");
    reversed.push_back(d);
    const int64_t n = x.shape()[d];
    int64_t st = starts[k] < 0 ? starts[k] + n : starts[k];
    int64_t en = ends[k] < 0 ? ends[k] + n : ends[k];
    if (ends[k] < -n) en = -1;
    st = std::clamp<int64_t>(st, -1, n - 1);
    en = std::clamp<int64_t>(en, -1, n - 1);
    const int64_t count = st > en ? (st - en - 1) / -step + 1 : 0;
    c.charge(count, int64);
    std::vector<int64_t> idx;
    for (int64_t i = st; i > en; i += step) idx.push_back(i);
    b[d] = 0;  // the gather below picks along d
    s[d] = 1;
    x = gather(x, from_vector<int64_t>(idx), d);
  }
  c.set_out(0, slice(x, b, e, s));
}

void map_gather(NodeCtx& c) {
  require_input_count(c, 2, 2);
  Tensor x = c.in(0);
  const int axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  OValue& iv = c.value(1);
  Tensor idx = c.in(1);
  if (idx.dtype() != int64 && idx.dtype() != int32) c.fail("indices must be int32 or int64");
  const int64_t n = x.shape()[axis];
  const bool n_unknown = c.unknown_dims(0)[axis];
  if (!is_symbolic(iv.t)) {
    std::vector<int64_t> v = c.ints_in(1, "indices");
    bool negative = false;
    for (int64_t& i : v) {
      if (i < -n || i >= n) {
        if (!n_unknown) c.fail("index " + std::to_string(i) + " is out of range for dim " + std::to_string(n));
      }
      negative = negative || i < 0;
      if (i < 0) i += n;
    }
    if (negative && n_unknown) c.fail("negative indices into a symbolic dim are not supported");
    if (negative) idx = from_vector<int64_t>(v, idx.shape());
  } else {
    if (n_unknown) c.fail("run-time indices into a symbolic dim are not supported");
    idx = where(less(idx, scalar_of(0, idx)), add(idx, scalar_of(static_cast<double>(n), idx)), idx);
  }
  c.set_out(0, gather(x, idx, axis));
}

void map_expand(NodeCtx& c) {
  require_input_count(c, 2, 2);
  Tensor x = c.in(0);
  const std::vector<int64_t> want = c.ints_in(1, "shape");
  const int r = std::max<int>(x.rank(), static_cast<int>(want.size()));
  if (r > Shape::kMaxRank) c.fail("the result has too many dims");
  Shape target;
  for (int d = 0; d < r; ++d) {
    const int dx = d - (r - x.rank()), dw = d - (r - static_cast<int>(want.size()));
    const int64_t a = dx >= 0 ? x.shape()[dx] : 1, b = dw >= 0 ? want[dw] : 1;
    if (b < 0 || b > kMaxDim) c.fail("shape dim " + std::to_string(b) + " is out of range");
    if (a != b && a != 1 && b != 1) c.fail("cannot expand " + to_string(x.shape()));
    target.push_back(a == 1 ? b : a);
  }
  for (bool u : c.unknown_out_dims(0, target)) {
    if (u) c.fail("expanding to a symbolic dim is not supported");
  }
  for (bool u : c.unknown_dims(0)) {
    if (u) c.fail("expanding a tensor with a symbolic dim is not supported");
  }
  c.charge(0, float32);
  c.set_out(0, broadcast_to(x, target));
}

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
    case 0: y = sum(x, ax, keepdims); break;
    case 1: y = mean(x, ax, keepdims); break;
    case 2: y = max(x, ax, keepdims); break;
    case 3: y = neg(max(neg(x), ax, keepdims)); break;
    case 4: y = sum(mul(x, x), ax, keepdims); break;
    case 5: y = sum(abs(x), ax, keepdims); break;
    case 6: y = sqrt(sum(mul(x, x), ax, keepdims)); break;
    case 7: y = log(sum(x, ax, keepdims)); break;
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


// ---- logic and tests ----------------------------------------------------------------------

Tensor logical_and(const Tensor& a, const Tensor& b) { return where(a, b, scalar(0, boolean)); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return where(a, scalar(1, boolean), b); }

template <BinaryFn F>
void map_logic(NodeCtx& c) {
  require_input_count(c, 2, 2);
  if (c.value(0).t.dtype() != boolean || c.value(1).t.dtype() != boolean) c.fail("inputs must be bool");
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
  const bool pos = c.attr_int("detect_positive", 1) != 0, neg_ = c.attr_int("detect_negative", 1) != 0;
  Tensor y = pos && neg_ ? equal(abs(x), scalar_of(inf, x))
             : pos        ? equal(x, scalar_of(inf, x))
             : neg_       ? equal(x, scalar_of(-inf, x))
                          : not_equal(x, x) ;
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
  Tensor negative = mul(sub(exp(div(minimum(x, scalar_of(0, x)), scalar_of(alpha, x))), scalar_of(1, x)),
                        scalar_of(alpha, x));
  c.set_out(0, OValue{add(relu(x), negative), v.perm});
}

void map_thresholded_relu(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  require_float(c, v.t);
  const Tensor& x = v.t;
  c.set_out(0, OValue{where(greater(x, scalar_of(c.attr_float("alpha", 1.0), x)), x, scalar_of(0, x)),
                      v.perm});
}

void map_shrink(NodeCtx& c) {
  require_input_count(c, 1, 1);
  OValue& v = c.value(0);
  require_float(c, v.t);
  const double bias = c.attr_float("bias", 0.0), lambd = c.attr_float("lambd", 0.5);
  const Tensor& x = v.t;
  Tensor y = where(less(x, scalar_of(-lambd, x)), add(x, scalar_of(bias, x)),
                   where(greater(x, scalar_of(lambd, x)), sub(x, scalar_of(bias, x)), scalar_of(0, x)));
  c.set_out(0, OValue{y, v.perm});
}

// ---- generators and copies ------------------------------------------------------------------

void map_constant_of_shape(NodeCtx& c) {
  require_input_count(c, 1, 1);
  const std::vector<int64_t> dims = c.ints_in(0, "shape");
  if (dims.size() > static_cast<size_t>(Shape::kMaxRank)) c.fail("the shape has too many dims");
  Shape s;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || d > kMaxDim || __builtin_mul_overflow(n, d, &n)) c.fail("the shape is out of range");
    s.push_back(d);
  }
  Tensor value = scalar(0, float32);
  if (const onnx::TensorProto* p = c.attr_tensor("value")) {
    value = tensor_from_proto(*p, c.where());
    if (value.numel() != 1) c.fail("value must hold one element");
  }
  c.charge(n, value.dtype());
  graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
  c.set_out(0, broadcast_to(reshape(value, Shape{}), s).clone());
}

void map_range(NodeCtx& c) {
  require_input_count(c, 3, 3);
  const std::vector<double> v{c.floats_in(0, "start")[0], c.floats_in(1, "limit")[0],
                              c.floats_in(2, "delta")[0]};
  const DType dtype = c.value(0).t.dtype();
  if (v[2] == 0 || !std::isfinite(v[0]) || !std::isfinite(v[1]) || !std::isfinite(v[2])) {
    c.fail("delta must be non-zero and the bounds finite");
  }
  const double count = std::max(std::ceil((v[1] - v[0]) / v[2]), 0.0);
  if (count > double(kMaxDim)) c.fail("the range is too long");
  c.charge(static_cast<int64_t>(count), dtype);
  std::vector<double> values(static_cast<size_t>(count));
  for (size_t i = 0; i < values.size(); ++i) values[i] = v[0] + v[2] * static_cast<double>(i);
  graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
  c.set_out(0, cast(from_vector<double>(values), dtype));
}

void map_tile(NodeCtx& c) {
  require_input_count(c, 2, 2);
  Tensor x = c.in(0);
  const std::vector<int64_t> repeats = c.ints_in(1, "repeats");
  if (static_cast<int>(repeats.size()) != x.rank()) c.fail("repeats must hold one value per dim");
  const std::vector<bool> u = c.unknown_dims(0);
  for (int d = 0; d < x.rank(); ++d) {
    if (repeats[d] < 0 || repeats[d] > kMaxDim) c.fail("repeats must be in [0, 2^31]");
    if (repeats[d] == 1) continue;
    if (u[d]) c.fail("tiling a symbolic dim is not supported");
    const int64_t n = x.shape()[d];
    int64_t total = 0;
    if (__builtin_mul_overflow(n, repeats[d], &total)) c.fail("the result is too large");
    c.charge(total, int64);
    std::vector<int64_t> idx(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) idx[i] = i % n;
    x = gather(x, from_vector<int64_t>(idx), d);
  }
  c.set_out(0, x);
}

void map_split(NodeCtx& c) {
  require_input_count(c, 1, 2);
  Tensor x = c.in(0);
  const int axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  if (c.unknown_dims(0)[axis]) c.fail("splitting a symbolic dim is not supported");
  std::vector<int64_t> parts;
  if (c.opset() >= 13) {
    if (c.has_input(1)) parts = c.ints_in(1, "split");
  } else {
    parts = c.attr_ints("split");
  }
  const int64_t n = x.shape()[axis];
  const int outs = c.num_outputs();
  if (outs < 1) c.fail("needs at least one output");
  if (parts.empty()) {
    if (n % outs != 0) c.fail("dim " + std::to_string(n) + " does not split into " + std::to_string(outs) + " equal parts");
    parts.assign(outs, n / outs);
  }
  if (static_cast<int>(parts.size()) != outs) c.fail("split must hold one length per output");
  int64_t at = 0;
  for (int k = 0; k < outs; ++k) {
    if (parts[k] < 0 || parts[k] > n - at) c.fail("the split lengths do not add up to the dim");
    std::vector<int64_t> b(x.rank(), 0), e(x.rank(), std::numeric_limits<int64_t>::max());
    b[axis] = at;
    e[axis] = at + parts[k];
    c.set_out(k, slice(x, b, e));
    at += parts[k];
  }
  if (at != n) c.fail("the split lengths do not add up to the dim");
}

// DepthToSpace / SpaceToDepth: a reshape, a transpose and a reshape.
template <bool ToSpace>
void map_depth_space(NodeCtx& c) {
  require_input_count(c, 1, 1);
  Tensor x = c.in(0);
  if (x.rank() != 4) c.fail("the input must be NCHW");
  const int64_t b = c.attr_int("blocksize", 0);
  if (b < 1 || b > (int64_t{1} << 16)) c.fail("blocksize must be >= 1");
  const std::vector<bool> u = c.unknown_dims(0);
  if (u[1] || u[2] || u[3]) c.fail("symbolic channel or spatial dims are not supported");
  const int64_t n = x.shape()[0], ch = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const std::vector<bool> first{u[0], false, false, false, false, false};
  Tensor y;
  if (ToSpace) {
    if (ch % (b * b) != 0) c.fail("channels must be a multiple of blocksize^2");
    const bool crd = c.attr_string("mode", "DCR") == "CRD";
    if (!crd && c.attr_string("mode", "DCR") != "DCR") c.fail("mode must be DCR or CRD");
    const int64_t co = ch / (b * b);
    y = crd ? transpose(reshape_to(c, x, Shape{n, co, b, b, h, w}, first), {0, 1, 4, 2, 5, 3})
            : transpose(reshape_to(c, x, Shape{n, b, b, co, h, w}, first), {0, 3, 4, 1, 5, 2});
    y = reshape_to(c, y, Shape{n, co, h * b, w * b}, {u[0], false, false, false});
  } else {
    if (h % b != 0 || w % b != 0) c.fail("height and width must be multiples of blocksize");
    y = transpose(reshape_to(c, x, Shape{n, ch, h / b, b, w / b, b}, first), {0, 3, 5, 1, 2, 4});
    y = reshape_to(c, y, Shape{n, ch * b * b, h / b, w / b}, {u[0], false, false, false});
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
  if (scale.numel() != x.shape()[1] || bias.numel() != x.shape()[1]) c.fail("scale and B must be [C]");
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
  Tensor inv_std = div(scalar_of(1, x), sqrt(add(mean(mul(centered, centered), axes, true), scalar_of(eps, x))));
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

std::vector<Mapping> basic_mappings() {
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
      {"Constant", map_constant},
      {"Shape", map_shape},
      {"Size", map_size},
      {"Reshape", map_reshape},
      {"Flatten", map_flatten},
      {"Squeeze", map_squeeze},
      {"Unsqueeze", map_unsqueeze},
      {"Transpose", map_transpose},
      {"Concat", map_concat},
      {"Slice", map_slice},
      {"Gather", map_gather},
      {"Expand", map_expand},
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
      {"ConstantOfShape", map_constant_of_shape},
      {"Range", map_range},
      {"Tile", map_tile},
      {"Split", map_split},
      {"DepthToSpace", map_depth_space<true>},
      {"SpaceToDepth", map_depth_space<false>},
      {"InstanceNormalization", map_instance_norm},
      {"LayerNormalization", map_layer_norm},
      {"MeanVarianceNormalization", map_mean_variance_norm},
  };
}

}  // namespace kiln::onnx_import
