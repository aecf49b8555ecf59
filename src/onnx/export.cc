// export_onnx: a frozen kiln graph -> an ONNX ModelProto. This file: the exporter's names,
// initializers and layouts (export.h says how the two layouts meet), and the public API; the
// op mappings are in export_ops.cc.
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/onnx.h"
#include "onnx/export.h"

namespace kiln {
namespace onnx_export {

constexpr int kMinOpset = 13, kMaxOpset = 17;

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
  throw ValueError("export_onnx: unknown dtype code " + std::to_string(static_cast<int>(t)));
}

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

// ---- the exporter: ports and the walk over the nodes ---------------------------------------

Exporter::Exporter(const GraphModel& model, int opset, onnx::GraphProto* gp)
    : g_(model.graph()), model_(model), opset_(opset), gp_(gp) {
  // ONNX names values by string: ports must be named, once each.
  for (const std::vector<GraphPort>* ports : {&model.inputs(), &model.outputs()}) {
    for (const GraphPort& p : *ports) {
      if (p.name.empty()) throw ValueError("export_onnx: a port of the model has no name");
      if (!used_.insert(p.name).second) {
        throw ValueError("export_onnx: the port name '" + p.name +
                         "' is used twice; ONNX needs unique input and output names");
      }
    }
  }
  const size_t nv = g_.values.size();
  plain_.resize(nv), nchw_.resize(nv), readers_.resize(nv), port_of_.resize(nv);
  absorbed_.assign(g_.nodes.size(), false);
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    for (int32_t v : g_.nodes[i].inputs) readers_[v].push_back(static_cast<int>(i));
  }
  for (size_t k = 0; k < g_.outputs.size(); ++k) {
    std::string& port = port_of_[g_.outputs[k]];
    if (port.empty()) port = model.outputs()[k].name;  // its producer names it so
  }
  for (const GraphPort& p : model.inputs()) {
    for (size_t d = 1; d < p.spec.dims.size(); ++d) spatial_known_ &= p.spec.dims[d] >= 0;
  }
}

void Exporter::run() {
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
    if (name != p.name) node("Identity", {name}, {p.name});  // an input, a constant, a repeat
    add_port(gp_->add_output(), p);
  }
}

