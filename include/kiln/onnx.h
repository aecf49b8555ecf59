// ONNX import: an ONNX model (opsets 9 to 17) becomes a kiln::GraphModel that kiln runs with its
// own executor (fusion, memory planning, allocation-free calls). Link kiln::onnx (kiln_onnx).
//
//   kiln::GraphModel m = kiln::import_onnx("model.onnx");
//   std::vector<kiln::Tensor> ys = m({x});       // NCHW in, as the ONNX model declares
//
// Each ONNX node maps onto ordinary kiln ops (an op kiln lacks is an OpDef in src/ops like any
// other, never an importer-only kernel). Inputs and outputs keep the model's names, dtypes and
// declared shapes and layout; symbolic dims become kUnknownDim, so one trace serves every batch
// size. Initializers and Constant nodes become captured constants. Inside, NCHW convolutions and
// pools run in kiln's NHWC layout: filters are converted once at import and activations are
// transposed only where a value leaves the NHWC region (src/onnx/layout.h).
//
// Errors: FormatError naming the file (or "<bytes>") and what was wrong for anything that is not
// a well-formed ONNX model (protobuf parse failure, missing fields, tensors whose data does not
// match their dims, values used before definition); ValueError naming the op type and node
// name for an op, attribute value, dtype or opset kiln does not support ("onnx import: node
// 'n3' (LpPool): unsupported op"). Nothing is computed wrongly: what is not supported is
// refused at import. Thread safety: the functions are reentrant.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "kiln/graph_model.h"

namespace kiln {

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
