// Architecture as data: layers and models as Keras-style JSON configs (Keras' get_config /
// from_config, Keras' class and field names), a registry of layer classes by name, and
// model_from_json.
//
//   nlohmann::json j = kiln::serialize_layer(*model);     // {"class_name", "config", ...}
//   auto copy = kiln::deserialize_layer(j, &store);       // same architecture, fresh weights
//
// The serialized form of a layer is Keras 3's:
//   {"class_name": "Dense", "config": {"name": "dense", "trainable": true, "dtype": "float32",
//                                      "units": 10, ...},
//    "build_config": {"input_shape": [null, 784]}}        // only when the layer is built
// "module" and "registered_name" (written by Keras) are accepted and ignored when read.
//
// Sequential's config is Keras': {"name", "trainable", "dtype", "layers": [entry...]}, where an
// entry is a serialized layer without build_config (the model builds its layers), plus kiln's
// two sharing fields:
//   - a layer instance used twice in one Sequential (sharing way (a)) is written in full once;
//     each later use is {"class_name": "Dense", "shared_with": "<name>"} and comes back as the
//     same instance;
//   - a layer built with share_weights_from(other) (way (b)), `other` being a direct layer of
//     the same Sequential, carries "share_weights_with": "<other's name>" beside its config and
//     is re-linked on load. A source outside the model cannot be written (ValueError).
// Way (c), VariableStore scope reuse, leaves no trace in configs: the weights' names tie them
// again when weights are loaded (two layers of one name in a model are fine then; a name that
// "shared_with" or "share_weights_with" refers to must pick out one layer, else ValueError).
// The model's input shape, when the config gives one, builds it like a build_config: Keras 3's
// "InputLayer" entry (first in the list, written back by get_config), tf.keras 2's
// "batch_input_shape" in the first layer's config, or "build_input_shape".
//
// A user's layer or subclassed model gets a config by overriding Layer::get_config (starting
// from base_config()) and giving the class a static from_config, then registering it once in
// a .cc file of the program:
//
//   class Scale : public kiln::Layer {
//    public:
//     Scale(double factor, std::string name = "") : Layer(std::move(name), "scale"), f_(factor) {}
//     std::string type_name() const override { return "Scale"; }   // == the registered name
//     nlohmann::json get_config() const override {
//       nlohmann::json c = base_config();
//       c["factor"] = f_;
//       return c;
//     }
//     static std::shared_ptr<kiln::Layer> from_config(const nlohmann::json& config) {
//       kiln::ConfigReader r(config, "Scale");
//       auto layer = std::make_shared<Scale>(r.number("factor"), r.name());
//       r.finish();                      // refuses fields it did not read
//       return layer;
//     }
//     ...
//   };
//   KILN_REGISTER_LAYER(Scale);
//
// Errors: a malformed config (not an object, a missing required field, a field of the wrong
// JSON type, an unknown field, an unknown class_name) is a FormatError naming the class, the
// layer and the field; a well-formed value kiln does not support (Keras' data_format
// "channels_first", a non-null kernel_regularizer, a BatchNormalization axis other than -1) is a
// ValueError naming the class, the layer and the field; values a layer's constructor refuses
// keep the constructor's ValueError. Building from a config prefixes the layer and the shape
// to a ShapeError, and turns a StateError (a Sequential without layers) into a FormatError. A
// user factory's nlohmann::json exception becomes a FormatError naming the class and layer.
// Limits, so a hostile file fails before allocating: shape dims below 2^31, at most
// Shape::kMaxRank dims, input shapes and every weight (Layer::add_weight) within 2^40
// elements, models nested at most 64 deep. Every message quotes at most ~120 characters of a
// bad value. The registry is thread-safe; serializing reads a layer and must not race with a
// build of that layer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kiln/nn/initializers.h"
#include "kiln/nn/layer.h"

