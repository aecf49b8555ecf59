// save_model / load_model: one safetensors container (see kiln/model_file.h for why) with the
// architecture, weights, optimizer state and frozen graph. Loading parses and checks every
// JSON part before anything is built, and assigns weights only after all of them fit.
#include "kiln/model_file.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "graph/serialize.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/nn/config.h"
#include "kiln/nn/variable_store.h"
#include "kiln/ops.h"
#include "nn/weight_keys.h"

namespace kiln {

using json = nlohmann::json;

namespace {

constexpr const char* kFormatKey = "kiln.format";
constexpr const char* kFormatName = "kiln.model";
constexpr const char* kVersionKey = "kiln.format_version";
constexpr const char* kMetadataKey = "kiln.metadata";
constexpr const char* kConfigKey = "kiln.config";
constexpr const char* kOptimizerKey = "kiln.optimizer";
constexpr const char* kGraphKey = "kiln.graph";
constexpr const char* kWeightsPrefix = "weights/";
constexpr const char* kOptimizerPrefix = "optimizer/";
constexpr const char* kGraphPrefix = "graph/";
constexpr const char* kStatesPrefix = "states/";
constexpr const char* kKilnVersion = "0.1.0";
constexpr int kMaxJsonDepth = 64;

std::string clip(const std::string& s) { return s.size() <= 80 ? s : s.substr(0, 80) + "..."; }

// ---- JSON pieces --------------------------------------------------------------------------

json spec_to_json(const TensorSpec& s) {
  json dims = json::array();
  for (int64_t d : s.dims) dims.push_back(d == kUnknownDim ? json(nullptr) : json(d));
  return {{"dtype", std::string(dtype_name(s.dtype))}, {"shape", dims}};
}

DType parse_dtype(const json& j, const std::string& where) {
  const std::optional<DType> t =
      j.is_string() ? dtype_from_name(j.get<std::string>()) : std::nullopt;
  if (!t) throw FormatError(where + ": dtype " + clip(j.dump()) + " is not a kiln dtype");
  return *t;
}

TensorSpec spec_from_json(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("dtype") || !j.contains("shape") || !j.at("shape").is_array() ||
      j.at("shape").size() > static_cast<size_t>(Shape::kMaxRank)) {
    throw FormatError(where + ": expected {\"dtype\": ..., \"shape\": [dims or null]}, got " +
                      clip(j.dump()));
  }
  TensorSpec s;
  s.dtype = parse_dtype(j.at("dtype"), where);
  for (const json& d : j.at("shape")) {
    if (d.is_null()) {
      s.dims.push_back(kUnknownDim);
    } else if (d.is_number_integer() && d.get<int64_t>() >= 0) {
      s.dims.push_back(d.get<int64_t>());
    } else {
      throw FormatError(where + ": dim " + clip(d.dump()) + " is neither null nor >= 0");
    }
  }
  return s;
}

json port_to_json(const GraphPort& p) {
  json j = spec_to_json(p.spec);
  j["name"] = p.name;
  return j;
}

GraphPort port_from_json(const json& j, const std::string& where) {
  GraphPort p;
  p.spec = spec_from_json(j, where);
  if (!j.contains("name") || !j.at("name").is_string()) {
    throw FormatError(where + ": a port needs a string 'name'");
  }
  p.name = j.at("name").get<std::string>();
  return p;
}

// Parses a metadata string as JSON, refusing nesting deeper than kMaxJsonDepth.
json parse_json(const std::string& text, const std::string& path, const char* key) {
  try {
    return json::parse(text, [&](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) {
        throw FormatError(path + ": " + key + " nests deeper than " +
                          std::to_string(kMaxJsonDepth) + " levels");
      }
      return true;
    });
  } catch (const json::exception& e) {
    throw FormatError(path + ": " + key + " is not valid JSON: " + clip(e.what()));
  }
}

const json& member(const json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) {
    throw FormatError(where + ": field '" + name + "' is missing");
  }
  return j.at(name);
}

std::string string_member(const json& j, const char* name, const std::string& where) {
  const json& v = member(j, name, where);
  if (!v.is_string()) throw FormatError(where + ": field '" + name + "' must be a string");
  return v.get<std::string>();
}

