// export_onnx: a frozen kiln graph -> an ONNX ModelProto, node by node onto ONNX ops.
//
// Layout: kiln's images are NHWC, ONNX's Conv and pooling ops NCHW. Each value may have an ONNX
// name in kiln's layout ("plain") and one as NCHW (rank 4 only); conv and pool read and write
// NCHW, layout-free ops (elementwise, softmax, concat, reductions) stay in whichever layout their
// inputs have, and every other op reads plain values. A missing form is made on first use: a
// constant is converted when the file is written, a computed value gets one Transpose. So an
// NHWC -> NCHW Transpose appears only where a plain value meets a conv or pool, and NCHW -> NHWC
// only where NHWC order is visible (a reshape such as Flatten, an output).
#include <onnx/onnx_pb.h>  // defines ONNX_API, then includes onnx-ml.pb.h (ONNX_ML)

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/onnx.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using graph::Graph;
using graph::Node;
using graph::ValueKind;

constexpr int kMinOpset = 13, kMaxOpset = 17;
// Where each kiln (NHWC) axis sits in NCHW; also the Transpose perm from NCHW to NHWC.
constexpr int kAxisInNchw[4] = {0, 2, 3, 1};
constexpr int kNhwcToNchw[4] = {0, 3, 1, 2};
constexpr int kHwioToOihw[4] = {3, 2, 0, 1};

int32_t onnx_type(DType t) {
  switch (t) {
    case DType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DType::kFloat64:
      return onnx::TensorProto::DOUBLE;
    case DType::kInt32:
      return onnx::TensorProto::INT32;
    case DType::kInt64:
      return onnx::TensorProto::INT64;
    case DType::kInt8:
      return onnx::TensorProto::INT8;
    case DType::kUInt8:
      return onnx::TensorProto::UINT8;
    case DType::kBool:
      return onnx::TensorProto::BOOL;
  }
  throw ValueError("export_onnx: unknown dtype");
}

// `bytes` (row-major, elements of `elem` bytes, shape `dims`) with its axes permuted: result
// axis i is input axis perm[i].
std::string permute_bytes(const char* bytes, const std::vector<int64_t>& dims,
                          const std::vector<int>& perm, size_t elem) {
  const int r = static_cast<int>(dims.size());
  std::vector<int64_t> in_strides(r, 1), out_dims(r), idx(r, 0);
  for (int d = r - 2; d >= 0; --d) in_strides[d] = in_strides[d + 1] * dims[d + 1];
  int64_t n = 1;
  for (int d = 0; d < r; ++d) out_dims[d] = dims[perm[d]], n *= dims[d];
  std::string out(static_cast<size_t>(n) * elem, '\0');
  for (int64_t k = 0; k < n; ++k) {
    int64_t src = 0;
    for (int d = 0; d < r; ++d) src += idx[d] * in_strides[perm[d]];
    std::memcpy(out.data() + k * elem, bytes + src * elem, elem);
    for (int d = r - 1; d >= 0 && ++idx[d] == out_dims[d]; --d) idx[d] = 0;
  }
  return out;
}

