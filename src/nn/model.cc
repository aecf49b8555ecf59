// Model (subclassing) and Sequential, and the Keras-like summary table.
#include "kiln/nn/model.h"

#include <algorithm>
#include <ostream>
#include <unordered_set>

#include "kiln/cache.h"
#include "kiln/error.h"

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

}  // namespace kiln
