// The ONNX exporter's state, shared by its two files: export.cc (names, initializers, the two
// layouts, the public API) and export_ops.cc (one emitter per kiln op).
//
// Layout: kiln's images are NHWC, ONNX's Conv and pooling ops NCHW. Each value may have an ONNX
// name in kiln's layout ("plain") and one as NCHW (rank 4 only); conv and pool read and write
// NCHW, layout-free ops (elementwise, softmax, concat, reductions) stay in whichever layout their
// inputs have, and every other op reads plain values. A missing form is made on first use: a
// constant is converted when the file is written, a computed value gets one Transpose. So an
// NHWC -> NCHW Transpose appears only where a plain value meets a conv or pool, and NCHW -> NHWC
// only where NHWC order is visible (a reshape such as Flatten, an output).
#pragma once

#include <onnx/onnx_pb.h>  // defines ONNX_API, then includes onnx-ml.pb.h (ONNX_ML)

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "graph/graph.h"
#include "kiln/graph_model.h"

namespace kiln::onnx_export {

// Where each kiln (NHWC) axis sits in NCHW; also the Transpose perm from NCHW to NHWC.
inline constexpr int kAxisInNchw[4] = {0, 2, 3, 1};
inline constexpr int kNhwcToNchw[4] = {0, 3, 1, 2};
inline constexpr int kHwioToOihw[4] = {3, 2, 0, 1};

// ONNX's TensorProto data type of a kiln dtype.
int32_t onnx_type(DType t);

// `bytes` (row-major, elements of `elem` bytes, shape `dims`) with its axes permuted: result
// axis i is input axis perm[i].
std::string permute_bytes(const char* bytes, const std::vector<int64_t>& dims,
                          const std::vector<int>& perm, size_t elem);

// Fills one GraphProto from one GraphModel; used once (run()). Throws ValueError naming the op
// and node for an op without a mapping.
class Exporter {
 public:
  Exporter(const GraphModel& model, int opset, onnx::GraphProto* gp);
  void run();

 private:
  using Node = graph::Node;

  // ---- names, nodes, initializers (export.cc) ----
  std::string unique(const std::string& base);
  // "v12", "v12_nchw": the base name of value v's ONNX names.
  static std::string value_name(int v, const char* suffix = "");
  // The name a node gives value v in kiln's layout: its output port's when it is one.
  std::string plain_target(int v);
  onnx::NodeProto* node(const char* type, const std::vector<std::string>& in,
                        const std::vector<std::string>& out);
  static void attr_int(onnx::NodeProto* n, const char* name, int64_t v);
  static void attr_float(onnx::NodeProto* n, const char* name, double v);
  static void attr_ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v);
  static void attr_string(onnx::NodeProto* n, const char* name, const std::string& v);
  std::string initializer(const std::string& base, DType dt, const std::vector<int64_t>& dims,
                          std::string bytes);
  std::string const_i64(const std::vector<int64_t>& v, const std::string& base);
  // A rank-0 constant of dtype dt holding `value`.
  std::string const_scalar(double value, DType dt);
  void add_port(onnx::ValueInfoProto* vi, const GraphPort& p);

  // ---- values in either layout (export.cc) ----
  bool is_capture(int v) const {
    return g_.values[v].kind == graph::ValueKind::kConstant ||
           g_.values[v].kind == graph::ValueKind::kVariable;
  }
  const Tensor& data(int v) const { return g_.values[v].captured; }
  const Meta& meta(int v) const { return g_.values[v].meta; }
  int rank(int v) const { return meta(v).shape.rank(); }
  std::vector<int64_t> dims(int v) const { return meta(v).shape.vec(); }
  bool only_nchw(int v) const { return plain_[v].empty() && !nchw_[v].empty(); }
  std::string bytes(int v) const;
  // v's ONNX name in kiln's layout.
  std::string plain(int v);
  // v as NCHW, for an op whose result has rank 4: a constant of lower rank is first padded with
  // leading 1s, as broadcasting would.
  std::string nchw(int v);
  // Whether an elementwise node computes in NCHW: its result has rank 4, some input exists only
  // as NCHW, and every computed input has rank 4 (constants are converted at export time).
  bool elementwise_in_nchw(const Node& n) const;
  // Emits an elementwise ONNX op over n's inputs in the layout elementwise_in_nchw picks.
  void elementwise(const Node& n, const char* type);
  // The name of n's output in the layout it is computed in, and recording it.
  std::string out_name(const Node& n, bool in_nchw);
  void finish(const Node& n, onnx::NodeProto* p, bool in_nchw);
  // n's output is its input `from` (no node).
  void alias(const Node& n, int32_t from);

  // ---- the ops (export_ops.cc) ----
  [[noreturn]] void unsupported(int i, const std::string& why) const;
  void emit(int i);
  void emit_conv(int i);
  void emit_pool(int i, const char* type);
  void emit_matmul(int i);
  void emit_reduce(int i, const char* type);
  void emit_gelu(const Node& n);

  // ---- int8 graphs in QDQ form (export_quantized.cc) ----
  // quantize, dequantize, quantized_conv2d/_matmul, and max_pool2d/reshape of a uint8 value
  // whose quantization parameters are known.
  bool is_quantized_op(const Node& n);
  void emit_quantized(int i);
  void emit_qlinear(int i);
  // The (scale, zero point) value ids of uint8/int8 value v: from the quantize or quantized op
  // that made it, through max_pool2d/reshape; {-1, -1} when unknown.
  std::pair<int, int> qparams_of(int v);
  // A QuantizeLinear / DequantizeLinear node over x with kiln values scale and zp.
  std::string qdq_node(const char* type, const std::string& x, int scale, int zp,
                       const std::string& out);
  // The float32 scalar constant v (an input of node i); refuses a computed one.
  float const_float(int i, int v, const char* what) const;
  // The constant bias [C] added to conv/matmul output `v` by its only reader, absorbed: marks
  // the add as done, sets bias_out_ to its output and returns the bias's initializer name; ""
  // when there is none.
  std::string absorb_bias(int v, int64_t channels);
  // TensorFlow's "same" padding (the odd pixel after) as ONNX pads, or auto_pad SAME_UPPER
  // when the spatial sizes are not known.
  void set_padding(onnx::NodeProto* p, bool same, int x, int64_t kh, int64_t kw, int64_t sh,
                   int64_t sw, int64_t dh, int64_t dw);

  const graph::Graph& g_;
  const GraphModel& model_;
  const int opset_;
  onnx::GraphProto* gp_;
  std::vector<std::string> plain_, nchw_, port_of_;
  std::vector<std::vector<int>> readers_;
  std::vector<bool> absorbed_;
  std::set<std::string> used_;
  bool spatial_known_ = true;  // only batch dims unknown: explicit pads can be computed
  std::map<int, std::string> oihw_init_, bias_init_;  // converted constants by value id
  int bias_out_ = -1;
};

}  // namespace kiln::onnx_export