// ---- the frozen graph part ------------------------------------------------------------------

// Constants equal to a weight (same dtype, shape and bytes) are saved as that weight's tensor,
// so the file holds them once (safetensors aliases).
Tensor dedupe(const Tensor& constant, const std::vector<Tensor>& weights) {
  for (const Tensor& w : weights) {
    if (w.dtype() == constant.dtype() && w.shape() == constant.shape() && w.numel() > 0 &&
        std::memcmp(w.raw_data(), constant.raw_data(), w.nbytes()) == 0) {
      return w;
    }
  }
  return constant;
}

json graph_part(const GraphModel& g, const std::vector<Tensor>& weights,
                std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<std::pair<std::string, Tensor>> constants;
  json j = graph::graph_to_json(g.graph(), kGraphPrefix, constants);
  for (auto& [name, t] : constants) tensors.emplace_back(name, dedupe(t, weights));
  json in = json::array(), out = json::array(), folded = json::array();
  for (const GraphPort& p : g.inputs()) in.push_back(port_to_json(p));
  for (const GraphPort& p : g.outputs()) out.push_back(port_to_json(p));
  for (const FoldedVariableInfo& f : g.folded_variables()) {
    folded.push_back({{"name", f.name}, {"version", f.version}});
  }
  j["name"] = g.name();
  j["input_ports"] = std::move(in);
  j["output_ports"] = std::move(out);
  j["folded_variables"] = std::move(folded);
  return j;
}

GraphModel graph_from_part(const json& j, const SafetensorsFile& file, const std::string& path) {
  const std::string where = path + ": " + kGraphKey;
  std::map<std::string, Tensor> constants;
  for (const auto& [name, t] : file.all()) {
    if (name.rfind(kGraphPrefix, 0) == 0) constants.emplace(name, t);
  }
  graph::Graph g = graph::graph_from_json(j, constants, where);
  std::vector<GraphPort> in, out;
  const json& ins = member(j, "input_ports", where);
  const json& outs = member(j, "output_ports", where);
  if (!ins.is_array() || !outs.is_array()) {
    throw FormatError(where + ": input_ports and output_ports must be lists");
  }
  for (const json& p : ins) in.push_back(port_from_json(p, where + ": input port"));
  for (const json& p : outs) out.push_back(port_from_json(p, where + ": output port"));
  std::vector<FoldedVariableInfo> folded;
  if (j.contains("folded_variables")) {
    const json& f = j.at("folded_variables");
    if (!f.is_array()) throw FormatError(where + ": folded_variables must be a list");
    for (const json& e : f) {
      const json& v = member(e, "version", where + ": folded_variables");
      if (!v.is_number_unsigned()) {
        throw FormatError(where + ": folded_variables: version must be an unsigned integer");
      }
      folded.push_back({string_member(e, "name", where + ": folded_variables"), v.get<uint64_t>()});
    }
  }
  std::string name = j.contains("name") && j.at("name").is_string()
                         ? j.at("name").get<std::string>()
                         : std::string("graph");
  GraphModel model;
  try {
    model = GraphModel(std::move(g), std::move(in), std::move(out), name);
  } catch (const Error& e) {
    throw FormatError(where + ": " + e.what());
  }
  model.set_folded_variables(std::move(folded));
  return model;
}

// ---- layer states (random generators) --------------------------------------------------------

// Every layer's state_tensors() keyed by its place in the tree: "states/4/seed_generator".
void collect_states(const Layer& layer, const std::string& prefix,
                    std::vector<std::pair<std::string, Tensor>>& out) {
  for (const auto& [name, t] : layer.state_tensors()) out.emplace_back(prefix + name, t);
  for (size_t i = 0; i < layer.layers().size(); ++i) {
    collect_states(*layer.layers()[i], prefix + std::to_string(i) + "/", out);
  }
}