class Exporter {
 public:
  Exporter(const GraphModel& model, int opset, onnx::GraphProto* gp)
      : g_(model.graph()), model_(model), opset_(opset), gp_(gp) {
    const size_t nv = g_.values.size();
    plain_.resize(nv), nchw_.resize(nv), readers_.resize(nv), port_of_.resize(nv);
    absorbed_.assign(g_.nodes.size(), false);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (int32_t v : g_.nodes[i].inputs) readers_[v].push_back(static_cast<int>(i));
    }
    for (const GraphPort& p : model.inputs()) used_.insert(p.name);
    for (const GraphPort& p : model.outputs()) used_.insert(p.name);
    for (size_t k = 0; k < g_.outputs.size(); ++k) {
      std::string& port = port_of_[g_.outputs[k]];
      if (port.empty()) port = model.outputs()[k].name;  // named by its producer
    }
    for (const GraphPort& p : model.outputs()) {
      for (const GraphPort& q : model.inputs()) {
        if (p.name == q.name) {
          throw ValueError("export_onnx: '" + p.name + "' names both an input and an output");
        }
      }
    }
    // Explicit pads need the spatial sizes, known when only batch dims are unknown.
    for (const GraphPort& p : model.inputs()) {
      for (size_t d = 1; d < p.spec.dims.size(); ++d) spatial_known_ &= p.spec.dims[d] >= 0;
    }
  }

  void run() {
    for (size_t k = 0; k < g_.inputs.size(); ++k) {
      const GraphPort& p = model_.inputs()[k];
      add_port(gp_->add_input(), p);
      plain_[g_.inputs[k]] = p.name;
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (!absorbed_[i]) emit(static_cast<int>(i));
    }
    for (size_t k = 0; k < g_.outputs.size(); ++k) {
      const GraphPort& p = model_.outputs()[k];
      const std::string name = plain(g_.outputs[k]);
      if (name != p.name) node("Identity", {name}, {p.name});
      add_port(gp_->add_output(), p);
    }
  }

 private:
  // ---- names, nodes, initializers ----------------------------------------------------------

  std::string unique(const std::string& base) {
    std::string name = base;
    for (int k = 1; !used_.insert(name).second; ++k) name = base + "_" + std::to_string(k);
    return name;
  }

  // The name a node gives value v in kiln's layout: its output port's when it is one.
  std::string plain_target(int v) {
    if (!port_of_[v].empty()) {
      std::string p = port_of_[v];
      port_of_[v].clear();  // claimed once; later uses get an Identity
      return p;
    }
    return unique("v" + std::to_string(v));
  }

  onnx::NodeProto* node(const char* type, const std::vector<std::string>& in,
                        const std::vector<std::string>& out) {
    onnx::NodeProto* n = gp_->add_node();
    n->set_op_type(type);
    n->set_name(unique(std::string(type) + "_" + std::to_string(gp_->node_size())));
    for (const std::string& s : in) n->add_input(s);
    for (const std::string& s : out) n->add_output(s);
    return n;
  }

  static void attr_int(onnx::NodeProto* n, const char* name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_float(onnx::NodeProto* n, const char* name, double v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void attr_ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  std::string initializer(const std::string& base, DType dt, const std::vector<int64_t>& dims,
                          std::string bytes) {
    onnx::TensorProto* t = gp_->add_initializer();
    const std::string name = unique(base);
    t->set_name(name);
    t->set_data_type(onnx_type(dt));
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::move(bytes));
    return name;
  }
  std::string const_i64(const std::vector<int64_t>& v, const std::string& base) {
    return initializer(base, DType::kInt64, {static_cast<int64_t>(v.size())},
                       std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8));
  }
  // A rank-0 constant of dtype dt (floating or integer) holding `value`.
  std::string const_scalar(double value, DType dt) {
    std::string b;
    auto put = [&](auto x) { b.assign(reinterpret_cast<const char*>(&x), sizeof x); };
    switch (dt) {
      case DType::kFloat32:
        put(static_cast<float>(value));
        break;
      case DType::kFloat64:
        put(value);
        break;
      case DType::kInt32:
        put(static_cast<int32_t>(value));
        break;
      case DType::kInt64:
        put(static_cast<int64_t>(value));
        break;
      case DType::kInt8:
        put(static_cast<int8_t>(value));
        break;
      case DType::kUInt8:
        put(static_cast<uint8_t>(value));
        break;
      case DType::kBool:
        put(static_cast<uint8_t>(value != 0));
        break;
    }
    return initializer("scalar", dt, {}, std::move(b));
  }

  void add_port(onnx::ValueInfoProto* vi, const GraphPort& p) {
    vi->set_name(p.name);
    onnx::TypeProto_Tensor* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx_type(p.spec.dtype));
    onnx::TensorShapeProto* shape = tt->mutable_shape();
    for (size_t d = 0; d < p.spec.dims.size(); ++d) {
      onnx::TensorShapeProto_Dimension* dim = shape->add_dim();
      if (p.spec.dims[d] >= 0) {
        dim->set_dim_value(p.spec.dims[d]);
      } else {
        dim->set_dim_param(d == 0 ? "N" : p.name + "_dim" + std::to_string(d));
      }
    }
  }

  // ---- values in either layout -------------------------------------------------------------

  bool is_capture(int v) const {
    return g_.values[v].kind == ValueKind::kConstant || g_.values[v].kind == ValueKind::kVariable;
  }
  const Tensor& data(int v) const { return g_.values[v].captured; }
  const Meta& meta(int v) const { return g_.values[v].meta; }
  int rank(int v) const { return meta(v).shape.rank(); }
  std::vector<int64_t> dims(int v) const { return meta(v).shape.vec(); }
  bool only_nchw(int v) const { return plain_[v].empty() && !nchw_[v].empty(); }
  std::string bytes(int v) const {
    const Tensor& t = data(v);
    return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
  }

  // v's ONNX name in kiln's layout.
  std::string plain(int v) {
    if (!plain_[v].empty()) return plain_[v];
    if (is_capture(v)) {
      plain_[v] = initializer("const_" + std::to_string(v), meta(v).dtype, dims(v), bytes(v));
    } else {
      onnx::NodeProto* n = node("Transpose", {nchw_[v]}, {plain_target(v)});
      attr_ints(n, "perm", {kAxisInNchw, kAxisInNchw + 4});
      plain_[v] = n->output(0);
    }
    return plain_[v];
  }

  // v as NCHW, for an op whose result has rank 4: a constant of lower rank is first padded
  // with leading 1s, as broadcasting would.
  std::string nchw(int v) {
    if (!nchw_[v].empty()) return nchw_[v];
    if (is_capture(v)) {
      std::vector<int64_t> d = dims(v);
      d.insert(d.begin(), 4 - d.size(), 1);
      std::vector<int> perm(kNhwcToNchw, kNhwcToNchw + 4);
      std::vector<int64_t> nd{d[0], d[3], d[1], d[2]};
      nchw_[v] = initializer("const_" + std::to_string(v) + "_nchw", meta(v).dtype, nd,
                             permute_bytes(static_cast<const char*>(data(v).raw_data()), d, perm,
                                           size_of(meta(v).dtype)));
    } else {
      onnx::NodeProto* n =
          node("Transpose", {plain(v)}, {unique("v" + std::to_string(v) + "_nchw")});
      attr_ints(n, "perm", {kNhwcToNchw, kNhwcToNchw + 4});
      nchw_[v] = n->output(0);
    }
    return nchw_[v];
  }

  // Whether an elementwise node computes in NCHW: its result has rank 4, some input exists only
  // as NCHW, and every computed input has rank 4 (constants are converted at export time).
  bool elementwise_in_nchw(const Node& n) const {
    if (rank(n.outputs[0]) != 4) return false;
    bool any = false;
    for (int32_t v : n.inputs) {
      if (is_capture(v)) continue;
      if (rank(v) != 4) return false;
      any |= only_nchw(v);
    }
    return any;
  }

  // Emits an elementwise ONNX op over n's inputs in the layout elementwise_in_nchw picks.
  void elementwise(const Node& n, const char* type) {
    const bool in_nchw = elementwise_in_nchw(n);
    std::vector<std::string> in;
    for (int32_t v : n.inputs) in.push_back(in_nchw ? nchw(v) : plain(v));
    finish(n, node(type, in, {out_name(n, in_nchw)}), in_nchw);
  }

  std::string out_name(const Node& n, bool in_nchw) {
    const int v = n.outputs[0];
    return in_nchw ? unique("v" + std::to_string(v) + "_nchw") : plain_target(v);
  }
  void finish(const Node& n, onnx::NodeProto* p, bool in_nchw) {
    (in_nchw ? nchw_ : plain_)[n.outputs[0]] = p->output(0);
  }

  // ---- the ops -----------------------------------------------------------------------------

  [[noreturn]] void unsupported(int i, const std::string& why) const {
    throw ValueError("export_onnx: op '" + std::string(g_.nodes[i].op->name) + "' (node " +
                     std::to_string(i) + ") has no ONNX mapping" + why);
  }

  void emit(int i);
  void emit_conv(int i);
  void emit_pool(int i, const char* type);
  void emit_matmul(int i);
  void emit_reduce(int i, const char* type);
  void emit_gelu(const Node& n);
  void alias(const Node& n, int32_t from) {
    plain_[n.outputs[0]] = plain_[from];
    nchw_[n.outputs[0]] = nchw_[from];
    if (plain_[from].empty() && nchw_[from].empty()) plain_[n.outputs[0]] = plain(from);
  }

  // The constant bias [C] added to conv/matmul output `v` by its only reader, absorbed: marks
  // the add as done and returns the bias's initializer name; "" when there is none.
  std::string absorb_bias(int v, int64_t channels);
  std::vector<int64_t> same_pads(int x_nhwc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                 int64_t dh, int64_t dw) const;
  void set_padding(onnx::NodeProto* p, bool same, int x, int64_t kh, int64_t kw, int64_t sh,
                   int64_t sw, int64_t dh, int64_t dw) {
    if (!same) return;  // valid: no padding, floor rounding (ONNX's defaults)
    if (spatial_known_) {
      attr_ints(p, "pads", same_pads(x, kh, kw, sh, sw, dh, dw));
    } else {
      onnx::AttributeProto* a = p->add_attribute();  // TensorFlow's same: the odd pixel after
      a->set_name("auto_pad");
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s("SAME_UPPER");
    }
  }

  const Graph& g_;
  const GraphModel& model_;
  const int opset_;
  onnx::GraphProto* gp_;
  std::vector<std::string> plain_, nchw_, port_of_;
  std::vector<std::vector<int>> readers_;
  std::vector<bool> absorbed_;
  std::set<std::string> used_;
  bool spatial_known_ = true;
  std::map<int, std::string> oihw_init_, bias_init_;  // converted constants by value id
  int bias_out_ = -1;  // the add absorb_bias took: its output is the conv's / Gemm's
};

