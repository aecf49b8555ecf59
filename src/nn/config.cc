// Layer configs: the registry by class name, serialize/deserialize, ConfigReader.
#include "kiln/nn/config.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/variable_store.h"

namespace kiln {

namespace {

using json = nlohmann::json;

struct Registry {
  std::mutex mu;
  std::map<std::string, LayerFactory> factories;
};

// Keras' class names registered beside kiln's type_name() for the same class.
constexpr std::pair<const char*, const char*> kAliases[] = {
    {"MaxPooling2D", "MaxPool2D"},
    {"AveragePooling2D", "AvgPool2D"},
};

bool same_class(const std::string& class_name, const std::string& type_name) {
  if (class_name == type_name) return true;
  for (const auto& [alias, type] : kAliases) {
    if (class_name == alias && type_name == type) return true;
  }
  return false;
}

// deserialize_layer recurses through nested models; a deeper config is refused rather than
// overflowing the stack.
constexpr int kMaxDepth = 64;
thread_local int t_depth = 0;

class DepthGuard {
 public:
  explicit DepthGuard(const std::string& who) {
    if (++t_depth > kMaxDepth) {
      --t_depth;
      throw FormatError(who + ": layers nested more than " + std::to_string(kMaxDepth) + " deep");
    }
  }
  ~DepthGuard() { --t_depth; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;
};

template <typename L>
LayerFactory factory_of() {
  return [](const json& c) { return L::from_config(c); };
}

// Built-ins are registered here, on first use, rather than by static objects in their own
// files: kiln is a static library, and the linker drops object files nothing references.
void register_builtins(std::map<std::string, LayerFactory>& f) {
  f["Dense"] = factory_of<Dense>();
  f["Activation"] = factory_of<Activation>();
  f["Flatten"] = factory_of<Flatten>();
  f["Dropout"] = factory_of<Dropout>();
  f["Embedding"] = factory_of<Embedding>();
  f["Conv2D"] = factory_of<Conv2D>();
  f["MaxPool2D"] = factory_of<MaxPool2D>();
  f["AvgPool2D"] = factory_of<AvgPool2D>();
  f["GlobalAveragePooling2D"] = factory_of<GlobalAveragePooling2D>();
  f["BatchNormalization"] = factory_of<BatchNormalization>();
  f["LayerNormalization"] = factory_of<LayerNormalization>();
  f["Add"] = factory_of<Add>();
  f["Concatenate"] = factory_of<Concatenate>();
  f["Sequential"] = factory_of<Sequential>();
  for (const auto& [alias, type] : kAliases) f[alias] = f[type];
}

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;  // never destroyed: registrations may run during static teardown
    register_builtins(reg->factories);
    return reg;
  }();
  return *r;
}

// "a, b, c, ... and 12 more": an unknown class lists the registered ones, within reason.
std::string name_list(const std::vector<std::string>& names, size_t max = 30) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > max) out += ", ... and " + std::to_string(names.size() - max) + " more";
  return out;
}

LayerFactory find_factory(const std::string& class_name, const std::string& layer_name) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.factories.find(class_name);
    if (it != r.factories.end()) return it->second;
  }
  throw FormatError(
      "unknown layer class '" + class_name + "'" +
      (layer_name.empty() ? "" : " (layer '" + layer_name + "')") +
      "; register it with KILN_REGISTER_LAYER. Registered: " + name_list(registered_layers()));
}

std::string json_type(const json& j) { return j.type_name(); }