// Checks every saved state against the model's, then assigns them.
void restore_states(const Layer& model, const SafetensorsFile& file, const std::string& path) {
  std::vector<std::pair<std::string, Tensor>> states;
  collect_states(model, kStatesPrefix, states);
  std::set<std::string> expected;
  for (const auto& [name, t] : states) {
    expected.insert(name);
    if (!file.contains(name)) throw FormatError(path + ": layer state '" + name + "' is missing");
    const Tensor& saved = file.at(name);
    if (saved.shape() != t.shape() || saved.dtype() != t.dtype()) {
      throw FormatError(path + ": layer state '" + name + "' is " + to_string(saved.shape()) + " " +
                        std::string(dtype_name(saved.dtype())) + ", expected " +
                        to_string(t.shape()) + " " + std::string(dtype_name(t.dtype())));
    }
  }
  for (const auto& [name, t] : file.all()) {
    if (name.rfind(kStatesPrefix, 0) == 0 && !expected.count(name)) {
      throw FormatError(path + ": layer state '" + clip(name) + "' belongs to no layer");
    }
  }
  for (const auto& [name, t] : states) assign(t, file.at(name));
}

// ---- metadata -----------------------------------------------------------------------------

json metadata_part(const std::string& model_name, const std::string& class_name,
                   const std::vector<TensorSpec>& signature,
                   const std::map<std::string, std::string>& training) {
  json sig = json::array();
  for (const TensorSpec& s : signature) sig.push_back(spec_to_json(s));
  return {{"kiln_version", kKilnVersion},
          {"model_name", model_name},
          {"class_name", class_name},
          {"input_signature", sig},
          {"training", training}};
}

std::map<std::string, std::string> to_strings(const std::map<std::string, std::string>& m) {
  return m;
}

void write_file(const std::string& path, std::vector<std::pair<std::string, Tensor>>& tensors,
                std::map<std::string, std::string>& meta) {
  meta[kFormatKey] = kFormatName;
  meta[kVersionKey] = std::to_string(kModelFormatVersion);
  save_safetensors(path, tensors, meta);
}

std::vector<TensorSpec> signature_of(Layer& model, const SaveModelOptions& options) {
  return options.input_signature ? *options.input_signature : inference_signature(model);
}

}  // namespace

// ---- save ---------------------------------------------------------------------------------

void save_model(Layer& model, const std::string& path, const SaveModelOptions& options) {
  if (!model.built()) {
    throw StateError("save_model: model '" + model.name() + "' is not built; call it once first");
  }
  std::map<std::string, std::string> meta;
  std::optional<json> config;
  if (has_config(model)) config = serialize_layer(model);
  const std::vector<TensorSpec> signature = signature_of(model, options);

  std::vector<std::pair<std::string, Tensor>> tensors;
  const Keyed keyed = weight_keys(model);
  std::vector<Tensor> weight_values;
  if (config) {
    meta[kConfigKey] = config->dump();
    for (const auto& [key, v] : keyed) {
      tensors.emplace_back(kWeightsPrefix + key, v.value());
      weight_values.push_back(v.value());
    }
    collect_states(model, kStatesPrefix, tensors);
  }
  if (options.optimizer) {
    if (!config) {
      throw ValueError("save_model: model '" + model.name() + "' (" + model.type_name() +
                       ") has no config, so it is saved as an inference graph; its optimizer "
                       "state cannot be saved with it (register the class with "
                       "KILN_REGISTER_LAYER)");
    }
    const Optimizer& opt = *options.optimizer;
    json o = serialize_optimizer(opt);
    o["iterations"] = opt.iterations();
    meta[kOptimizerKey] = o.dump();
    std::unordered_set<const void*> seen;
    for (const auto& [key, v] : keyed) {
      if (!seen.insert(v.id()).second) continue;  // a shared variable has one set of slots
      for (const std::string& s : opt.slot_names()) {
        Variable slot = opt.slot(v, s);
        if (slot.defined()) tensors.emplace_back(kOptimizerPrefix + key + "/" + s, slot.value());
      }
    }
  }
  if (options.frozen || !config) {
    FreezeOptions fo;
    fo.input_signature = signature;
    GraphModel frozen = freeze(model, fo);
    meta[kGraphKey] = graph_part(frozen, weight_values, tensors).dump();
  }
  meta[kMetadataKey] =
      metadata_part(model.name(), model.type_name(), signature, to_strings(options.training))
          .dump();
  write_file(path, tensors, meta);
}

