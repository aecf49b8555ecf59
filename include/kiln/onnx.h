// ONNX (https://onnx.ai) in and out of kiln: export a model or frozen graph to an .onnx file
// that ONNX Runtime and other frameworks run, and import an .onnx file as a frozen graph.
// Protobuf and ONNX's headers stay in src/onnx: this header is light.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/graph_model.h"
#include "kiln/nn/layer.h"

namespace kiln {

// ---- export (src/onnx/export.cc) ---------------------------------------------------------
//
//   kiln::export_onnx(*model, "m.onnx");                  // freezes, then exports
//   kiln::export_onnx(frozen, "m.onnx", {.opset = 17});    // a GraphModel as it is
//
// The exported model keeps kiln's interface: the same input and output names ("input",
// "output"), dtypes and NHWC layout (so one .npy feeds kiln and ONNX Runtime alike), with every
// unknown dim symbolic ("N" for the batch dim). Inside, images run as NCHW, the only layout
// ONNX's Conv and pooling ops know: conv filters are converted HWIO -> OIHW and per-channel
// constants to [1, C, 1, 1] when the file is written, and a Transpose is placed only where
// kiln's NHWC order becomes visible (after an input that feeds a conv or pool, before a
// reshape such as Flatten, at an output). So the graph has no transpose pairs around each
// conv, and a consumer optimizes plain NCHW Conv/Pool chains. Constants become initializers
// (a weight shared by several layers is stored once); a bias add after a conv or 2-D matmul
// becomes the Conv's / Gemm's bias input. Dropout is gone (freeze traces inference), and
// BatchNormalization is folded into the conv/dense before it by freeze or, unfolded, exported
// as its elementwise ops.
//
// int8 graphs (kiln::quantize_model's) are written in ONNX's QDQ format, which ONNX Runtime
// fuses into its integer kernels (QLinearConv, QGemm, uint8 MaxPool): quantize / dequantize
// become QuantizeLinear / DequantizeLinear; quantized_conv2d / quantized_matmul become a float
// Conv / Gemm whose inputs are DequantizeLinear nodes (the activation; int8 weights per output
// channel, zero point 0; the bias as int32 at scale input_scale * weight_scale) followed, for a
// uint8 output, by QuantizeLinear (a ReLU before a zero point of 0 is that QuantizeLinear's
// clamp); max_pool2d / reshape of uint8 values become DequantizeLinear -> MaxPool / Reshape ->
// QuantizeLinear with the same parameters. ONNX Runtime then agrees with kiln's int8 model
// within one quantization step of the output (tests/onnx/export_quantized_test.cc).
struct OnnxExportOptions {
  // The default ONNX opset version: 13 to 17 are written (ValueError otherwise). The ops used
  // are the same in all of them except where a newer one is needed (Reshape to a 0-size dim
  // needs allowzero, opset 14).
  int opset = 13;
  // For export_onnx(Layer&): the model's input signature (FreezeOptions::input_signature);
  // default: its built input shapes with the batch dim unknown.
  std::optional<std::vector<TensorSpec>> input_signature;
  // The ModelProto's graph name; default: the model's name.
  std::string graph_name;
};

// Writes `model`'s stored (unfused) graph to `path` as an ONNX model, atomically (an existing
// file is untouched on any error). Mapped: every op of an inference graph of the built-in
// layers (matmul -> Gemm/MatMul, conv2d -> Conv, max/avg_pool2d -> MaxPool/AveragePool,
// elementwise, comparisons, where, cast, activations (gelu as its erf/tanh formula), softmax,
// log_softmax, sum/mean/max/argmax, reshape, transpose, concat, slice, rows, pad, gather,
// broadcast_to, copy, dropout (dropped)). Throws
//  - ValueError naming the op and the node ("export_onnx: op 'sgd_update' (node 12) has no
//    ONNX mapping") for an op that ONNX cannot express here (training and gradient ops,
//    fused ops, one_hot, int8 matmul, a quantized op whose weights or quantization parameters
//    are computed rather than constants), and for an opset outside 13..17;
//  - ValueError for an empty or repeated port name (ONNX names values by string);
//  - StateError for an empty GraphModel; kiln::Error when the file cannot be written.
void export_onnx(const GraphModel& model, const std::string& path,
                 const OnnxExportOptions& options = {});

// freeze(model) with options.input_signature, then export_onnx of the frozen graph. Throws what
// kiln::freeze throws (StateError for an unbuilt model without a signature) and the above.
void export_onnx(Layer& model, const std::string& path, const OnnxExportOptions& options = {});

// The serialized ModelProto export_onnx would write (for tools and tests that keep it in memory).
std::string export_onnx_bytes(const GraphModel& model, const OnnxExportOptions& options = {});

// ---- import (src/onnx/import.cc, import_ops.cc, import_nn_ops.cc) -------------------------
//
// An ONNX model (opsets 9 to 17, and older ones for ops that mean the same there) becomes a
// kiln::GraphModel that kiln runs with its own executor (fusion, memory planning,
// allocation-free calls).
//
//   kiln::GraphModel m = kiln::import_onnx("model.onnx");
//   std::vector<kiln::Tensor> ys = m({x});       // NCHW in, as the ONNX model declares
//
// QDQ models import: QuantizeLinear / DequantizeLinear of activations (per tensor) become kiln's
// quantize / dequantize, per-channel DequantizeLinear of weights is computed at import, so Conv
// and Gemm run in float between them (per-axis QuantizeLinear is refused).
// Each ONNX node maps onto ordinary kiln ops (an op kiln lacks is an OpDef in src/ops like any
// other, never an importer-only kernel). Inputs and outputs keep the model's names, dtypes and
// declared shapes and layout; symbolic dims become kUnknownDim, so one trace serves every batch
// size. Initializers and Constant nodes become captured constants. Inside, NCHW convolutions and
// pools run in kiln's NHWC layout: filters are converted once at import and activations are
// held in NHWC through elementwise ops, pools, BatchNormalization and further convs, so they are
// transposed only where a value leaves that region (src/onnx/import_context.h). Measured on
// the cnn: as fast as the same network in kiln's NHWC ops; transposes around every
// conv cost 25-70% more (tests/onnx/layout_slow_test.cc).
//
// Errors, each naming the file (or `name`) first: FormatError for anything that is not a
// well-formed ONNX model (protobuf parse failure, missing fields, tensors whose data does not
// match their dims, values used before or defined twice); ValueError naming the node and its op
// type for an op, attribute value, dtype or opset kiln does not support ("m.onnx: node 'n3'
// (LpPool): unsupported op"), and for a constant computed from a symbolic dim used where a
// size would be baked in; ShapeError / DTypeError from a kiln op's checks, prefixed with the
// node. Nothing is computed wrongly: what is not supported is refused at import. Constants the
// importer builds stay within 4 x the file's size + 16 MiB. Thread safety: reentrant.
struct OnnxImportOptions {
  // Graph inputs fixed to these values at import: each becomes a constant and leaves the
  // model's inputs. For parameters kiln needs at import that a model passes as graph inputs
  // (Reshape's shape, Slice's starts, Resize's scales, Squeeze's axes). A name that is not a
  // graph input, or a tensor whose dtype or dims do not fit its declaration, is a ValueError.
  std::map<std::string, Tensor> constant_inputs;
};

// Reads and imports the model at `path` (FormatError if it cannot be read).
GraphModel import_onnx(const std::string& path, const OnnxImportOptions& options = {});

// Imports a serialized ModelProto held in memory; `name` stands for the file in messages.
GraphModel import_onnx_bytes(const void* data, size_t size, const std::string& name = "<bytes>",
                             const OnnxImportOptions& options = {});

// The ONNX op types the importer maps (for docs, `kiln summary` and the conformance test).
std::vector<std::string> onnx_supported_ops();

}  // namespace kiln