// "[null, 28, 28, 1]" for a built shape; the batch dim may vary, so it is null (Keras' None).
json batchless_shape(const Shape& s) {
  json out = json::array();
  for (int i = 0; i < s.rank(); ++i) {
    if (i == 0) {
      out.push_back(nullptr);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

constexpr int64_t kMaxConfigDim = (int64_t(1) << 31) - 1;

// A build shape from [null, d1, ...] (null: batch 1, shapes alone build a layer).
Shape shape_from_json(const json& j, const std::string& what) {
  if (!j.is_array() || j.empty()) {
    throw FormatError(what + ": expected a shape [null, d1, ...], got " + ConfigReader::excerpt(j));
  }
  if (j.size() > size_t(Shape::kMaxRank)) {
    throw FormatError(what + ": rank " + std::to_string(j.size()) + " is over kiln's maximum " +
                      std::to_string(Shape::kMaxRank));
  }
  Shape s;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& d = j[i];
    if (d.is_null() && i == 0) {
      s.push_back(1);
    } else if (d.is_number_integer() && d.get<int64_t>() >= 0 &&
               d.get<int64_t>() <= kMaxConfigDim && (i > 0 || d.get<int64_t>() > 0)) {
      s.push_back(d.get<int64_t>());
    } else {
      throw FormatError(what + ": dim " + std::to_string(i) +
                        " must be an integer in [0, 2^31) (null for the batch dim 0), got " +
                        ConfigReader::excerpt(j));
    }
  }
  int64_t numel = 1;
  bool too_large = false;
  for (int i = 0; i < s.rank(); ++i)
    too_large = too_large || __builtin_mul_overflow(numel, s[i], &numel);
  if (too_large || numel > (int64_t(1) << 40)) {
    throw FormatError(what + ": " + ConfigReader::excerpt(j) + " has over 2^40 elements");
  }
  return s;
}

std::string class_of(const json& serialized) {
  auto it = serialized.find("class_name");
  if (it == serialized.end() || !it->is_string()) {
    throw FormatError("layer entry " + ConfigReader::excerpt(serialized) +
                      ": needs a string field 'class_name'");
  }
  return it->get<std::string>();
}

}  // namespace

// ---- registry ------------------------------------------------------------------------------

void register_layer(const std::string& class_name, LayerFactory factory) {
  if (class_name.empty()) throw ValueError("register_layer: empty class name");
  if (!factory) throw ValueError("register_layer('" + class_name + "'): empty factory");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!r.factories.emplace(class_name, std::move(factory)).second) {
    throw ValueError("register_layer: layer class '" + class_name + "' is already registered");
  }
}

bool is_layer_registered(const std::string& class_name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.factories.count(class_name) > 0;
}

std::vector<std::string> registered_layers() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.factories) names.push_back(name);
  return names;  // std::map: sorted
}

// ---- serialize / deserialize ---------------------------------------------------------------

json serialize_layer(const Layer& layer, bool with_build_config) {
  json out = {{"class_name", layer.type_name()}, {"config", layer.get_config()}};
  if (with_build_config && layer.built()) {
    const auto& shapes = layer.built_input_shapes();
    json input_shape;
    if (shapes.size() == 1) {
      input_shape = batchless_shape(shapes[0]);
    } else {
      input_shape = json::array();
      for (const Shape& s : shapes) input_shape.push_back(batchless_shape(s));
    }
    out["build_config"] = {{"input_shape", input_shape}};
  }
  return out;
}