std::vector<int64_t> Exporter::same_pads(int x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                         int64_t dh, int64_t dw) const {
  auto pad = [](int64_t in, int64_t k, int64_t s, int64_t d) {
    const int64_t out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>((out - 1) * s + (k - 1) * d + 1 - in, 0);
    return std::pair<int64_t, int64_t>{total / 2, total - total / 2};
  };
  auto [t, b] = pad(meta(x).shape[1], kh, sh, dh);
  auto [l, r] = pad(meta(x).shape[2], kw, sw, dw);
  return {t, l, b, r};
}

std::string Exporter::absorb_bias(int v, int64_t channels) {
  if (readers_[v].size() != 1 || !port_of_[v].empty()) return "";
  for (int32_t o : g_.outputs) {
    if (o == v) return "";
  }
  const int r = readers_[v][0];
  const Node& add = g_.nodes[r];
  if (add.op != &ops::kAdd) return "";
  const int32_t b = add.inputs[0] == v ? add.inputs[1] : add.inputs[0];
  if (b == v || !is_capture(b) || meta(b).dtype != meta(v).dtype) return "";
  const Shape& bs = meta(b).shape;
  if (bs.rank() == 0 || bs.rank() > rank(v) || bs.numel() != channels || bs.dim(-1) != channels) {
    return "";
  }
  absorbed_[r] = true;
  bias_out_ = add.outputs[0];
  std::string& name = bias_init_[b];  // a shared bias is stored once
  if (name.empty())
    name = initializer("bias_" + std::to_string(b), meta(b).dtype, {channels}, bytes(b));
  return name;
}

