// What the ONNX importer's op mappings share (src/onnx/import.cc drives, import_ops.cc and
// import_nn_ops.cc map ops). Internal: includes protobuf's generated ONNX classes.
//
// How a model becomes a graph: the importer traces ordinary kiln ops (kiln/ops.h) under a
// graph::Tracer, one ONNX node at a time, so every node is inferred by its OpDef as it is added.
// A node whose inputs are all constants is computed at import instead (shape arithmetic,
// Constant -> Cast chains), so the ops that need a value at import (Reshape's shape, Slice's
// starts, Resize's scales) can read it.
//
// Symbolic dims: a model with symbolic input dims is traced twice, with the symbolic dims at two
// different sizes. A dim that differs between the two traces is unknown; a constant that
// differs was computed from an unknown dim ("tainted"). Reshape targets put -1 at their one
// unknown dim; every other use of a tainted constant is refused, so no batch size is baked in.
//
// Layout: a value may be held transposed (OValue::perm): conv and pool outputs stay NHWC, and
// elementwise ops on them stay NHWC too, so a Conv -> Relu -> Conv chain transposes only at its
// ends. Mappings that are not layout-aware read values in the ONNX (logical) layout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "graph/graph.h"
#include "kiln/graph_model.h"
#include "kiln/onnx.h"
#include "kiln/tensor.h"

namespace kiln::onnx_import {

// An ONNX value during import.
struct OValue {
  OValue() = default;
  OValue(Tensor tensor, std::vector<int> layout = {})
      : t(std::move(tensor)), perm(std::move(layout)) {}

  Tensor t;               // the tensor; held as transpose(logical, perm) when perm is not empty
  std::vector<int> perm;  // empty: t is in the ONNX layout
  Tensor logical;         // cache: t brought back to the ONNX layout
  bool tainted = false;   // a constant computed from an unknown dim (see above)
};

class Importer;

// One node being imported: its inputs, attributes and outputs.
class NodeCtx {
 public:
  NodeCtx(Importer& im, const onnx::NodeProto& node, bool folding);

  const onnx::NodeProto& node() const { return node_; }
  const std::string& op() const { return node_.op_type(); }
  int64_t opset() const;
  bool folding() const { return folding_; }  // every input a constant: computed at import

  // Inputs: an absent optional input (missing or named "") is has_input false.
  int num_inputs() const { return node_.input_size(); }
  bool has_input(int k) const;
  OValue& value(int k);                      // ValueError when absent
  Tensor in(int k);                          // in the ONNX layout (a tainted constant is refused)
  Tensor const_in(int k, const char* what);  // must be a constant (ValueError otherwise)
  // A constant integer input as numbers; allow_tainted only where unknown dims are resolved.
  std::vector<int64_t> ints_in(int k, const char* what, bool allow_tainted = false);
  std::vector<double> floats_in(int k, const char* what);
  Shape traced_shape(int k);  // the input's shape in the ONNX layout, symbolic dims as traced
  // Which dims of input k are unknown (symbolic); all false when the model has none.
  std::vector<bool> unknown_dims(int k);
  // Which dims of output k (traced as `traced`) are unknown: they differ from the first
  // trace's (all false in the first trace).
  std::vector<bool> unknown_out_dims(int k, const Shape& traced);
  // A constant the mapping builds (indices, converted weights): counted against the import's
  // allocation budget (ValueError past it), so a hostile file cannot make the importer allocate
  // more than a bounded multiple of its size.
  void charge(int64_t elements, DType dtype);

  // Attributes.
  bool has_attr(const char* name) const;
  int64_t attr_int(const char* name, int64_t fallback) const;
  double attr_float(const char* name, double fallback) const;
  std::string attr_string(const char* name, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const char* name) const;  // empty when absent
  std::vector<double> attr_floats(const char* name) const;
  const onnx::TensorProto* attr_tensor(const char* name) const;  // null when absent

  // Outputs (one per ONNX output; outputs named "" are dropped).
  int num_outputs() const { return node_.output_size(); }
  void set_out(int k, Tensor t);
  void set_out(int k, OValue v);

  // ValueError "onnx import: node 'n' (Op): <what>": the node cannot be imported as asked.
  [[noreturn]] void fail(const std::string& what) const;
  std::string where() const;
  Importer& importer() { return im_; }

