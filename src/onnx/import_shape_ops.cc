// ONNX ops onto kiln ops: constants, shapes and the ops that move data without computing
// (Reshape, Transpose, Concat, Slice, Gather, Tile, Split, DepthToSpace ...).
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
    if (c.has_attr("axes"))
      c.fail("takes axes as an input since opset " + std::to_string(since_opset));
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
    if (x.shape()[d] != 1 || u[d])
      c.fail("cannot squeeze dim " + std::to_string(d) + " of " + to_string(x.shape()));
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
        if (!n_unknown)
          c.fail("index " + std::to_string(i) + " is out of range for dim " + std::to_string(n));
      }
      negative = negative || i < 0;
      if (i < 0) i += n;
    }
    if (negative && n_unknown) c.fail("negative indices into a symbolic dim are not supported");
    if (negative) idx = from_vector<int64_t>(v, idx.shape());
  } else {
    if (n_unknown) c.fail("run-time indices into a symbolic dim are not supported");
    idx =
        where(less(idx, scalar_of(0, idx)), add(idx, scalar_of(static_cast<double>(n), idx)), idx);
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

// ---- generators and copies ------------------------------------------------------------------

void map_constant_of_shape(NodeCtx& c) {
  require_input_count(c, 1, 1);
  const std::vector<int64_t> dims = c.ints_in(0, "shape");
  if (dims.size() > static_cast<size_t>(Shape::kMaxRank)) c.fail("the shape has too many dims");
  Shape s;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || d > kMaxDim || __builtin_mul_overflow(n, d, &n))
      c.fail("the shape is out of range");
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
    if (n % outs != 0)
      c.fail("dim " + std::to_string(n) + " does not split into " + std::to_string(outs) +
             " equal parts");
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

}  // namespace

std::vector<Mapping> shape_mappings() {
  return {
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
      {"ConstantOfShape", map_constant_of_shape},
      {"Range", map_range},
      {"Tile", map_tile},
      {"Split", map_split},
      {"DepthToSpace", map_depth_space<true>},
      {"SpaceToDepth", map_depth_space<false>},
  };
}

}  // namespace kiln::onnx_import