void Exporter::add_port(onnx::ValueInfoProto* vi, const GraphPort& p) {
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

// ---- names, nodes, attributes, initializers ------------------------------------------------

std::string Exporter::unique(const std::string& base) {
  std::string name = base;
  for (int k = 1; !used_.insert(name).second; ++k) name = base + "_" + std::to_string(k);
  return name;
}

std::string Exporter::value_name(int v, const char* suffix) {
  std::string s = std::to_string(v);  // (not "v" + ...: gcc 12 warns falsely, -Wrestrict)
  s.insert(s.begin(), 'v');
  return s += suffix;
}

std::string Exporter::plain_target(int v) {
  if (!port_of_[v].empty()) {
    std::string p = port_of_[v];
    port_of_[v].clear();  // claimed once; later uses get an Identity
    return p;
  }
  return unique(value_name(v));
}

onnx::NodeProto* Exporter::node(const char* type, const std::vector<std::string>& in,
                                const std::vector<std::string>& out) {
  onnx::NodeProto* n = gp_->add_node();
  n->set_op_type(type);
  n->set_name(unique(std::string(type) + "_" + std::to_string(gp_->node_size())));
  for (const std::string& s : in) n->add_input(s);
  for (const std::string& s : out) n->add_output(s);
  return n;
}

void Exporter::attr_int(onnx::NodeProto* n, const char* name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void Exporter::attr_float(onnx::NodeProto* n, const char* name, double v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(static_cast<float>(v));
}

void Exporter::attr_ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void Exporter::attr_string(onnx::NodeProto* n, const char* name, const std::string& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

std::string Exporter::initializer(const std::string& base, DType dt,
                                  const std::vector<int64_t>& dims, std::string bytes) {
  onnx::TensorProto* t = gp_->add_initializer();
  const std::string name = unique(base);
  t->set_name(name);
  t->set_data_type(onnx_type(dt));
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::move(bytes));  // little-endian, as kiln stores it
  return name;
}

std::string Exporter::const_i64(const std::vector<int64_t>& v, const std::string& base) {
  return initializer(base, DType::kInt64, {static_cast<int64_t>(v.size())},
                     std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8));
}

std::string Exporter::const_scalar(double value, DType dt) {
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

// ---- values in either layout -----------------------------------------------------------------

std::string Exporter::bytes(int v) const {
  const Tensor& t = data(v);
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

std::string Exporter::plain(int v) {
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

std::string Exporter::nchw(int v) {
  if (!nchw_[v].empty()) return nchw_[v];
  if (is_capture(v)) {
    std::vector<int64_t> d = dims(v);
    d.insert(d.begin(), 4 - d.size(), 1);
    nchw_[v] =
        initializer("const_" + std::to_string(v) + "_nchw", meta(v).dtype, {d[0], d[3], d[1], d[2]},
                    permute_bytes(static_cast<const char*>(data(v).raw_data()), d,
                                  {kNhwcToNchw, kNhwcToNchw + 4}, size_of(meta(v).dtype)));
  } else {
    onnx::NodeProto* n = node("Transpose", {plain(v)}, {unique(value_name(v, "_nchw"))});
    attr_ints(n, "perm", {kNhwcToNchw, kNhwcToNchw + 4});
    nchw_[v] = n->output(0);
  }
  return nchw_[v];
}

bool Exporter::elementwise_in_nchw(const Node& n) const {
  if (rank(n.outputs[0]) != 4) return false;
  bool any = false;
  for (int32_t v : n.inputs) {
    if (is_capture(v)) continue;
    if (rank(v) != 4) return false;
    any |= only_nchw(v);
  }
  return any;
}

void Exporter::elementwise(const Node& n, const char* type) {
  const bool in_nchw = elementwise_in_nchw(n);
  std::vector<std::string> in;
  for (int32_t v : n.inputs) in.push_back(in_nchw ? nchw(v) : plain(v));
  finish(n, node(type, in, {out_name(n, in_nchw)}), in_nchw);
}

std::string Exporter::out_name(const Node& n, bool in_nchw) {
  const int v = n.outputs[0];
  return in_nchw ? unique(value_name(v, "_nchw")) : plain_target(v);
}

void Exporter::finish(const Node& n, onnx::NodeProto* p, bool in_nchw) {
  (in_nchw ? nchw_ : plain_)[n.outputs[0]] = p->output(0);
}

void Exporter::alias(const Node& n, int32_t from) {
  if (plain_[from].empty() && nchw_[from].empty()) plain(from);  // a constant not yet written
  plain_[n.outputs[0]] = plain_[from];
  nchw_[n.outputs[0]] = nchw_[from];
}

}  // namespace onnx_export

// ---- the public API ------------------------------------------------------------------------

std::string export_onnx_bytes(const GraphModel& model, const OnnxExportOptions& options) {
  if (model.empty()) throw StateError("export_onnx: the GraphModel is empty");
  if (options.opset < onnx_export::kMinOpset || options.opset > onnx_export::kMaxOpset) {
    throw ValueError("export_onnx: opset " + std::to_string(options.opset) +
                     " is not supported; kiln writes opsets " +
                     std::to_string(onnx_export::kMinOpset) + " to " +
                     std::to_string(onnx_export::kMaxOpset));
  }
  onnx::ModelProto m;
  m.set_ir_version(options.opset <= 14 ? 7 : 8);  // the IR version each opset came with
  m.set_producer_name("kiln");
  onnx::OperatorSetIdProto* os = m.add_opset_import();
  os->set_domain("");
  os->set_version(options.opset);
  onnx::GraphProto* gp = m.mutable_graph();
  gp->set_name(options.graph_name.empty() ? model.name() : options.graph_name);
  onnx_export::Exporter(model, options.opset, gp).run();
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
