// The importer's shared pieces: ONNX tensors and dtypes, the op table, and NodeCtx (a node's
// inputs, attributes and outputs as the mappings see them).
#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "core/tensor_impl.h"
#include "graph/scoped_recorders.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"

namespace kiln::onnx_import {

// ---- tensors -------------------------------------------------------------------------------

DType dtype_from_onnx(int32_t type, const std::string& where) {
  switch (type) {
    case onnx::TensorProto::FLOAT:
      return float32;
    case onnx::TensorProto::DOUBLE:
      return float64;
    case onnx::TensorProto::INT32:
      return int32;
    case onnx::TensorProto::INT64:
      return int64;
    case onnx::TensorProto::INT8:
      return int8;
    case onnx::TensorProto::UINT8:
      return uint8;
    case onnx::TensorProto::BOOL:
      return boolean;
    default:
      break;
  }
  const std::string name =
      onnx::TensorProto::DataType_IsValid(type)
          ? onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(type))
          : std::to_string(type);
  throw ValueError(where + ": dtype " + name +
                   " is not supported (kiln has float, double, int32, int64, int8, uint8, bool)");
}

namespace {

// Checked element count of `dims` (FormatError on negatives, rank > kMaxRank or overflow).
Shape checked_shape(const google::protobuf::RepeatedField<int64_t>& dims,
                    const std::string& where) {
  if (dims.size() > Shape::kMaxRank) {
    throw FormatError(where + ": rank " + std::to_string(dims.size()) + " exceeds kiln's " +
                      std::to_string(Shape::kMaxRank));
  }
  Shape s;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) throw FormatError(where + ": negative dim " + std::to_string(d));
    if (d > 0 && n > (int64_t{1} << 40) / d) {
      throw FormatError(where + ": the dims hold more than 2^40 elements");
    }
    n *= d;
    s.push_back(d);
  }
  return s;
}

template <typename Dst, typename Src>
void copy_elements(Tensor& t, const Src& src) {
  Dst* out = t.data<Dst>();
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<Dst>(src[static_cast<int>(i)]);
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& p, const std::string& where_in) {
  const std::string where = where_in + (p.name().empty() ? "" : " tensor '" + p.name() + "'");
  if (p.data_location() == onnx::TensorProto::EXTERNAL || p.external_data_size() > 0) {
    throw FormatError(where + ": external data is not supported (embed the tensor's data)");
  }
  if (p.has_segment()) throw FormatError(where + ": segmented tensors are not supported");
  const DType dtype = dtype_from_onnx(p.data_type(), where);
  const Shape shape = checked_shape(p.dims(), where);
  const int64_t n = shape.numel();
  auto count_error = [&](const char* field, int64_t got) {
    return FormatError(where + ": " + to_string(shape) + " needs " + std::to_string(n) +
                       " elements, " + field + " holds " + std::to_string(got));
  };
  if (p.has_raw_data()) {
    const int64_t want = n * static_cast<int64_t>(size_of(dtype));
    if (static_cast<int64_t>(p.raw_data().size()) != want) {
      throw FormatError(where + ": " + to_string(shape) + " " + std::string(dtype_name(dtype)) +
                        " needs " + std::to_string(want) + " bytes of raw_data, got " +
                        std::to_string(p.raw_data().size()));
    }
    Tensor t = empty(shape, dtype);
    if (dtype == boolean) {
      bool* out = t.data<bool>();
      for (int64_t i = 0; i < n; ++i) out[i] = p.raw_data()[static_cast<size_t>(i)] != 0;
    } else if (want > 0) {
      std::memcpy(t.raw_data(), p.raw_data().data(), static_cast<size_t>(want));
    }
    return t;
  }
  // The typed field's count is checked before allocating: dims alone never decide an
  // allocation (a few bytes of dims can ask for gigabytes; found by onnx_fuzz).
  const auto [field, got] = [&]() -> std::pair<const char*, int64_t> {
    switch (dtype) {
      case DType::kFloat32:
        return {"float_data", p.float_data_size()};
      case DType::kFloat64:
        return {"double_data", p.double_data_size()};
      case DType::kInt64:
        return {"int64_data", p.int64_data_size()};
      default:  // int32, int8, uint8 and bool are stored in int32_data
        return {"int32_data", p.int32_data_size()};
    }
  }();
  if (got != n) throw count_error(field, got);
  Tensor t = empty(shape, dtype);
  switch (dtype) {
    case DType::kFloat32:
      copy_elements<float>(t, p.float_data());
      break;
    case DType::kFloat64:
      copy_elements<double>(t, p.double_data());
      break;
    case DType::kInt64:
      copy_elements<int64_t>(t, p.int64_data());
      break;
    case DType::kInt32:
      copy_elements<int32_t>(t, p.int32_data());
      break;
    case DType::kInt8:
      copy_elements<int8_t>(t, p.int32_data());
      break;
    case DType::kUInt8:
      copy_elements<uint8_t>(t, p.int32_data());
      break;
    case DType::kBool: {
      bool* out = t.data<bool>();
      for (int64_t i = 0; i < n; ++i) out[i] = p.int32_data(static_cast<int>(i)) != 0;
      break;
    }
  }
  return t;
}

