// ONNX import: parses a ModelProto, traces its nodes onto kiln ops (import_context.h says how)
// and wraps the graph in a GraphModel.
#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "core/tensor_impl.h"
#include "graph/executor.h"
#include "graph/scoped_recorders.h"
#include "graph/tracer.h"
#include "kiln/error.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"

namespace kiln::onnx_import {

// ---- Importer --------------------------------------------------------------------------------

Importer::Importer(const onnx::ModelProto& model, std::string where, int64_t unknown_size,
                   const Importer* first_trace, int64_t budget_bytes,
                   const OnnxImportOptions& options)
    : model_(model),
      where_(std::move(where)),
      unknown_size_(unknown_size),
      first_(first_trace),
      budget_(budget_bytes),
      options_(options) {}

bool Importer::try_charge(int64_t bytes) {
  if (bytes < 0 || bytes > budget_) return false;
  budget_ -= bytes;
  return true;
}

OValue& Importer::value(const std::string& name, const NodeCtx* user) {
  auto it = values_.find(name);
  if (it == values_.end()) {
    throw FormatError((user ? user->where() : where_) + ": value '" + name +
                      "' is used before it is defined");
  }
  return it->second;
}

void Importer::define(const std::string& name, OValue v, const NodeCtx* by) {
  if (values_.count(name)) {
    throw FormatError(where_ + ": value '" + name + "' is defined twice" +
                      (by ? " (again by " + by->where() + ")" : std::string()));
  }
  if (!v.t.defined()) throw ValueError(where_ + ": value '" + name + "' is undefined");
  if (first_ && !is_symbolic(v.t) && !v.tainted) {
    // A constant that differs from the first trace's was computed from an unknown dim.
    const OValue* f = first_trace_value(name);
    if (f && !is_symbolic(f->t)) {
      graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
      const Tensor a = logical_of(v), b = const_cast<OValue*>(f)->t;
      const Tensor bl = f->perm.empty() ? b : transpose(b, inverse_perm(f->perm));
      v.tainted = a.shape() != bl.shape() || a.dtype() != bl.dtype() ||
                  std::memcmp(a.clone().raw_data(), bl.clone().raw_data(), a.nbytes()) != 0;
    }
  }
  values_.emplace(name, std::move(v));
}

const OValue* Importer::first_trace_value(const std::string& name) const {
  if (!first_) return nullptr;
  auto it = first_->values_.find(name);
  return it == first_->values_.end() ? nullptr : &it->second;
}

namespace {

// The declared element type and dims of a graph input or output (kUnknownDim for symbolic
// dims); `unknown_size` stands for symbolic dims when tracing.
TensorSpec spec_of(const onnx::ValueInfoProto& vi, const std::string& where) {
  const std::string what = where + ": graph input '" + vi.name() + "'";
  if (!vi.has_type() || !vi.type().has_tensor_type()) {
    throw ValueError(what + " is not a tensor (sequences, maps and optionals are not supported)");
  }
  const onnx::TypeProto::Tensor& tt = vi.type().tensor_type();
  TensorSpec s;
  s.dtype = dtype_from_onnx(tt.elem_type(), what);
  if (!tt.has_shape()) throw ValueError(what + " has no declared shape (its rank is needed)");
  if (tt.shape().dim_size() > Shape::kMaxRank) {
    throw FormatError(what + ": rank " + std::to_string(tt.shape().dim_size()) + " exceeds " +
                      std::to_string(Shape::kMaxRank));
  }
  for (const auto& d : tt.shape().dim()) {
    if (d.has_dim_value()) {
      if (d.dim_value() < 0 || d.dim_value() > (int64_t{1} << 31)) {
        throw FormatError(what + ": dim " + std::to_string(d.dim_value()) + " is out of range");
      }
      s.dims.push_back(d.dim_value());
    } else {
      s.dims.push_back(kUnknownDim);
    }
  }
  return s;
}

bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

// 1 where x is NaN (as float64), else 0.
Tensor cast_nan_check(const Tensor& x) { return kiln::cast(not_equal(x, x), float64); }

// Whether computing `node` on its constant inputs at import is free of C++ undefined behaviour
// whatever the file holds: integer arithmetic that could overflow, integer division by zero
// and float-to-integer casts of values out of range are left to run time instead (where a
// later import-time use of the value is refused as not constant).
bool safe_to_fold(Importer& im, const onnx::NodeProto& node) {
  static const std::set<std::string> kIntArithmetic = {
      "Add",       "Sub",       "Mul",          "Div",
      "Neg",       "Abs",       "Pow",          "Sum",
      "Mean",      "ReduceSum", "ReduceMean",   "ReduceSumSquare",
      "ReduceL1",  "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp",
      "ReduceMin", "Sign",      "ArgMin",       "Gemm",
      "MatMul",    "Range",     "Clip",         "Max",
      "Min",       "Expand",    "Tile"};
  const bool arithmetic = kIntArithmetic.count(node.op_type()) != 0;
  const bool cast = node.op_type() == "Cast";
  if (!arithmetic && !cast) return true;
  graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
  for (int k = 0; k < node.input_size(); ++k) {
    if (node.input(k).empty()) continue;
    const Tensor t = logical_of(im.value(node.input(k), nullptr));
    if (t.numel() == 0) continue;
    if (cast && is_floating(t.dtype())) {
      // Finite and within int32 (the narrowest signed target kiln casts floats to with UB).
      const double lo = kiln::max(neg(t)).item_double(), hi = kiln::max(t).item_double();
      if (!(hi < 2147483647.0 && -lo > -2147483648.0)) return false;
      if (kiln::max(cast_nan_check(t)).item_double() != 0) return false;
    }
    if (arithmetic && (t.dtype() == int32 || t.dtype() == int64)) {
      // Small enough that sums, products and reductions of the budget's elements fit.
      const double limit = t.dtype() == int32 ? 16384.0 : 2147483648.0;
      const Tensor d = kiln::cast(t, float64);
      const double lo = kiln::max(neg(d)).item_double(), hi = kiln::max(d).item_double();
      if (t.numel() > 65536 || hi > limit || lo > limit) return false;
      if (node.op_type() == "Div" && k == 1 &&
          kiln::max(kiln::cast(equal(t, scalar(0, t.dtype())), int32)).item<int32_t>() != 0) {
        return false;
      }
    }
  }
  return true;
}

// Runs a mapping; an error from a kiln op (a ShapeError from its infer) gets the file and node
// prepended, keeping its type.
void call_mapping(MapFn fn, NodeCtx& c) {
  const std::string prefix = c.where() + ": ";
  auto named = [&](const std::string& what) {
    return what.rfind(c.importer().where(), 0) == 0 ? what : prefix + what;
  };
  try {
    fn(c);
  } catch (const ShapeError& e) {
    throw ShapeError(named(e.what()));
  } catch (const DTypeError& e) {
    throw DTypeError(named(e.what()));
  } catch (const FormatError& e) {
    throw FormatError(named(e.what()));
  } catch (const StateError& e) {
    throw StateError(named(e.what()));
  } catch (const Error& e) {
    throw ValueError(named(e.what()));
  }
}

}  // namespace

void Importer::run() {
  for (const onnx::OperatorSetIdProto& o : model_.opset_import()) {
    if (is_default_domain(o.domain())) opset_ = o.version();
  }
  if (!model_.has_graph()) throw FormatError(where_ + ": the model has no graph");
  const onnx::GraphProto& g = model_.graph();
  // Unmapped ops first: the message names the op whatever else is wrong.
  for (const onnx::NodeProto& node : g.node()) {
    NodeCtx probe(*this, node, false);
    if (!is_default_domain(node.domain())) {
      probe.fail("domain '" + node.domain() + "' is not supported");
    }
    if (!find_mapping(node.op_type())) probe.fail("unsupported op");
  }
  if (opset_ == 0) throw FormatError(where_ + ": the model imports no default-domain opset");
  // Opsets 9 to 17, and older ones for the ops whose meaning kiln maps there too (the
  // mappings refuse the legacy forms: broadcast=1 attributes, is_test=0, spatial=0).
  if (opset_ < 1 || opset_ > 17) {
    throw ValueError(where_ + ": opset " + std::to_string(opset_) +
                     " is not supported (kiln imports opsets up to 17)");
  }

  for (const onnx::TensorProto& init : g.initializer()) {
    OValue v;
    v.t = tensor_from_proto(init, where_ + ": initializer");
    if (init.name().empty()) throw FormatError(where_ + ": an initializer has no name");
    define(init.name(), std::move(v), nullptr);
  }
  if (g.sparse_initializer_size() > 0) {
    throw ValueError(where_ + ": sparse initializers are not supported");
  }
  for (const auto& [name, t] : options_.constant_inputs) {
    bool found = false;
    for (const onnx::ValueInfoProto& vi : g.input()) found = found || vi.name() == name;
    if (!found) throw ValueError(where_ + ": constant input '" + name + "' is not a graph input");
  }
  graph::Tracer tracer;
  for (const onnx::ValueInfoProto& vi : g.input()) {
    if (defined(vi.name())) continue;  // an initializer listed as an input (IR < 4): a constant
    TensorSpec spec = spec_of(vi, where_);
    auto fixed = options_.constant_inputs.find(vi.name());
    if (fixed != options_.constant_inputs.end()) {
      const Tensor& t = fixed->second;
      bool fits = t.defined() && t.dtype() == spec.dtype &&
                  static_cast<size_t>(t.rank()) == spec.dims.size();
      for (size_t d = 0; fits && d < spec.dims.size(); ++d) {
        fits = spec.dims[d] == kUnknownDim || spec.dims[d] == t.shape()[static_cast<int>(d)];
      }
      if (!fits) {
        throw ValueError(where_ + ": constant input '" + vi.name() +
                         "' does not fit its declaration");
      }
      define(vi.name(), OValue(t), nullptr);
      continue;
    }
    Shape traced;
    for (int64_t d : spec.dims) traced.push_back(d == kUnknownDim ? unknown_size_ : d);
    OValue v;
    v.t = tracer.add_input(traced, spec.dtype);
    input_tensors.push_back(v.t);
    input_ports.push_back({vi.name(), spec});
    define(vi.name(), std::move(v), nullptr);
  }

  for (const onnx::NodeProto& node : g.node()) {
    NodeCtx probe(*this, node, false);
    MapFn fn = find_mapping(node.op_type());
    bool folding = true;
    for (int k = 0; k < node.input_size(); ++k) {
      if (node.input(k).empty()) continue;
      if (is_symbolic(value(node.input(k), &probe).t)) folding = false;
    }
    if (folding && !safe_to_fold(*this, node)) folding = false;
    if (folding && node.input_size() > 0) {
      // Every input a constant: compute now, outside the trace, if what it computes fits the
      // budget (found by tracing it aside first); else it stays a node computed at run time.
      std::map<std::string, OValue> saved = values_;
      int64_t bytes = 0;
      {
        graph::Tracer aside;
        NodeCtx dry(*this, node, true);
        call_mapping(fn, dry);
        for (const graph::Value& v : aside.take().values) {
          if (v.kind == graph::ValueKind::kNode) {
            bytes += v.meta.shape.numel() * static_cast<int64_t>(size_of(v.meta.dtype));
          }
        }
      }
      values_ = std::move(saved);
      folding = try_charge(bytes);
    }
    NodeCtx c(*this, node, folding);
    if (folding) {
      graph::ScopedRecorders eager(nullptr, nullptr, nullptr);
      call_mapping(fn, c);
    } else {
      call_mapping(fn, c);
    }
    for (int k = 0; k < node.output_size(); ++k) {
      if (!node.output(k).empty() && !defined(node.output(k))) {
        c.fail("output " + std::to_string(k) + " ('" + node.output(k) +
               "') is not supported (kiln computes outputs 0 to " + std::to_string(k - 1) + ")");
      }
    }
  }

  if (g.output_size() == 0) throw FormatError(where_ + ": the graph has no outputs");
  std::vector<Tensor> outs;
  for (const onnx::ValueInfoProto& vi : g.output()) {
    OValue& v = value(vi.name(), nullptr);
    if (v.tainted) {
      throw ValueError(where_ + ": output '" + vi.name() +
                       "' is computed from a symbolic dim; kiln would bake one size into it");
    }
    Tensor t = logical_of(v);
    outs.push_back(t);
    TensorSpec spec;
    spec.dtype = t.dtype();
    std::vector<bool> unknown(t.rank(), false);
    if (const OValue* f = first_trace_value(vi.name())) {
      unknown = differing_dims(t.shape(), logical_shape(*f));
    }
    for (int d = 0; d < t.rank(); ++d) {
      spec.dims.push_back(unknown[d] ? kUnknownDim : t.shape()[d]);
    }
    output_ports.push_back({vi.name(), spec});
  }
  tracer.set_outputs(outs);
  graph = tracer.take();
}

}  // namespace kiln::onnx_import

