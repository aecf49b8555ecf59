// Model (subclassing) and Sequential, and the Keras-like summary table.
#include "kiln/nn/model.h"

#include <algorithm>
#include <ostream>
#include <unordered_set>

#include <map>

#include <nlohmann/json.hpp>

#include "kiln/cache.h"
#include "kiln/error.h"
#include "kiln/nn/config.h"

namespace kiln {

namespace {

// 235146 -> "235,146".
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  if (n < 0) out.insert(out.begin(), '-');
  return out;
}

// (None, 14, 14, 32): the batch dim varies.
std::string keras_shape(const Shape& s) {
  if (s.rank() == 0) return "()";
  std::string out = "(None";
  for (int i = 1; i < s.rank(); ++i) out += ", " + std::to_string(s[i]);
  return out + (s.rank() == 1 ? ",)" : ")");
}

std::string pad_to(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

Shape with_batch_one(const Shape& example) {
  Shape full{1};
  for (int64_t d : example) full.push_back(d);
  return full;
}

}  // namespace

Model::Model(std::string name, const std::string& default_base)
    : Layer(std::move(name), default_base) {}

std::vector<Shape> Model::sublayer_output_shapes(const Shape& input_shape) {
  output_shape(input_shape);  // builds and, for subclassed models, runs a zero probe
  std::vector<Shape> shapes;
  for (const auto& l : layers()) shapes.push_back(l->last_output_shape());
  return shapes;
}

namespace {
struct SummaryText {
  Shape input_shape;
  std::string text;
  uint64_t cache_bytes() const { return text.capacity(); }
};
}  // namespace

std::string Model::summary(const Shape& input_shape) {
  auto render = [&] { return render_summary(sublayer_output_shapes(with_batch_one(input_shape))); };
  if (!built()) return render();  // builds; the table is then fixed but for trainable flags
  // Cached per model (a subclassed model's table costs a forward pass); the version counts
  // trainable weights, so set_trainable() recomputes it.
  static CachedPerInstance<std::shared_ptr<const SummaryText>> cache("Model::summary");
  auto compute = [&] {
    return std::make_shared<const SummaryText>(SummaryText{input_shape, render()});
  };
  const uint64_t version = trainable_weights().size();
  std::shared_ptr<const SummaryText> s = cache.get(cache_token(), compute, version);
  if (s->input_shape != input_shape) {  // another example shape: checked and rendered anew
    cache.invalidate(cache_token());
    s = cache.get(cache_token(), compute, version);
  }
  return s->text;
}

std::string Model::summary() {
  if (!built()) {
    throw StateError("model '" + name() +
                     "' is not built yet: use summary(input_shape) to "
                     "build it from shapes alone");
  }
  if (built_input_shapes().size() != 1) {
    throw ValueError("model '" + name() + "': summary() supports single-input models");
  }
  const Shape& built_shape = built_input_shapes()[0];
  Shape example;  // the built shape without its batch dim
  for (int d = 1; d < built_shape.rank(); ++d) example.push_back(built_shape[d]);
  return summary(example);
}

void Model::print_summary(const Shape& input_shape, std::ostream& os) {
  os << summary(input_shape);
}

std::string Model::render_summary(const std::vector<Shape>& shapes) const {
  struct Row {
    std::string name, shape, params;
  };
  std::vector<Row> rows;
  std::unordered_set<const void*> seen;
  bool any_shared = false;
  for (size_t i = 0; i < layers().size(); ++i) {
    const Layer& l = *layers()[i];
    int64_t n = 0;
    bool shared = false;
    if (l.built()) {
      for (const Variable& v : l.weights()) {
        n += v.shape().numel();
        if (!seen.insert(v.id()).second) shared = true;
      }
    }
    any_shared = any_shared || shared;
    std::string shape = l.built() && i < shapes.size() ? keras_shape(shapes[i]) : "?";
    rows.push_back({l.name() + " (" + l.type_name() + ")", shape,
                    with_commas(n) + (shared ? " (shared)" : "")});
  }
  size_t w0 = 28, w1 = 26, w2 = 12;
  for (const Row& r : rows) {
    w0 = std::max(w0, r.name.size() + 2);
    w1 = std::max(w1, r.shape.size() + 2);
    w2 = std::max(w2, r.params.size() + 1);
  }
  const size_t width = 1 + w0 + w1 + w2;
  std::string out = "Model: \"" + name() + "\"\n";
  out += std::string(width, '_') + "\n";
  // Appends, not " " + string: gcc 12 warns falsely (-Wrestrict) on that pattern.
  auto add_row = [&](const std::string& a, const std::string& b, const std::string& c) {
    out += ' ';
    out += pad_to(a, w0);
    out += pad_to(b, w1);
    out += c;
    out += '\n';
  };
  add_row("Layer (type)", "Output Shape", "Param #");
  out += std::string(width, '=') + "\n";
  for (const Row& r : rows) add_row(r.name, r.shape, r.params);
  out += std::string(width, '=') + "\n";
  int64_t trainable = 0, frozen = 0;
  for (const Variable& v : trainable_weights()) trainable += v.shape().numel();
  for (const Variable& v : non_trainable_weights()) frozen += v.shape().numel();
  out += "Total params: " + with_commas(trainable + frozen) + "\n";
  out += "Trainable params: " + with_commas(trainable) + "\n";
  out += "Non-trainable params: " + with_commas(frozen) + "\n";
  if (any_shared) out += "(shared): weights also used by an earlier row, counted once in totals\n";
  out += std::string(width, '_') + "\n";
  return out;
}

// ---- Sequential --------------------------------------------------------------------------

Sequential::Sequential(std::string name) : Model(std::move(name), "sequential") {}

Sequential::Sequential(std::vector<std::shared_ptr<Layer>> layers, std::string name)
    : Model(std::move(name), "sequential") {
  for (auto& l : layers) add(std::move(l));
}

Sequential& Sequential::add(std::shared_ptr<Layer> layer) {
  if (built()) {
    throw StateError("sequential model '" + name() +
                     "' is already built; add layers before "
                     "its first call");
  }
  track_layer(std::move(layer));
  return *this;
}

void Sequential::build(const Shape&) {
  if (layers().empty()) throw StateError("sequential model '" + name() + "' has no layers");
}

// build() guarantees layers, and add() is closed once built.
Tensor Sequential::call(const Tensor& x, bool training) {
  Tensor h = x;
  for (const auto& l : layers()) h = (*l)(h, training);
  return h;
}

Shape Sequential::compute_output_shape(const Shape& input_shape) {
  Shape s = input_shape;
  for (const auto& l : layers()) s = l->output_shape(s);
  return s;
}

std::vector<Shape> Sequential::sublayer_output_shapes(const Shape& input_shape) {
  std::vector<Shape> shapes;
  output_shape(input_shape);  // chains output_shape(): no data at all
  // Recompute per layer (a layer used twice in the stack shows each use's shape).
  Shape s = input_shape;
  for (const auto& l : layers()) {
    s = l->output_shape(s);
    shapes.push_back(s);
  }
  return shapes;
}

// ---- Sequential's config -----------------------------------------------------------------

namespace {

// A name written into the config must pick out one layer instance of the model.
void require_unique_name(const Sequential& seq, const Layer& layer) {
  for (const auto& l : seq.layers()) {
    if (l.get() != &layer && l->name() == layer.name()) {
      throw ValueError("sequential model '" + seq.name() + "': two different layers are named '" +
                       layer.name() +
                       "', so the config cannot say which one is shared; give them distinct names");
    }
  }
}

// An example shape (batch dim dropped) from Keras' [null, d1, ...] (the batch dim may also be
// an integer); FormatError naming `what` unless each dim is in [0, 2^31), the rank fits kiln's
// shapes and the batch-1 size stays within 2^40 elements.
Shape example_shape(const nlohmann::json& dims, const std::string& what) {
  if (!dims.is_array() || dims.empty() || dims.size() > size_t(Shape::kMaxRank)) {
    throw FormatError(what + " must be a shape [null, d1, ...] of rank 1 to " +
                      std::to_string(Shape::kMaxRank) + ", got " + ConfigReader::excerpt(dims));
  }
  if (!dims[0].is_null() && !dims[0].is_number_integer()) {
    throw FormatError(what + ": the batch dim must be null or an integer, got " +
                      ConfigReader::excerpt(dims));
  }
  Shape shape;
  int64_t numel = 1;
  for (size_t i = 1; i < dims.size(); ++i) {
    const nlohmann::json& d = dims[i];
    if (!d.is_number_integer() || d.get<int64_t>() < 0 ||
        d.get<int64_t>() > (int64_t(1) << 31) - 1 ||
        __builtin_mul_overflow(numel, d.get<int64_t>(), &numel) || numel > (int64_t(1) << 40)) {
      throw FormatError(what + ": dim " + std::to_string(i) +
                        " must be an integer in [0, 2^31) (and the shape within 2^40 elements), "
                        "got " +
                        ConfigReader::excerpt(dims));
    }
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

// A Keras InputLayer entry: Keras 3's batch_shape or Keras 2's batch_input_shape.
Shape read_input_layer(const nlohmann::json& config, std::string& name) {
  ConfigReader r(config, "InputLayer");
  name = r.name();
  const char* key = r.has("batch_shape") ? "batch_shape" : "batch_input_shape";
  Shape shape = example_shape(r.raw(key), r.where() + ": field '" + key + "'");
  r.only("sparse", false);
  r.only("ragged", false);
  r.only("optional", false);  // Keras 3.6+
  r.finish();
  return shape;
}

}  // namespace

nlohmann::json Sequential::get_config() const {
  nlohmann::json c = base_config();
  nlohmann::json entries = nlohmann::json::array();
  if (input_shape_) {
    nlohmann::json batch_shape = {nullptr};
    for (int i = 0; i < input_shape_->rank(); ++i) batch_shape.push_back((*input_shape_)[i]);
    entries.push_back({{"class_name", "InputLayer"},
                       {"config",
                        {{"batch_shape", batch_shape},
                         {"dtype", "float32"},
                         {"sparse", false},
                         {"name", input_layer_name_}}}});
  }
  std::vector<const Layer*> written;
  for (const auto& l : layers()) {
    if (std::find(written.begin(), written.end(), l.get()) != written.end()) {
      require_unique_name(*this, *l);  // sharing way (a): the same instance again
      entries.push_back({{"class_name", l->type_name()}, {"shared_with", l->name()}});
      continue;
    }
    nlohmann::json entry = serialize_layer(*l, /*with_build_config=*/false);
    if (const Layer* source = l->weights_shared_from()) {  // sharing way (b)
      bool inside = false;
      for (const auto& other : layers()) inside = inside || other.get() == source;
      if (!inside) {
        throw ValueError("layer '" + l->name() + "' shares weights with layer '" + source->name() +
                         "', which is not a layer of sequential model '" + name() +
                         "': the config cannot re-link them");
      }
      require_unique_name(*this, *source);
      entry["share_weights_with"] = source->name();
    }
    entries.push_back(std::move(entry));
    written.push_back(l.get());
  }
  c["layers"] = std::move(entries);
  return c;
}

std::shared_ptr<Layer> Sequential::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "Sequential");
  const nlohmann::json& entries = r.raw("layers");
  if (!entries.is_array()) {
    throw FormatError(r.where() + ": field 'layers' must be a list, got " +
                      ConfigReader::excerpt(entries));
  }
  auto seq = std::make_shared<Sequential>(r.name());
  std::map<std::string, std::shared_ptr<Layer>> by_name;  // the first layer of each name
  std::vector<std::pair<std::shared_ptr<Layer>, std::string>> links;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string where = r.where() + ": layers[" + std::to_string(i) + "]";
    const nlohmann::json& entry = entries[i];
    if (!entry.is_object() || !entry.contains("class_name") || !entry["class_name"].is_string()) {
      throw FormatError(where + ": must be an object with a string 'class_name', got " +
                        ConfigReader::excerpt(entry));
    }
    const std::string class_name = entry["class_name"].get<std::string>();
    if (class_name == "InputLayer") {
      if (i != 0 || !entry.contains("config")) {
        throw FormatError(where + ": an InputLayer must come first and have a config");
      }
      try {
        seq->input_shape_ = read_input_layer(entry["config"], seq->input_layer_name_);
      } catch (const FormatError& e) {
        throw FormatError(where + ": " + e.what());
      } catch (const ValueError& e) {
        throw ValueError(where + ": " + e.what());
      }
      continue;
    }
    if (auto shared = entry.find("shared_with"); shared != entry.end()) {
      if (!shared->is_string() || entry.size() != 2) {
        throw FormatError(where +
                          ": a shared entry is {\"class_name\", \"shared_with\": "
                          "\"<name>\"}, got " +
                          ConfigReader::excerpt(entry));
      }
      auto it = by_name.find(shared->get<std::string>());
      if (it == by_name.end()) {
        throw FormatError(where + ": shared_with '" + shared->get<std::string>() +
                          "' names no earlier layer of the model");
      }
      if (it->second->type_name() != class_name) {
        throw FormatError(where + ": shared_with '" + it->first + "' is a " +
                          it->second->type_name() + ", not a " + class_name);
      }
      seq->add(it->second);
      continue;
    }
    nlohmann::json layer_entry = entry;
    layer_entry.erase("build_config");  // the model builds its layers
    // Keras 2 writes the model's input shape into its first layer's config.
    if (i == 0 && layer_entry.contains("config") && layer_entry["config"].is_object() &&
        layer_entry["config"].contains("batch_input_shape")) {
      seq->input_shape_ = example_shape(layer_entry["config"]["batch_input_shape"],
                                        where + ": field 'batch_input_shape'");
      layer_entry["config"].erase("batch_input_shape");
    }
    std::optional<std::string> share_source;
    if (auto s = entry.find("share_weights_with"); s != entry.end()) {
      if (!s->is_string()) {
        throw FormatError(where + ": field 'share_weights_with' must be a layer name, got " +
                          ConfigReader::excerpt(*s));
      }
      share_source = s->get<std::string>();
      layer_entry.erase("share_weights_with");
    }
    std::shared_ptr<Layer> layer;
    try {
      layer = deserialize_layer(layer_entry);
    } catch (const FormatError& e) {
      throw FormatError(where + ": " + e.what());
    } catch (const ValueError& e) {
      throw ValueError(where + ": " + e.what());
    }
    by_name.emplace(layer->name(), layer);
    if (share_source) links.emplace_back(layer, *share_source);
    seq->add(layer);
  }
  // Keras 2 and 3 also write the input shape as "build_input_shape".
  if (r.has("build_input_shape")) {
    Shape shape =
        example_shape(r.raw("build_input_shape"), r.where() + ": field 'build_input_shape'");
    if (!seq->input_shape_) seq->input_shape_ = shape;
  } else {
    r.optional_integer("build_input_shape");  // absent or null: read
  }
  for (const auto& [layer, source] : links) {
    auto it = by_name.find(source);
    if (it == by_name.end()) {
      throw FormatError(r.where() + ": layer '" + layer->name() + "': share_weights_with '" +
                        source + "' names no layer of the model");
    }
    layer->share_weights_from(*it->second);
  }
  r.finish();
  return seq;
}

}  // namespace kiln