bool is_symbolic(const Tensor& t) { return t.defined() && t.impl()->storage == nullptr; }

std::vector<int> inverse_perm(const std::vector<int>& perm) {
  std::vector<int> inv(perm.size());
  for (size_t k = 0; k < perm.size(); ++k) inv[perm[k]] = static_cast<int>(k);
  return inv;
}

Tensor logical_of(OValue& v) {
  if (v.perm.empty()) return v.t;
  if (!v.logical.defined()) {
    if (is_symbolic(v.t)) {
      v.logical = transpose(v.t, inverse_perm(v.perm));
    } else {  // a constant stays one
      graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
      v.logical = transpose(v.t, inverse_perm(v.perm));
    }
  }
  return v.logical;
}

int normalize_axis(const NodeCtx& c, int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) {  // a scalar has no axis
    c.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  }
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

// ---- the op table ----------------------------------------------------------------------------

namespace {

const std::map<std::string, MapFn>& table() {
  static const std::map<std::string, MapFn> t = [] {
    std::map<std::string, MapFn> m;
    for (const Mapping& x : elementwise_mappings()) m[x.op] = x.fn;
    for (const Mapping& x : shape_mappings()) m[x.op] = x.fn;
    for (const Mapping& x : math_mappings()) m[x.op] = x.fn;
    for (const Mapping& x : nn_mappings()) m[x.op] = x.fn;
    for (const Mapping& x : resample_mappings()) m[x.op] = x.fn;
    for (const Mapping& x : quantize_mappings()) m[x.op] = x.fn;
    return m;
  }();
  return t;
}

}  // namespace

MapFn find_mapping(const std::string& op_type) {
  auto it = table().find(op_type);
  return it == table().end() ? nullptr : it->second;
}

std::vector<std::string> mapped_ops() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : table()) names.push_back(name);
  return names;
}

// ---- NodeCtx ---------------------------------------------------------------------------------

NodeCtx::NodeCtx(Importer& im, const onnx::NodeProto& node, bool folding)
    : im_(im), node_(node), folding_(folding) {}

int64_t NodeCtx::opset() const { return im_.opset(); }

std::string NodeCtx::where() const {
  // An unnamed node is named by its first output.
  const std::string name = !node_.name().empty()     ? "node '" + node_.name() + "'"
                           : node_.output_size() > 0 ? "the node making '" + node_.output(0) + "'"
                                                     : "an unnamed node";
  return im_.where() + ": " + name + " (" + node_.op_type() + ")";
}

void NodeCtx::fail(const std::string& what) const { throw ValueError(where() + ": " + what); }

bool NodeCtx::has_input(int k) const { return k < node_.input_size() && !node_.input(k).empty(); }

OValue& NodeCtx::value(int k) {
  if (!has_input(k)) fail("input " + std::to_string(k) + " is required");
  return im_.value(node_.input(k), this);
}

Tensor NodeCtx::in(int k) {
  OValue& v = value(k);
  if (v.tainted && !folding_) {
    fail("input '" + node_.input(k) +
         "' is computed from a symbolic dim; kiln would bake one size into the graph");
  }
  return logical_of(v);
}

Tensor NodeCtx::const_in(int k, const char* what) {
  OValue& v = value(k);
  if (is_symbolic(v.t)) {
    fail(std::string(what) + " (input '" + node_.input(k) + "') must be a constant");
  }
  if (v.tainted) {
    fail(std::string(what) + " (input '" + node_.input(k) +
         "') is computed from a symbolic dim; kiln would bake one size into the graph");
  }
  return logical_of(v);
}