namespace kiln {

class VariableStore;

// Makes a layer (unbuilt) from its config (the "config" object of a serialized layer).
using LayerFactory = std::function<std::shared_ptr<Layer>(const nlohmann::json& config)>;

// Registers `factory` for `class_name`. Built-in classes are registered before any look-up
// (from one function, so static linking cannot drop them). ValueError if `class_name` is empty,
// `factory` is empty or `class_name` is already registered (built-in names included).
void register_layer(const std::string& class_name, LayerFactory factory);
bool is_layer_registered(const std::string& class_name);
// Every registered class name, sorted.
std::vector<std::string> registered_layers();

// One line in a .cc file registers a class with a static
// `std::shared_ptr<kiln::Layer> from_config(const nlohmann::json&)` under its own name (written
// as in the source, so type_name() must return that same string); _AS gives another name.
// Like any static initializer, it runs only if its object file is linked in: put it in a file
// of the program itself (or one the program references), not in an otherwise unused file of a
// static library.
#define KILN_REGISTER_LAYER(Class) KILN_REGISTER_LAYER_AS(Class, #Class)
#define KILN_REGISTER_LAYER_AS(Class, class_name)                                               \
  static const bool KILN_CONFIG_CONCAT(kiln_registered_layer_, __LINE__) [[maybe_unused]] =     \
      (::kiln::register_layer(class_name,                                                       \
                              [](const ::nlohmann::json& c) -> std::shared_ptr<::kiln::Layer> { \
                                return Class::from_config(c);                                   \
                              }),                                                               \
       true)
#define KILN_CONFIG_CONCAT(a, b) KILN_CONFIG_CONCAT_INNER(a, b)
#define KILN_CONFIG_CONCAT_INNER(a, b) a##b

// {"class_name": type_name(), "config": get_config()} plus, when `with_build_config` and the
// layer is built, "build_config": {"input_shape": ...} (batch dim null; a list of shapes for a
// multi-input layer). Throws what get_config throws: StateError for a layer class without a
// config, ValueError for one that cannot be written (a user initializer, a weight-sharing
// source outside the model).
nlohmann::json serialize_layer(const Layer& layer, bool with_build_config = true);

// The layer (and its sublayers) described by `serialized`, with fresh weights: its variables
// are created in `store` (default: the default store) when it is built, which happens here if
// `serialized` has a build_config (or an InputLayer), else on its first call. Variables whose
// names exist in the store already are a ValueError from the store (load into a fresh store,
// or after removing the old model's). A "trainable": false config freezes the layer. The
// made layer's type_name() must equal class_name (FormatError otherwise).
std::shared_ptr<Layer> deserialize_layer(const nlohmann::json& serialized,
                                         VariableStore* store = nullptr);

// True when serialize_layer(layer) succeeds; otherwise false, with the reason in `why` if
// given (save_model then keeps the traced graph instead).
bool has_config(const Layer& layer, std::string* why = nullptr);

// Keras' model.to_json(): serialize_layer(layer) as text.
std::string model_to_json(const Layer& layer, int indent = 2);
// Keras' model_from_json: `text_or_path` is JSON text when its first non-blank character is
// '{', else the path of a file holding it. FormatError naming the file (when one) for an
// unreadable file or bad JSON (with the parser's position); then as deserialize_layer.
std::shared_ptr<Layer> model_from_json(const std::string& text_or_path,
                                       VariableStore* store = nullptr);

// Reads a layer's config in from_config, checking every field; the message of every error
// names the class, the layer and the field. Keras' base fields are read at construction:
// "name" (string; may be absent), "trainable" (bool), "dtype" ("float32" or Keras 3's policy
// object for float32; other dtypes are a ValueError). Optional getters return the fallback
// when the field is absent or null (Keras' None). finish() refuses the fields no getter read.
class ConfigReader {
 public:
  // FormatError unless `config` is an object.
  ConfigReader(const nlohmann::json& config, std::string class_name);

  // "" when absent: the layer then takes a default name.
  const std::string& name() const { return name_; }
  bool trainable() const { return trainable_; }

  bool has(const char* key) const;  // present and not null
  int64_t integer(const char* key);
  int64_t integer(const char* key, int64_t fallback);
  std::optional<int64_t> optional_integer(const char* key);
  double number(const char* key);
  double number(const char* key, double fallback);
  bool boolean(const char* key, bool fallback);
  std::string string(const char* key);
  std::string string(const char* key, const std::string& fallback);
  // An int n (meaning [n, n]) or a list of two ints, as Keras' kernel_size / strides.
  std::array<int64_t, 2> pair(const char* key, std::array<int64_t, 2> fallback);
  // An activation name (checked with get_activation); "linear" when absent.
  std::string activation(const char* key);
  // A Keras initializer (initializers::deserialize), `fallback` when absent.
  Initializer initializer(const char* key, const Initializer& fallback);
  // The field as is (FormatError when absent), for a model's nested configs.
  const nlohmann::json& raw(const char* key);
  // A field kiln accepts only at one value (Keras' "data_format": "channels_last", a
  // regularizer's null): absent, null or `allowed` pass, anything else is a ValueError.
  void only(const char* key, const nlohmann::json& allowed);

  // FormatError naming the first field no getter read.
  void finish() const;

  // "Dense config of layer 'dense_1'": the prefix of every message.
  std::string where() const;
  // `value` as JSON text for an error message, cut to about 120 characters (a bad file may
  // hold megabytes where a number belongs; invalid UTF-8 is replaced, never thrown on).
  static std::string excerpt(const nlohmann::json& value);

 private:
  const nlohmann::json* find(const char* key);
  [[noreturn]] void type_error(const char* key, const char* expected) const;

  const nlohmann::json& config_;
  std::string class_name_;
  std::string name_;
  bool trainable_ = true;
  std::vector<std::string> read_;
};

}  // namespace kiln