void save_model(const GraphModel& graph, const std::string& path,
                const std::map<std::string, std::string>& training) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> meta;
  meta[kGraphKey] = graph_part(graph, {}, tensors).dump();
  std::vector<TensorSpec> signature;
  for (const GraphPort& p : graph.inputs()) signature.push_back(p.spec);
  meta[kMetadataKey] = metadata_part(graph.name(), "GraphModel", signature, training).dump();
  write_file(path, tensors, meta);
}

// ---- load ---------------------------------------------------------------------------------

namespace {

struct Parsed {
  SafetensorsFile file;
  ModelFileInfo info;
  std::optional<json> config, optimizer, graph;
};

Parsed parse_file(const std::string& path) {
  Parsed p;
  p.file = load_safetensors(path);
  const auto& md = p.file.metadata;
  auto it = md.find(kFormatKey);
  if (it == md.end() || it->second != kFormatName) {
    throw FormatError(path + ": not a kiln model file (no '" + std::string(kFormatKey) +
                      "': " + kFormatName +
                      " in its metadata; a weights checkpoint loads with "
                      "load_weights)");
  }
  it = md.find(kVersionKey);
  if (it == md.end()) throw FormatError(path + ": field '" + kVersionKey + "' is missing");
  int version = 0;
  try {
    size_t used = 0;
    version = std::stoi(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw FormatError(path + ": " + kVersionKey + " '" + clip(it->second) + "' is not a number");
  }
  if (version < 1)
    throw FormatError(path + ": format version " + std::to_string(version) + " is not valid");
  if (version > kModelFormatVersion) {
    throw FormatError(path + ": format version " + std::to_string(version) +
                      " is newer than this kiln reads (" + std::to_string(kModelFormatVersion) +
                      "); upgrade kiln");
  }
  p.info.format_version = version;
  it = md.find(kMetadataKey);
  if (it == md.end()) throw FormatError(path + ": field '" + kMetadataKey + "' is missing");
  const json meta = parse_json(it->second, path, kMetadataKey);
  const std::string where = path + ": " + kMetadataKey;
  p.info.kiln_version = string_member(meta, "kiln_version", where);
  p.info.model_name = string_member(meta, "model_name", where);
  p.info.class_name = string_member(meta, "class_name", where);
  const json& sig = member(meta, "input_signature", where);
  if (!sig.is_array()) throw FormatError(where + ": input_signature must be a list");
  for (const json& s : sig) p.info.input_signature.push_back(spec_from_json(s, where));
  const json& training = member(meta, "training", where);
  if (!training.is_object()) throw FormatError(where + ": training must be an object");
  for (auto t = training.begin(); t != training.end(); ++t) {
    if (!t.value().is_string()) {
      throw FormatError(where + ": training field '" + clip(t.key()) + "' must be a string");
    }
    p.info.training[t.key()] = t.value().get<std::string>();
  }
  if ((it = md.find(kConfigKey)) != md.end()) p.config = parse_json(it->second, path, kConfigKey);
  if ((it = md.find(kOptimizerKey)) != md.end()) {
    p.optimizer = parse_json(it->second, path, kOptimizerKey);
  }
  if ((it = md.find(kGraphKey)) != md.end()) p.graph = parse_json(it->second, path, kGraphKey);
  p.info.has_config = p.config.has_value();
  p.info.has_optimizer = p.optimizer.has_value();
  p.info.has_graph = p.graph.has_value();
  if (!p.config && !p.graph) {
    throw FormatError(path + ": the file has neither a model config nor a graph");
  }
  if (p.optimizer && !p.config) {
    throw FormatError(path + ": an optimizer is saved without a model config");
  }
  if (p.optimizer) {
    const json& n = member(*p.optimizer, "iterations", path + ": " + kOptimizerKey);
    if (!n.is_number_integer() || n.get<int64_t>() < 0) {
      throw FormatError(path + ": " + kOptimizerKey + ": iterations must be an integer >= 0");
    }
    p.info.optimizer_iterations = n.get<int64_t>();
  }
  return p;
}

// A loaded model with the store its variables live in: the store must outlive the layers, and
// a fresh one per load lets one process load the same file twice (names would clash in the
// default store). The model handed out shares ownership of both.
struct OwnedModel {
  std::unique_ptr<VariableStore> store = std::make_unique<VariableStore>();
  std::shared_ptr<Layer> layer;
  ~OwnedModel() { layer.reset(); }  // layers before their store
};

// Rebuilds the model from its config and loads its weights.
std::shared_ptr<Layer> build_model(const Parsed& p, const std::string& path) {
  auto owned = std::make_shared<OwnedModel>();
  try {
    owned->layer = deserialize_layer(*p.config, owned->store.get());
  } catch (const Error& e) {
    throw FormatError(path + ": " + kConfigKey + ": " + e.what());
  }
  std::shared_ptr<Layer> model(owned, owned->layer.get());
  if (p.info.input_signature.empty()) {
    throw FormatError(path + ": " + kMetadataKey + ": the input signature is empty");
  }
  std::vector<Shape> shapes;
  for (const TensorSpec& s : p.info.input_signature) {
    std::vector<int64_t> dims = s.dims;
    for (int64_t& d : dims) d = d == kUnknownDim ? 1 : d;
    shapes.push_back(Shape(dims));
  }
  try {
    if (shapes.size() == 1) {
      model->output_shape(shapes[0]);
    } else {
      model->output_shape(shapes);
    }
  } catch (const Error& e) {
    throw FormatError(path +
                      ": the model config does not build for its input signature: " + e.what());
  }
  assign_keyed(weight_keys(*model), p.file, kWeightsPrefix, path);
  restore_states(*model, p.file, path);
  return model;
}

std::unique_ptr<Optimizer> build_optimizer(const Parsed& p, const Layer& model,
                                           const std::string& path) {
  std::unique_ptr<Optimizer> opt;
  try {
    opt = deserialize_optimizer(*p.optimizer);
  } catch (const Error& e) {
    throw FormatError(path + ": " + kOptimizerKey + ": " + e.what());
  }
  // Check every slot tensor before assigning any.
  std::vector<std::pair<Variable, std::pair<std::string, Tensor>>> slots;
  std::set<std::string> expected;
  std::unordered_set<const void*> seen;
  for (const auto& [key, v] : weight_keys(model)) {
    if (!seen.insert(v.id()).second) continue;
    for (const std::string& s : opt->slot_names()) {
      const std::string name = kOptimizerPrefix + key + "/" + s;
      if (!p.file.contains(name)) continue;  // a variable never updated has no slots yet
      expected.insert(name);
      const Tensor& t = p.file.at(name);
      if (t.shape() != v.shape() || t.dtype() != v.dtype()) {
        throw FormatError(path + ": optimizer slot '" + name + "' is " + to_string(t.shape()) +
                          " " + std::string(dtype_name(t.dtype())) + " but variable '" + v.name() +
                          "' is " + to_string(v.shape()) + " " +
                          std::string(dtype_name(v.dtype())));
      }
      slots.push_back({v, {s, t}});
    }
  }
  for (const auto& [name, t] : p.file.all()) {
    if (name.rfind(kOptimizerPrefix, 0) == 0 && !expected.count(name)) {
      throw FormatError(path + ": optimizer slot '" + clip(name) +
                        "' belongs to no variable of the model");
    }
  }
  for (auto& [v, slot] : slots) opt->slot_for_restore(v, slot.first).assign(slot.second);
  opt->set_iterations(p.info.optimizer_iterations);
  return opt;
}

}  // namespace

ModelFileInfo read_model_info(const std::string& path) { return parse_file(path).info; }

LoadedModel load_model(const std::string& path) {
  Parsed p = parse_file(path);
  LoadedModel m;
  if (p.graph) m.graph = graph_from_part(*p.graph, p.file, path);
  if (p.config) m.model = build_model(p, path);
  if (p.optimizer) m.optimizer = build_optimizer(p, *m.model, path);
  m.info = std::move(p.info);
  return m;
}

Tensor LoadedModel::predict(const Tensor& x) const {
  if (!graph.empty()) return graph(x);
  if (model) return (*model)(x, false);
  throw StateError("LoadedModel::predict: nothing was loaded");
}

Layer& LoadedModel::trainable_model() const {
  if (model) return *model;
  throw StateError("model '" + info.model_name + "' (" + info.class_name +
                   ") was saved as its traced inference graph because its class has no "
                   "config: it loads and predicts but cannot be trained further (register the "
                   "class with KILN_REGISTER_LAYER and save it again)");
}

}  // namespace kiln