void Exporter::emit_conv(int i) {
  const Node& n = g_.nodes[i];
  const Attrs& a = n.attrs;
  const int x = n.inputs[0], f = n.inputs[1];
  const std::vector<int64_t> fd = dims(f);  // [KH, KW, C/groups, O]
  std::string w;
  if (is_capture(f) && !oihw_init_[f].empty()) {
    w = oihw_init_[f];  // a shared filter is stored once
  } else if (is_capture(f)) {
    w = oihw_init_[f] =
        initializer("weight_" + std::to_string(f), meta(f).dtype, {fd[3], fd[2], fd[0], fd[1]},
                    permute_bytes(static_cast<const char*>(data(f).raw_data()), fd,
                                  {kHwioToOihw, kHwioToOihw + 4}, size_of(meta(f).dtype)));
  } else {
    onnx::NodeProto* t = node("Transpose", {plain(f)}, {unique("v" + std::to_string(f) + "_oihw")});
    attr_ints(t, "perm", {kHwioToOihw, kHwioToOihw + 4});
    w = t->output(0);
  }
  std::vector<std::string> in{nchw(x), w};
  bias_out_ = -1;
  const std::string bias = absorb_bias(n.outputs[0], fd[3]);
  if (!bias.empty()) in.push_back(bias);
  const int out = bias_out_ >= 0 ? bias_out_ : n.outputs[0];
  onnx::NodeProto* p = node("Conv", in, {unique("v" + std::to_string(out) + "_nchw")});
  attr_ints(p, "kernel_shape", {fd[0], fd[1]});
  attr_ints(p, "strides", {a.i(0), a.i(1)});
  attr_ints(p, "dilations", {a.i(3), a.i(4)});
  attr_int(p, "group", a.i(5));
  set_padding(p, a.i(2) == 1, x, fd[0], fd[1], a.i(0), a.i(1), a.i(3), a.i(4));
  nchw_[out] = p->output(0);
  if (out != n.outputs[0]) nchw_[n.outputs[0]] = p->output(0);  // read by nothing else
}