namespace kiln {

namespace {

bool has_symbolic_inputs(const onnx::GraphProto& g, const OnnxImportOptions& options) {
  for (const onnx::ValueInfoProto& vi : g.input()) {
    if (!vi.type().has_tensor_type() || options.constant_inputs.count(vi.name())) continue;
    for (const auto& d : vi.type().tensor_type().shape().dim()) {
      if (!d.has_dim_value()) return true;
    }
  }
  return false;
}

}  // namespace

GraphModel import_onnx_bytes(const void* data, size_t size, const std::string& name,
                             const OnnxImportOptions& options) {
  if (size > static_cast<size_t>(INT_MAX)) {
    throw FormatError(name + ": " + std::to_string(size) + " bytes is past protobuf's 2 GiB limit");
  }
  onnx::ModelProto model;
  if (!model.ParseFromArray(data, static_cast<int>(size))) {
    throw FormatError(name + ": not an ONNX model (the ModelProto does not parse)");
  }
  // Constants the importer builds (converted weights, folded values, indices) stay within a
  // bounded multiple of the file's size.
  const int64_t budget = 4 * static_cast<int64_t>(size) + (int64_t{16} << 20);
  using onnx_import::Importer;
  std::unique_ptr<Importer> first, im;
  if (model.has_graph() && has_symbolic_inputs(model.graph(), options)) {
    // Two traces with the symbolic dims at two sizes: what differs is unknown.
    first = std::make_unique<Importer>(model, name, 9967, nullptr, budget, options);
    first->run();
    im = std::make_unique<Importer>(model, name, 9973, first.get(), budget, options);
  } else {
    im = std::make_unique<Importer>(model, name, 1, nullptr, budget, options);
  }
  im->run();
  graph::Graph g = std::move(im->graph);
  if (first) {
    // Store the metas at size 1 for unknown dims (as freeze does), when the graph infers there.
    std::vector<Tensor> args;
    for (const GraphPort& p : im->input_ports) {
      Shape s;
      for (int64_t d : p.spec.dims) s.push_back(d == kUnknownDim ? 1 : d);
      args.push_back(Tensor::adopt(detail::impl_view(nullptr, 0, s, p.spec.dtype)));
    }
    try {
      graph::Graph at_one = graph::with_shapes(g, args);
      g = std::move(at_one);
    } catch (const Error&) {
    }
  }
  std::string model_name = model.graph().name().empty() ? name : model.graph().name();
  try {
    return GraphModel(std::move(g), std::move(im->input_ports), std::move(im->output_ports),
                      std::move(model_name));
  } catch (const FormatError& e) {
    throw FormatError(name + ": " + e.what());
  } catch (const Error& e) {
    throw ValueError(name + ": " + e.what());
  }
}

GraphModel import_onnx(const std::string& path, const OnnxImportOptions& options) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(path + ": cannot open the file");
  std::ostringstream buf;
  buf << f.rdbuf();
  if (!f.good() && !f.eof()) throw FormatError(path + ": cannot read the file");
  const std::string bytes = buf.str();
  return import_onnx_bytes(bytes.data(), bytes.size(), path, options);
}

std::vector<std::string> onnx_supported_ops() { return onnx_import::mapped_ops(); }

}  // namespace kiln