std::vector<int64_t> NodeCtx::ints_in(int k, const char* what, bool allow_tainted) {
  OValue& v = value(k);
  if (is_symbolic(v.t)) {
    fail(std::string(what) + " (input '" + node_.input(k) + "') must be a constant");
  }
  if (v.tainted && !allow_tainted) {
    fail(std::string(what) + " (input '" + node_.input(k) +
         "') is computed from a symbolic dim; kiln would bake one size into the graph");
  }
  Tensor t = logical_of(v);
  if (t.dtype() != int64 && t.dtype() != int32) {
    fail(std::string(what) + " must be int32 or int64, got " + std::string(dtype_name(t.dtype())));
  }
  graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
  return cast(t, int64).to_vector<int64_t>();
}

std::vector<double> NodeCtx::floats_in(int k, const char* what) {
  Tensor t = const_in(k, what);
  graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
  return cast(t, float64).to_vector<double>();
}

Shape NodeCtx::traced_shape(int k) {
  OValue& v = value(k);
  if (v.perm.empty()) return v.t.shape();
  Shape s;
  const std::vector<int> inv = inverse_perm(v.perm);
  for (int d : inv) s.push_back(v.t.shape()[d]);
  return s;
}

Shape logical_shape(const OValue& v) {
  if (v.perm.empty()) return v.t.shape();
  Shape s;
  const std::vector<int> inv = inverse_perm(v.perm);
  for (int d : inv) s.push_back(v.t.shape()[d]);
  return s;
}

std::vector<bool> differing_dims(const Shape& a, const Shape& b) {
  std::vector<bool> u(a.rank(), false);
  if (a.rank() != b.rank()) return std::vector<bool>(a.rank(), true);
  for (int d = 0; d < a.rank(); ++d) u[d] = a[d] != b[d];
  return u;
}

std::vector<bool> NodeCtx::unknown_dims(int k) {
  const Shape s = traced_shape(k);
  const OValue* first = im_.first_trace_value(node_.input(k));
  if (!first) return std::vector<bool>(s.rank(), false);
  return differing_dims(s, logical_shape(*first));
}

std::vector<bool> NodeCtx::unknown_out_dims(int k, const Shape& traced) {
  const OValue* first = k < node_.output_size() ? im_.first_trace_value(node_.output(k)) : nullptr;
  if (!first) return std::vector<bool>(traced.rank(), false);
  return differing_dims(traced, logical_shape(*first));
}

void NodeCtx::charge(int64_t elements, DType dtype) {
  const int64_t bytes = elements * static_cast<int64_t>(size_of(dtype));
  if (elements < 0 || !im_.try_charge(bytes)) {
    fail("would build a constant of " + std::to_string(elements) +
         " elements, past the import's allocation budget");
  }
}

namespace {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const char* name) {
  for (const onnx::AttributeProto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

}  // namespace

bool NodeCtx::has_attr(const char* name) const { return find_attr(node_, name) != nullptr; }

int64_t NodeCtx::attr_int(const char* name, int64_t fallback) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::INT && !a->has_i()) {
    fail(std::string("attribute '") + name + "' must be an int");
  }
  return a->i();
}

double NodeCtx::attr_float(const char* name, double fallback) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::FLOAT && !a->has_f()) {
    fail(std::string("attribute '") + name + "' must be a float");
  }
  return a->f();
}

std::string NodeCtx::attr_string(const char* name, const std::string& fallback) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::STRING && !a->has_s()) {
    fail(std::string("attribute '") + name + "' must be a string");
  }
  return a->s();
}

std::vector<int64_t> NodeCtx::attr_ints(const char* name) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return {};
  if (a->ints_size() > 64) fail(std::string("attribute '") + name + "' has too many values");
  return {a->ints().begin(), a->ints().end()};
}

std::vector<double> NodeCtx::attr_floats(const char* name) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return {};
  if (a->floats_size() > 64) fail(std::string("attribute '") + name + "' has too many values");
  return {a->floats().begin(), a->floats().end()};
}

const onnx::TensorProto* NodeCtx::attr_tensor(const char* name) const {
  const onnx::AttributeProto* a = find_attr(node_, name);
  if (!a) return nullptr;
  if (!a->has_t()) fail(std::string("attribute '") + name + "' must be a tensor");
  return &a->t();
}

void NodeCtx::set_out(int k, Tensor t) {
  OValue v;
  v.t = std::move(t);
  set_out(k, std::move(v));
}

void NodeCtx::set_out(int k, OValue v) {
  if (k >= node_.output_size() || node_.output(k).empty()) return;
  im_.define(node_.output(k), std::move(v), this);
}

}  // namespace kiln::onnx_import
