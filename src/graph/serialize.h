// Graphs as data: JSON naming each node's op and its attributes by the op's schema (so a file
// reads "conv2d {strides: [1, 1], padding: "same", ...}", never positional integers), with
// captured constants stored beside it as tensors (in a model file: safetensors entries).
//
// The reader trusts nothing: every op must exist, every attribute fit its op's schema, every
// value id be in range and defined before use, and every node's inferred shapes equal the
// stored ones (graph::validate). Errors are FormatError naming `where`, the node and the field.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "graph/graph.h"

namespace kiln::graph {

// The version written; a reader refuses graphs of a newer one.
inline constexpr int kGraphFormatVersion = 1;

// JSON of `g` (no kVariable values: ValueError). Constants are appended to `constants` under
// names `prefix + value id` ("graph/7") and referred to by those names.
nlohmann::json graph_to_json(const Graph& g, const std::string& prefix,
                             std::vector<std::pair<std::string, Tensor>>& constants);

// The graph described by `j`, with constants looked up by name in `constants` (a missing or
// mismatched one is a FormatError). Validated (graph::validate) before it is returned.
Graph graph_from_json(const nlohmann::json& j, const std::map<std::string, Tensor>& constants,
                      const std::string& where);

// Attrs by name (exposed for tests and ONNX export): {"strides": [1, 1], "padding": "same"}.
nlohmann::json attrs_to_json(const OpDef& op, const Attrs& attrs);
// The inverse; FormatError naming `where`, the op and the field for a missing, unknown or
// ill-typed field.
Attrs attrs_from_json(const OpDef& op, const nlohmann::json& j, const std::string& where);

}  // namespace kiln::graph