void Exporter::emit_pool(int i, const char* type) {
  const Node& n = g_.nodes[i];
  const Attrs& a = n.attrs;  // pool_h, pool_w, stride_h, stride_w, padding
  onnx::NodeProto* p = node(type, {nchw(n.inputs[0])}, {out_name(n, true)});
  attr_ints(p, "kernel_shape", {a.i(0), a.i(1)});
  attr_ints(p, "strides", {a.i(2), a.i(3)});
  if (n.op == &ops::kAvgPool2D) attr_int(p, "count_include_pad", 0);  // kiln averages in-bounds
  set_padding(p, a.i(4) == 1, n.inputs[0], a.i(0), a.i(1), a.i(2), a.i(3), 1, 1);
  finish(n, p, true);
}

void Exporter::emit_matmul(int i) {
  const Node& n = g_.nodes[i];
  const bool ta = n.attrs.i(0) != 0, tb = n.attrs.i(1) != 0;
  const int a = n.inputs[0], b = n.inputs[1];
  if (rank(a) == 2 && rank(b) == 2) {  // Gemm: transposes are attributes, the bias an input
    std::vector<std::string> in{plain(a), plain(b)};
    bias_out_ = -1;
    const std::string bias = absorb_bias(n.outputs[0], meta(n.outputs[0]).shape[1]);
    if (!bias.empty()) in.push_back(bias);
    const int out = bias_out_ >= 0 ? bias_out_ : n.outputs[0];
    onnx::NodeProto* p = node("Gemm", in, {plain_target(out)});
    if (ta) attr_int(p, "transA", 1);
    if (tb) attr_int(p, "transB", 1);
    plain_[out] = p->output(0);
    if (out != n.outputs[0]) plain_[n.outputs[0]] = p->output(0);
    return;
  }
  auto operand = [&](int v, bool t) {
    if (!t) return plain(v);
    std::vector<int> perm(rank(v));
    for (int d = 0; d < rank(v); ++d) perm[d] = d;
    std::swap(perm[rank(v) - 1], perm[rank(v) - 2]);
    if (is_capture(v)) {
      std::vector<int64_t> d = dims(v), td = d;
      std::swap(td[td.size() - 1], td[td.size() - 2]);
      return initializer("const_" + std::to_string(v) + "_t", meta(v).dtype, td,
                         permute_bytes(static_cast<const char*>(data(v).raw_data()), d, perm,
                                       size_of(meta(v).dtype)));
    }
    onnx::NodeProto* p = node("Transpose", {plain(v)}, {unique("v" + std::to_string(v) + "_t")});
    attr_ints(p, "perm", {perm.begin(), perm.end()});
    return p->output(0);
  };
  finish(n, node("MatMul", {operand(a, ta), operand(b, tb)}, {out_name(n, false)}), false);
}

void Exporter::emit_reduce(int i, const char* type) {
  const Node& n = g_.nodes[i];
  const int x = n.inputs[0], r = rank(x);
  const bool keep = n.attrs.i(0) != 0;
  std::vector<int64_t> axes;
  for (int k = 1; k < n.attrs.num_ints(); ++k) axes.push_back((n.attrs.i(k) % r + r) % r);
  // In NCHW when x is: kept as NCHW (keepdims), or plain when the dims left keep their order
  // (C gone, or both H and W gone: global pooling's [N, C]).
  bool in_nchw = false, out_nchw = false;
  if (r == 4 && only_nchw(x)) {
    if (axes.empty()) axes = {0, 1, 2, 3};  // all: the same in either layout
    auto gone = [&](int d) { return std::find(axes.begin(), axes.end(), d) != axes.end(); };
    const bool order_kept = gone(3) || (gone(1) && gone(2));
    in_nchw = keep || order_kept;
    out_nchw = keep;
    if (in_nchw) {
      for (int64_t& ax : axes) ax = kAxisInNchw[ax];
      std::sort(axes.begin(), axes.end());
    }
  }
  std::vector<std::string> in{in_nchw ? nchw(x) : plain(x)};
  if (n.op == &ops::kSum && !axes.empty()) in.push_back(const_i64(axes, "axes"));  // an input
  onnx::NodeProto* p = node(type, in, {out_name(n, out_nchw)});
  if (n.op != &ops::kSum && !axes.empty()) attr_ints(p, "axes", axes);  // an attribute (< 18)
  attr_int(p, "keepdims", keep ? 1 : 0);
  finish(n, p, out_nchw);
}