std::shared_ptr<Layer> deserialize_layer(const json& serialized, VariableStore* store) {
  if (!serialized.is_object()) {
    throw FormatError("a serialized layer must be an object {\"class_name\", \"config\"}, got " +
                      json_type(serialized));
  }
  const std::string class_name = class_of(serialized);
  std::string layer_name;
  const json* config = nullptr;
  if (auto it = serialized.find("config"); it != serialized.end()) {
    if (!it->is_object()) {
      throw FormatError("layer class '" + class_name + "': field 'config' must be an object, got " +
                        json_type(*it));
    }
    config = &*it;
    if (auto n = config->find("name"); n != config->end() && n->is_string()) {
      layer_name = n->get<std::string>();
    }
  } else {
    throw FormatError("layer class '" + class_name + "': missing field 'config'");
  }
  const std::string who = class_name + (layer_name.empty() ? "" : " layer '" + layer_name + "'");
  std::optional<std::vector<Shape>> build_shapes;
  for (const auto& [key, value] : serialized.items()) {
    if (key == "class_name" || key == "config") continue;
    if (key == "module" || key == "registered_name") {
      if (!value.is_string() && !value.is_null()) {
        throw FormatError(who + ": field '" + key + "' must be a string or null, got " +
                          ConfigReader::excerpt(value));
      }
      continue;
    }
    if (key == "build_config") {
      auto shape = value.is_object() ? value.find("input_shape") : value.end();
      if (!value.is_object() || shape == value.end() || value.size() != 1) {
        throw FormatError(who + ": build_config must be {\"input_shape\": [...]}, got " +
                          ConfigReader::excerpt(value));
      }
      const std::string what = who + ": build_config.input_shape";
      build_shapes.emplace();
      if (shape->is_array() && !shape->empty() && shape->at(0).is_array()) {
        for (const json& s : *shape) build_shapes->push_back(shape_from_json(s, what));
      } else {
        build_shapes->push_back(shape_from_json(*shape, what));
      }
      continue;
    }
    throw FormatError(who + ": unexpected field '" + key +
                      "' (a serialized layer has class_name, config, build_config, module, "
                      "registered_name)");
  }
  DepthGuard depth(who);
  const LayerFactory factory = find_factory(class_name, layer_name);
  std::shared_ptr<Layer> layer;
  try {
    layer = factory(*config);
  } catch (const nlohmann::json::exception& e) {
    // A user's from_config reading the json directly (config.at("units").get<int>()).
    throw FormatError(who + ": bad config: " + e.what());
  }
  if (!layer) throw FormatError(who + ": its registered factory returned no layer");
  if (!same_class(class_name, layer->type_name())) {
    throw FormatError(who + ": the factory registered for '" + class_name + "' made a " +
                      layer->type_name() + "; register the class under its type_name()");
  }
  if (auto t = config->find("trainable"); t != config->end()) {
    if (!t->is_boolean()) {
      throw FormatError(who + ": field 'trainable' must be a boolean, got " +
                        ConfigReader::excerpt(*t));
    }
    if (!t->get<bool>()) layer->set_trainable(false);
  }
  if (store != nullptr) layer->set_store(*store);
  if (!build_shapes) {
    if (auto* seq = dynamic_cast<Sequential*>(layer.get()); seq && seq->input_shape()) {
      Shape s{1};
      for (int i = 0; i < seq->input_shape()->rank(); ++i) s.push_back((*seq->input_shape())[i]);
      build_shapes = std::vector<Shape>{s};
    }
  }
  if (build_shapes) {
    std::string shapes;
    for (const Shape& sh : *build_shapes) shapes += (shapes.empty() ? "" : ", ") + to_string(sh);
    const std::string building = who + ": building for input shape " + shapes + ": ";
    try {
      if (build_shapes->size() == 1) {
        layer->output_shape((*build_shapes)[0]);
      } else {
        layer->output_shape(*build_shapes);
      }
    } catch (const ShapeError& e) {
      throw ShapeError(building + e.what());
    } catch (const StateError& e) {  // e.g. a Sequential without layers: the file is wrong
      throw FormatError(building + e.what());
    }
  }
  return layer;
}

bool has_config(const Layer& layer, std::string* why) {
  try {
    serialize_layer(layer);
    return true;
  } catch (const std::exception& e) {  // kiln's errors, and a user get_config's json errors
    if (why) *why = e.what();
    return false;
  }
}

std::string model_to_json(const Layer& layer, int indent) {
  return serialize_layer(layer).dump(indent);
}

std::shared_ptr<Layer> model_from_json(const std::string& text_or_path, VariableStore* store) {
  const size_t first = text_or_path.find_first_not_of(" \t\r\n");
  const bool is_text = first != std::string::npos && text_or_path[first] == '{';
  std::string text = text_or_path;
  std::string source = "model JSON";
  if (!is_text) {
    source = "model config file '" + text_or_path + "'";
    std::ifstream in(text_or_path, std::ios::binary);
    if (!in) throw FormatError(source + ": cannot open it");
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw FormatError(source + ": read error");
    text = buf.str();
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a huge number
    throw FormatError(source + ": not valid JSON: " + e.what());
  }
  try {
    return deserialize_layer(j, store);
  } catch (const FormatError& e) {
    if (is_text) throw;
    throw FormatError(source + ": " + e.what());
  } catch (const ValueError& e) {
    if (is_text) throw;
    throw ValueError(source + ": " + e.what());
  }
}

// ---- ConfigReader --------------------------------------------------------------------------

ConfigReader::ConfigReader(const json& config, std::string class_name)
    : config_(config), class_name_(std::move(class_name)) {
  if (!config.is_object()) {
    throw FormatError(class_name_ + " config must be an object, got " + json_type(config));
  }
  if (const json* n = find("name")) {
    if (!n->is_string()) type_error("name", "a string");
    name_ = n->get<std::string>();
  }
  trainable_ = boolean("trainable", true);
  if (const json* d = find("dtype")) {
    // "float32", or Keras 3's {"module": "keras", "class_name": "DTypePolicy",
    // "config": {"name": "float32"}, "registered_name": null}.
    const json* dtype = d;
    if (d->is_object()) {
      auto c = d->find("config");
      if (c != d->end() && c->is_object() && c->contains("name")) dtype = &(*c)["name"];
    }
    if (!dtype->is_string()) type_error("dtype", "a string or a DTypePolicy object");
    if (dtype->get<std::string>() != "float32") {
      throw ValueError(where() + ": field 'dtype' " + ConfigReader::excerpt(*d) +
                       " is not supported: kiln layers are configured in float32");
    }
  }
}