 private:
  Importer& im_;
  const onnx::NodeProto& node_;
  bool folding_;
};

using MapFn = void (*)(NodeCtx& c);

// The mapping of `op_type` (default domain), or null when unsupported.
MapFn find_mapping(const std::string& op_type);
// Every mapped op type, sorted.
std::vector<std::string> mapped_ops();

// Each mapping file's table.
struct Mapping {
  const char* op;
  MapFn fn;
};
std::vector<Mapping> elementwise_mappings();  // import_ops.cc
std::vector<Mapping> shape_mappings();        // import_shape_ops.cc
std::vector<Mapping> math_mappings();         // import_math_ops.cc
std::vector<Mapping> nn_mappings();           // import_nn_ops.cc
std::vector<Mapping> resample_mappings();     // import_resample_ops.cc
std::vector<Mapping> quantize_mappings();     // import_quantize_ops.cc

// A TensorProto as a kiln tensor (FormatError naming `where` on malformed data).
Tensor tensor_from_proto(const onnx::TensorProto& p, const std::string& where);
// An ONNX TensorProto.DataType as a kiln dtype; ValueError naming `where` for unsupported ones.
DType dtype_from_onnx(int32_t type, const std::string& where);

// Helpers shared by the mappings (import_ops.cc).
// Larger dims are refused before anything multiplies them (no overflow, no huge allocation).
inline constexpr int64_t kMaxDim = int64_t{1} << 31;
// ValueError unless the node has lo..hi inputs (counting up to the last present one).
void require_input_count(NodeCtx& c, int lo, int hi);
// A rank-0 constant of `like`'s dtype.
Tensor scalar_of(double v, const Tensor& like);
// ValueError naming the dtype unless `t` is float32/float64.
void require_float(NodeCtx& c, const Tensor& t);
using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);
// f(a, b) with NumPy broadcasting; keeps a held-transposed operand's layout where the other
// operand can follow it (same layout, a constant, or a symbolic tensor of the same rank).
OValue binary(NodeCtx& c, OValue& a, OValue& b, BinaryFn f);
// x reshaped to `target` (the traced sizes): dims unknown in `unknown` become -1 (at most one;
// ValueError for more), so the graph serves every size of them.
Tensor reshape_to(NodeCtx& c, const Tensor& x, const Shape& target,
                  const std::vector<bool>& unknown);
// axis in [-rank, rank) as a dim index; ValueError otherwise (every axis of a scalar).
int normalize_axis(const NodeCtx& c, int64_t axis, int rank);
std::vector<int> inverse_perm(const std::vector<int>& perm);
// The tensor in the ONNX layout (transposing a held-transposed value once, cached).
Tensor logical_of(OValue& v);
bool is_symbolic(const Tensor& t);
// The value's shape in the ONNX layout.
Shape logical_shape(const OValue& v);
// Per dim, whether a and b differ (all true when their ranks do).
std::vector<bool> differing_dims(const Shape& a, const Shape& b);

// The import state of a model (one per trace).
class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string where, int64_t unknown_size,
           const Importer* first_trace, int64_t budget_bytes, const OnnxImportOptions& options);
  // Traces the graph: fills graph/ports. Throws FormatError / ValueError.
  void run();

  const std::string& where() const { return where_; }
  int64_t opset() const { return opset_; }
  OValue& value(const std::string& name, const NodeCtx* user);
  void define(const std::string& name, OValue v, const NodeCtx* by);
  bool defined(const std::string& name) const { return values_.count(name) != 0; }
  // The first trace's version of a value (null in the first trace or when absent).
  const OValue* first_trace_value(const std::string& name) const;

  // Counts `bytes` against the budget; false (nothing counted) when they do not fit.
  bool try_charge(int64_t bytes);

  graph::Graph graph;
  std::vector<GraphPort> input_ports, output_ports;
  std::vector<Tensor> input_tensors;  // the traced (symbolic) inputs

 private:
  const onnx::ModelProto& model_;
  std::string where_;
  int64_t opset_ = 0;
  int64_t unknown_size_;
  const Importer* first_;
  int64_t budget_;
  const OnnxImportOptions& options_;
  std::map<std::string, OValue> values_;
};

}  // namespace kiln::onnx_import