// gelu(x) = x/2 (1 + erf(x / sqrt 2)), or with approximate: x/2 (1 + tanh(sqrt(2/pi) (x +
// 0.044715 x^3))) (opset 20 has Gelu; 13..17 need the formula).
void Exporter::emit_gelu(const Node& n) {
  const int x = n.inputs[0];
  const DType dt = meta(x).dtype;
  const bool in_nchw = only_nchw(x);
  const std::string xs = in_nchw ? nchw(x) : plain(x);
  auto tmp = [&] { return unique("gelu_" + std::to_string(x)); };
  std::string inner;
  if (n.attrs.i(0) != 0) {
    const std::string x3 =
        node("Mul", {xs, node("Mul", {xs, xs}, {tmp()})->output(0)}, {tmp()})->output(0);
    const std::string s =
        node("Add", {xs, node("Mul", {x3, const_scalar(0.044715, dt)}, {tmp()})->output(0)},
             {tmp()})
            ->output(0);
    const std::string z =
        node("Mul", {s, const_scalar(0.7978845608028654, dt)}, {tmp()})->output(0);
    inner = node("Tanh", {z}, {tmp()})->output(0);
  } else {
    const std::string z =
        node("Mul", {xs, const_scalar(0.7071067811865476, dt)}, {tmp()})->output(0);
    inner = node("Erf", {z}, {tmp()})->output(0);
  }
  const std::string one_plus = node("Add", {inner, const_scalar(1.0, dt)}, {tmp()})->output(0);
  const std::string half_x = node("Mul", {xs, const_scalar(0.5, dt)}, {tmp()})->output(0);
  finish(n, node("Mul", {half_x, one_plus}, {out_name(n, in_nchw)}), in_nchw);
}

struct SimpleOp {
  const OpDef* op;
  const char* onnx;
};
// Elementwise ops mapped one to one (layout-free).
const SimpleOp kElementwise[] = {
    {&ops::kAdd, "Add"},
    {&ops::kSub, "Sub"},
    {&ops::kMul, "Mul"},
    {&ops::kDiv, "Div"},
    {&ops::kPow, "Pow"},
    {&ops::kMaximum, "Max"},
    {&ops::kMinimum, "Min"},
    {&ops::kEqual, "Equal"},
    {&ops::kLess, "Less"},
    {&ops::kLessEqual, "LessOrEqual"},
    {&ops::kGreater, "Greater"},
    {&ops::kGreaterEqual, "GreaterOrEqual"},
    {&ops::kWhere, "Where"},
    {&ops::kRelu, "Relu"},
    {&ops::kSigmoid, "Sigmoid"},
    {&ops::kTanh, "Tanh"},
    {&ops::kNeg, "Neg"},
    {&ops::kExp, "Exp"},
    {&ops::kLog, "Log"},
    {&ops::kSqrt, "Sqrt"},
    {&ops::kAbs, "Abs"},
    {&ops::kCopy, "Identity"},
    {&ops::kStopGradient, "Identity"},
};