std::string ConfigReader::excerpt(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 120)
    text = text.substr(0, 100) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
}

std::string ConfigReader::where() const {
  return class_name_ + " config of layer '" + (name_.empty() ? "(unnamed)" : name_) + "'";
}

const json* ConfigReader::find(const char* key) {
  if (std::find(read_.begin(), read_.end(), key) == read_.end()) read_.emplace_back(key);
  auto it = config_.find(key);
  if (it == config_.end() || it->is_null()) return nullptr;
  return &*it;
}

void ConfigReader::type_error(const char* key, const char* expected) const {
  throw FormatError(where() + ": field '" + key + "' must be " + expected + ", got " +
                    ConfigReader::excerpt(config_.at(key)));
}

bool ConfigReader::has(const char* key) const {
  auto it = config_.find(key);
  return it != config_.end() && !it->is_null();
}

int64_t ConfigReader::integer(const char* key) {
  const json* v = find(key);
  if (!v) throw FormatError(where() + ": missing field '" + key + "' (an integer)");
  if (!v->is_number_integer()) type_error(key, "an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) {
    type_error(key, "an integer below 2^63");
  }
  return v->get<int64_t>();
}

int64_t ConfigReader::integer(const char* key, int64_t fallback) {
  return has(key) ? integer(key) : (find(key), fallback);
}

std::optional<int64_t> ConfigReader::optional_integer(const char* key) {
  if (!has(key)) {
    find(key);
    return std::nullopt;
  }
  return integer(key);
}

double ConfigReader::number(const char* key) {
  const json* v = find(key);
  if (!v) throw FormatError(where() + ": missing field '" + key + "' (a number)");
  if (!v->is_number()) type_error(key, "a number");
  return v->get<double>();
}

double ConfigReader::number(const char* key, double fallback) {
  return has(key) ? number(key) : (find(key), fallback);
}

bool ConfigReader::boolean(const char* key, bool fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) type_error(key, "a boolean");
  return v->get<bool>();
}

std::string ConfigReader::string(const char* key) {
  const json* v = find(key);
  if (!v) throw FormatError(where() + ": missing field '" + key + "' (a string)");
  if (!v->is_string()) type_error(key, "a string");
  return v->get<std::string>();
}

std::string ConfigReader::string(const char* key, const std::string& fallback) {
  return has(key) ? string(key) : (find(key), fallback);
}

std::array<int64_t, 2> ConfigReader::pair(const char* key, std::array<int64_t, 2> fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (v->is_number_integer()) return {v->get<int64_t>(), v->get<int64_t>()};
  if (v->is_array() && v->size() == 2 && (*v)[0].is_number_integer() &&
      (*v)[1].is_number_integer()) {
    return {(*v)[0].get<int64_t>(), (*v)[1].get<int64_t>()};
  }
  type_error(key, "an integer or a list of two integers");
}

std::string ConfigReader::activation(const char* key) {
  const json* v = find(key);
  if (!v) return "linear";
  if (!v->is_string()) type_error(key, "an activation name (a string)");
  std::string name = v->get<std::string>();
  try {
    get_activation(name);
  } catch (const ValueError& e) {
    throw ValueError(where() + ": field '" + key + "': " + e.what());
  }
  return name.empty() ? "linear" : name;
}

Initializer ConfigReader::initializer(const char* key, const Initializer& fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  try {
    return initializers::deserialize(*v);
  } catch (const FormatError& e) {
    throw FormatError(where() + ": field '" + key + "': " + e.what());
  } catch (const ValueError& e) {
    throw ValueError(where() + ": field '" + key + "': " + e.what());
  }
}

const json& ConfigReader::raw(const char* key) {
  const json* v = find(key);
  if (!v) throw FormatError(where() + ": missing field '" + key + "'");
  return *v;
}

void ConfigReader::only(const char* key, const json& allowed) {
  const json* v = find(key);
  if (!v || *v == allowed) return;
  throw ValueError(where() + ": field '" + key + "' = " + ConfigReader::excerpt(*v) +
                   " is not supported by kiln (only " + ConfigReader::excerpt(allowed) + ")");
}

void ConfigReader::finish() const {
  for (const auto& [key, value] : config_.items()) {
    if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
      throw FormatError(where() + ": unknown field '" + key + "' (known: " + name_list(read_) +
                        ")");
    }
  }
}

}  // namespace kiln
