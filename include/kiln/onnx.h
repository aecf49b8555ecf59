// ONNX (https://onnx.ai) in and out of kiln: export a model or frozen graph to an .onnx file
// that ONNX Runtime and other frameworks run, and import an .onnx file as a frozen graph.
// Protobuf and ONNX's headers stay in src/onnx: this header is light.
#pragma once

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
// file is untouched on any error). Throws
//  - ValueError naming the op and the node ("export_onnx: op 'sgd_update' (node 12) has no
//    ONNX mapping") for an op that ONNX cannot express here (training and gradient ops,
//    fused ops, one_hot), and for an opset outside 13..17;
//  - StateError for an empty GraphModel; kiln::Error when the file cannot be written.
void export_onnx(const GraphModel& model, const std::string& path,
                 const OnnxExportOptions& options = {});

// freeze(model) with options.input_signature, then export_onnx of the frozen graph. Throws what
// kiln::freeze throws (StateError for an unbuilt model without a signature) and the above.
void export_onnx(Layer& model, const std::string& path, const OnnxExportOptions& options = {});

// The serialized ModelProto export_onnx would write (for tools and tests that keep it in memory).
std::string export_onnx_bytes(const GraphModel& model, const OnnxExportOptions& options = {});

}  // namespace kiln