void Exporter::emit(int i) {
  const Node& n = g_.nodes[i];
  const OpDef* op = n.op;
  const Attrs& a = n.attrs;
  for (const SimpleOp& s : kElementwise) {
    if (s.op == op) return elementwise(n, s.onnx);
  }
  const int x = n.inputs.empty() ? -1 : n.inputs[0];
  if (op == &ops::kConv2D) return emit_conv(i);
  if (op == &ops::kMaxPool2D) return emit_pool(i, "MaxPool");
  if (op == &ops::kAvgPool2D) return emit_pool(i, "AveragePool");
  if (op == &ops::kMatmul) return emit_matmul(i);
  if (op == &ops::kSum) return emit_reduce(i, "ReduceSum");
  if (op == &ops::kMean) return emit_reduce(i, "ReduceMean");
  if (op == &ops::kMax) return emit_reduce(i, "ReduceMax");
  if (op == &ops::kGelu) return emit_gelu(n);
  if (op == &ops::kDropout) return alias(n, x);  // inference: the identity (ONNX's too)
  if (op == &ops::kLeakyRelu || op == &ops::kCast || op == &ops::kSquare) {
    const bool in_nchw = only_nchw(x);
    const std::string xs = in_nchw ? nchw(x) : plain(x);
    onnx::NodeProto* p;
    if (op == &ops::kSquare) {
      p = node("Mul", {xs, xs}, {out_name(n, in_nchw)});
    } else if (op == &ops::kCast) {
      p = node("Cast", {xs}, {out_name(n, in_nchw)});
      attr_int(p, "to", onnx_type(static_cast<DType>(a.i(0))));
    } else {
      p = node("LeakyRelu", {xs}, {out_name(n, in_nchw)});
      attr_float(p, "alpha", a.f(0));
    }
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kNotEqual) {
    const bool in_nchw = elementwise_in_nchw(n);
    auto in = [&](int v) { return in_nchw ? nchw(v) : plain(v); };
    const std::string eq =
        node("Equal", {in(n.inputs[0]), in(n.inputs[1])}, {unique("ne_" + std::to_string(i))})
            ->output(0);
    return finish(n, node("Not", {eq}, {out_name(n, in_nchw)}), in_nchw);
  }
  if (op == &ops::kSoftmax || op == &ops::kLogSoftmax) {
    const int r = rank(x);
    int64_t axis = (a.i(0) % r + r) % r;
    const bool in_nchw = r == 4 && only_nchw(x);
    if (in_nchw) axis = kAxisInNchw[axis];
    onnx::NodeProto* p = node(op == &ops::kSoftmax ? "Softmax" : "LogSoftmax",
                              {in_nchw ? nchw(x) : plain(x)}, {out_name(n, in_nchw)});
    attr_int(p, "axis", axis);
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kConcat) {
    const int r = rank(n.outputs[0]);
    bool in_nchw = false;
    if (r == 4) {
      in_nchw = true;
      bool any = false;
      for (int32_t v : n.inputs) any |= only_nchw(v);
      for (int32_t v : n.inputs) in_nchw &= is_capture(v) || rank(v) == 4;
      in_nchw &= any;
    }
    std::vector<std::string> in;
    for (int32_t v : n.inputs) in.push_back(in_nchw ? nchw(v) : plain(v));
    int64_t axis = (a.i(0) % r + r) % r;
    onnx::NodeProto* p = node("Concat", in, {out_name(n, in_nchw)});
    attr_int(p, "axis", in_nchw ? kAxisInNchw[axis] : axis);
    return finish(n, p, in_nchw);
  }
  if (op == &ops::kTranspose) {
    std::vector<int64_t> perm(a.ints().begin(), a.ints().end());
    std::string in;
    if (rank(x) == 4 && only_nchw(x)) {  // one Transpose from NCHW straight to the result
      for (int64_t& p : perm) p = kAxisInNchw[p];
      in = nchw(x);
    } else {
      in = plain(x);
    }
    bool identity = true;
    for (size_t d = 0; d < perm.size(); ++d) identity &= perm[d] == static_cast<int64_t>(d);
    if (identity) {  // NHWC -> NCHW of a value already held as NCHW
      plain_[n.outputs[0]] = in;
      return;
    }
    onnx::NodeProto* p = node("Transpose", {in}, {out_name(n, false)});
    attr_ints(p, "perm", perm);
    return finish(n, p, false);
  }
  if (op == &ops::kReshape) {
    std::vector<int64_t> shape(a.ints().begin(), a.ints().end());
    const bool zero = std::find(shape.begin(), shape.end(), 0) != shape.end();
    if (zero && opset_ < 14) {
      unsupported(i, " at opset " + std::to_string(opset_) +
                         ": a 0-size target dim needs Reshape's allowzero (opset 14 and later)");
    }
    onnx::NodeProto* p =
        node("Reshape", {plain(x), const_i64(shape, "shape")}, {out_name(n, false)});
    if (zero) attr_int(p, "allowzero", 1);
    return finish(n, p, false);
  }
  if (op == &ops::kReshapeLike || op == &ops::kBroadcastLike) {
    const std::string shape =
        node("Shape", {plain(n.inputs[1])}, {unique("shape_" + std::to_string(i))})->output(0);
    return finish(n,
                  node(op == &ops::kReshapeLike ? "Reshape" : "Expand", {plain(x), shape},
                       {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kBroadcastTo) {
    std::vector<int64_t> shape(a.ints().begin(), a.ints().end());
    return finish(n, node("Expand", {plain(x), const_i64(shape, "shape")}, {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kGather) {
    onnx::NodeProto* p = node("Gather", {plain(x), plain(n.inputs[1])}, {out_name(n, false)});
    attr_int(p, "axis", a.i(0));
    return finish(n, p, false);
  }
  if (op == &ops::kRows || op == &ops::kSlice) {
    std::vector<int64_t> starts, ends, axes, steps;
    if (op == &ops::kRows) {
      starts = {a.i(0)}, ends = {a.i(1)}, axes = {0}, steps = {1};
    } else {
      for (int d = 0; 3 * d + 2 < a.num_ints(); ++d) {
        starts.push_back(a.i(3 * d)), ends.push_back(a.i(3 * d + 1));
        axes.push_back(d), steps.push_back(a.i(3 * d + 2));
      }
    }
    if (axes.empty()) return alias(n, x);
    return finish(n,
                  node("Slice",
                       {plain(x), const_i64(starts, "starts"), const_i64(ends, "ends"),
                        const_i64(axes, "axes"), const_i64(steps, "steps")},
                       {out_name(n, false)}),
                  false);
  }
  if (op == &ops::kPad) {
    const int r = rank(x), pairs = a.num_ints() / 2;
    std::vector<int64_t> pads(2 * r, 0);
    for (int d = 0; d < pairs; ++d) pads[d] = a.i(2 * d), pads[r + d] = a.i(2 * d + 1);
    return finish(
        n,
        node("Pad", {plain(x), const_i64(pads, "pads"), const_scalar(a.f(0), meta(x).dtype)},
             {out_name(n, false)}),
        false);
  }
  if (op == &ops::kArgmax) {
    onnx::NodeProto* p = node("ArgMax", {plain(x)}, {out_name(n, false)});
    attr_int(p, "axis", a.i(0));
    attr_int(p, "keepdims", a.i(1));
    return finish(n, p, false);
  }
  if (op == &ops::kFusedMatmul || op == &ops::kFusedConv2D || op == &ops::kFusedElementwise) {
    unsupported(i, ": fused ops appear only in the graph that runs; export the stored graph");
  }
  unsupported(i, "");
}

}  // namespace

std::string export_onnx_bytes(const GraphModel& model, const OnnxExportOptions& options) {
  if (model.empty()) throw StateError("export_onnx: the GraphModel is empty");
  if (options.opset < kMinOpset || options.opset > kMaxOpset) {
    throw ValueError("export_onnx: opset " + std::to_string(options.opset) +
                     " is not supported; kiln writes opsets " + std::to_string(kMinOpset) + " to " +
                     std::to_string(kMaxOpset));
  }
  onnx::ModelProto m;
  m.set_ir_version(options.opset <= 14 ? 7 : 8);  // the IR version each opset came with
  m.set_producer_name("kiln");
  onnx::OperatorSetIdProto* os = m.add_opset_import();
  os->set_domain("");
  os->set_version(options.opset);
  onnx::GraphProto* gp = m.mutable_graph();
  gp->set_name(options.graph_name.empty() ? model.name() : options.graph_name);
  Exporter(model, options.opset, gp).run();
  const size_t size = m.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX)) {
    throw ValueError("export_onnx: the model takes " + std::to_string(size) +
                     " bytes; an ONNX file holds at most 2 GiB (external data is not written)");
  }
  std::string out;
  if (!m.SerializeToString(&out))
    throw Error("export_onnx: protobuf could not serialize the model");
  return out;
}

void export_onnx(const GraphModel& model, const std::string& path,
                 const OnnxExportOptions& options) {
  atomic_write_file(path, export_onnx_bytes(model, options));
}

void export_onnx(Layer& model, const std::string& path, const OnnxExportOptions& options) {
  FreezeOptions f;
  f.input_signature = options.input_signature;
  export_onnx(freeze(model, f), path, options);
}

}  // namespace kiln
