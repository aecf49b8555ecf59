// Layer: lazy build, input-shape checks, name scopes, weight tracking and sharing.
#include "kiln/nn/layer.h"

#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "cache/registry.h"
#include "core/context.h"
#include "kiln/error.h"

namespace kiln {

namespace {

std::mutex g_names_mu;
std::map<std::string, int>& name_counts() {
  static std::map<std::string, int> counts;
  return counts;
}

// "[None, 28, 28, 1]": the batch dim may vary, so it is shown as None.
std::string batchless(const Shape& s) {
  if (s.rank() == 0) return "[]";
  std::string out = "[None";
  for (int i = 1; i < s.rank(); ++i) out += ", " + std::to_string(s[i]);
  return out + "]";
}

std::string shapes_str(const std::vector<Shape>& shapes, bool batch) {
  std::string out;
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (i) out += ", ";
    out += batch ? batchless(shapes[i]) : to_string(shapes[i]);
  }
  return out;
}

// Shape probes must not land on a recording tape (the zeros are not part of any step).
class NoTape {
 public:
  NoTape() : saved_(detail::thread_context().tape) { detail::thread_context().tape = nullptr; }
  ~NoTape() { detail::thread_context().tape = saved_; }

 private:
  detail::TapeRecorder* saved_;
};

}  // namespace

namespace {
using NameCounts = std::unordered_map<std::string, int>;
thread_local NameCounts* t_scope_names = nullptr;  // the innermost LayerNameScope's counters
}  // namespace

LayerNameScope::LayerNameScope() : saved_(t_scope_names), counts_(new NameCounts) {
  t_scope_names = static_cast<NameCounts*>(counts_);
}

LayerNameScope::~LayerNameScope() {
  t_scope_names = static_cast<NameCounts*>(saved_);
  delete static_cast<NameCounts*>(counts_);
}

std::string unique_layer_name(const std::string& base) {
  if (detail::TraceScope* ts = detail::thread_context().trace_scope) {
    // Inside a traced function: counted per trace, so every trace names its layers alike.
    int& n = ts->layer_names[base];
    std::string name = n == 0 ? base : base + "_" + std::to_string(n);
    ++n;
    return name;
  }
  if (t_scope_names) {
    int& n = (*t_scope_names)[base];
    std::string name = n == 0 ? base : base + "_" + std::to_string(n);
    ++n;
    return name;
  }
  std::lock_guard<std::mutex> lock(g_names_mu);
  int& n = name_counts()[base];
  std::string name = n == 0 ? base : base + "_" + std::to_string(n);
  ++n;
  return name;
}

void reset_layer_names() {
  std::lock_guard<std::mutex> lock(g_names_mu);
  name_counts().clear();
}

Layer::Layer(std::string name, const std::string& default_base)
    : name_(name.empty() ? unique_layer_name(default_base) : std::move(name)),
      store_(&VariableStore::default_store()) {
  if (name_.find('/') != std::string::npos) {
    throw ValueError("layer name '" + name_ + "' must not contain '/' (it is a scope separator)");
  }
  cache::layer_created(this);  // for kiln::cache_report()
}

Layer::~Layer() { cache::layer_destroyed(this); }

nlohmann::json Layer::get_config() const {
  throw StateError("layer '" + name_ + "' (" + type_name() +
                   ") has no get_config: override get_config and give the class a static "
                   "from_config registered with KILN_REGISTER_LAYER (kiln/nn/config.h) to save "
                   "its architecture; without one a model holding it is saved as its traced "
                   "graph, which predicts but cannot be trained further");
}

nlohmann::json Layer::base_config() const {
  return nlohmann::json{{"name", name_}, {"trainable", trainable_}, {"dtype", "float32"}};
}

Tensor Layer::operator()(const Tensor& x, bool training) { return run({x}, false, training); }

Tensor Layer::operator()(const std::vector<Tensor>& xs, bool training) {
  return run(xs, true, training);
}

Tensor Layer::run(const std::vector<Tensor>& xs, bool multi, bool training) {
  std::vector<Shape> shapes;
  shapes.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!xs[i].defined()) {
      throw ValueError("layer '" + name_ + "': input " + std::to_string(i) +
                       " is an undefined tensor");
    }
    shapes.push_back(xs[i].shape());
  }
  if (multi && xs.empty()) throw ValueError("layer '" + name_ + "': called with no inputs");
  DType dtype = float32;
  for (const Tensor& x : xs) {
    if (is_floating(x.dtype())) {
      dtype = x.dtype();
      break;
    }
  }
  ensure_built(shapes, multi, dtype);
  check_input_shapes(shapes, multi);
  // Sublayers built lazily inside call() nest their weights under this layer's name. Once
  // called and with every tracked sublayer built, skip the scope: eager calls stay cheap.
  bool need_scope = !called_;
  for (const auto& l : sublayers_) need_scope = need_scope || !l->built_;
  std::optional<VariableStore::Scope> scope;
  if (need_scope) scope.emplace(*store_, name_);
  Tensor out = multi ? call_multi(xs, training) : call(xs[0], training);
  called_ = true;
  last_output_shape_ = out.shape();
  return out;
}

void Layer::ensure_built(const std::vector<Shape>& shapes, bool multi, DType dtype) {
  if (built_) return;
  if (building_) {
    throw StateError("layer '" + name_ + "': called on itself while building");
  }
  if (share_from_ != nullptr && !share_from_->built_)
    share_from_->ensure_built(shapes, multi, dtype);
  VariableStore::Scope scope(*store_, name_);
  building_ = true;
  build_dtype_ = dtype;
  try {
    if (multi) {
      build_multi(shapes);
    } else {
      build(shapes[0]);
    }
  } catch (...) {
    building_ = false;
    own_weights_.clear();
    throw;
  }
  building_ = false;
  built_ = true;
  built_multi_ = multi;
  built_shapes_ = shapes;
}

void Layer::check_input_shapes(const std::vector<Shape>& shapes, bool multi) const {
  bool ok = shapes.size() == built_shapes_.size();
  for (size_t i = 0; ok && i < shapes.size(); ++i) {
    const Shape& a = shapes[i];
    const Shape& b = built_shapes_[i];
    ok = a.rank() == b.rank();
    for (int d = 1; ok && d < a.rank(); ++d) ok = a[d] == b[d];
  }
  if (!ok) {
    throw ShapeError("layer '" + name_ + "' (" + type_name() + ") was built for input shape " +
                     shapes_str(built_shapes_, true) + " but got " + shapes_str(shapes, false) +
                     " (only the batch dim 0 may vary)");
  }
}

Shape Layer::output_shape(const Shape& input_shape) {
  ensure_built({input_shape}, false, float32);
  check_input_shapes({input_shape}, false);
  VariableStore::Scope scope(*store_, name_);
  last_output_shape_ = compute_output_shape(input_shape);
  return last_output_shape_;
}

Shape Layer::output_shape(const std::vector<Shape>& input_shapes) {
  if (input_shapes.empty()) throw ValueError("layer '" + name_ + "': output_shape of no inputs");
  ensure_built(input_shapes, true, float32);
  check_input_shapes(input_shapes, true);
  VariableStore::Scope scope(*store_, name_);
  last_output_shape_ = compute_output_shape_multi(input_shapes);
  return last_output_shape_;
}

void Layer::build(const Shape&) {}

void Layer::build_multi(const std::vector<Shape>& input_shapes) {
  if (input_shapes.size() == 1) build(input_shapes[0]);
}

Tensor Layer::call_multi(const std::vector<Tensor>& xs, bool training) {
  if (xs.size() != 1) {
    throw ValueError("layer '" + name_ + "' (" + type_name() + ") takes one input, got " +
                     std::to_string(xs.size()));
  }
  return call(xs[0], training);
}

Shape Layer::compute_output_shape(const Shape& input_shape) {
  NoTape no_tape;
  return call(zeros(input_shape), false).shape();
}

Shape Layer::compute_output_shape_multi(const std::vector<Shape>& input_shapes) {
  if (input_shapes.size() == 1) return compute_output_shape(input_shapes[0]);
  NoTape no_tape;
  std::vector<Tensor> xs;
  for (const Shape& s : input_shapes) xs.push_back(zeros(s));
  return call_multi(xs, false).shape();
}

Variable Layer::add_weight(const std::string& name, const Shape& shape,
                           const std::string& initializer, bool trainable, DType dtype) {
  return add_weight(name, shape, initializers::get(initializer), trainable, dtype);
}

Variable Layer::add_weight(const std::string& name, const Shape& shape,
                           const Initializer& initializer, bool trainable, DType dtype) {
  if (!building_) {
    throw StateError("layer '" + name_ + "': add_weight('" + name +
                     "') outside build(); create weights in build()");
  }
  for (const auto& [n, v] : own_weights_) {
    if (n == name) throw ValueError("layer '" + name_ + "': weight '" + name + "' added twice");
  }
  // Sizes can come from a config file: refuse a weight whose element count overflows or
  // exceeds 2^40 (4 TiB of float32) before anything is allocated.
  int64_t numel = 1;
  bool too_large = false;
  for (int i = 0; i < shape.rank(); ++i) {
    too_large = too_large || shape[i] < 0 || __builtin_mul_overflow(numel, shape[i], &numel);
  }
  if (too_large || numel > (int64_t(1) << 40)) {
    throw ValueError("layer '" + name_ + "' (" + type_name() + "): weight '" + name +
                     "' of shape " + to_string(shape) + " is too large (over 2^40 elements)");
  }
  Variable v;
  if (share_from_ != nullptr) {
    v = share_from_->weight(name);
    if (!v.defined()) {
      throw ValueError("layer '" + name_ + "' shares weights with layer '" + share_from_->name_ +
                       "', which has no weight '" + name + "'");
    }
    if (v.shape() != shape || v.dtype() != dtype) {
      throw ShapeError("layer '" + name_ + "' shares weight '" + name + "' with layer '" +
                       share_from_->name_ + "': it needs " + to_string(shape) + " " +
                       std::string(dtype_name(dtype)) + ", '" + v.name() + "' is " +
                       to_string(v.shape()) + " " + std::string(dtype_name(v.dtype())));
    }
  } else {
    v = store_->get_or_create(name, shape, dtype, initializer, trainable);
  }
  own_weights_.emplace_back(name, v);
  return v;
}

Variable Layer::weight(const std::string& name) const {
  for (const auto& [n, v] : own_weights_) {
    if (n == name) return v;
  }
  return Variable();
}

void Layer::require_built(const char* what) const {
  if (!built_) {
    throw StateError("layer '" + name_ + "' is not built yet, so it has no " + what +
                     ": call it on data or use output_shape()/summary(input_shape) first");
  }
}

// which: 0 all, 1 trainable, 2 non-trainable. A weight is trainable only if it is and every
// layer on its path is.
void Layer::collect(std::vector<Variable>& out, int which, bool parent_trainable) const {
  const bool on = parent_trainable && trainable_;
  for (const auto& [n, v] : own_weights_) {
    const bool t = on && v.trainable();
    if (which == 0 || (which == 1 && t) || (which == 2 && !t)) out.push_back(v);
  }
  for (const auto& l : sublayers_) l->collect(out, which, on);
}

namespace {
std::vector<Variable> dedupe(std::vector<Variable> vs) {
  std::unordered_set<const void*> seen;
  std::vector<Variable> out;
  for (Variable& v : vs) {
    if (seen.insert(v.id()).second) out.push_back(std::move(v));
  }
  return out;
}
}  // namespace

std::vector<Variable> Layer::weights() const {
  require_built("weights");
  std::vector<Variable> out;
  collect(out, 0, true);
  return dedupe(std::move(out));
}

std::vector<Variable> Layer::trainable_weights() const {
  require_built("trainable_weights");
  std::vector<Variable> out;
  collect(out, 1, true);
  return dedupe(std::move(out));
}

std::vector<Variable> Layer::non_trainable_weights() const {
  require_built("non_trainable_weights");
  std::vector<Variable> out;
  collect(out, 2, true);
  // A variable trainable through one path and frozen through another counts as trainable.
  std::unordered_set<const void*> trainable;
  for (const Variable& v : trainable_weights()) trainable.insert(v.id());
  std::vector<Variable> result;
  for (Variable& v : dedupe(std::move(out))) {
    if (!trainable.count(v.id())) result.push_back(std::move(v));
  }
  return result;
}

int64_t Layer::count_params() const {
  require_built("parameters to count");
  int64_t n = 0;
  for (const Variable& v : weights()) n += v.shape().numel();
  return n;
}

void Layer::set_trainable(bool on) {
  trainable_ = on;
  for (const auto& l : sublayers_) l->set_trainable(on);
}

void Layer::share_weights_from(Layer& other) {
  if (built_) {
    throw StateError("layer '" + name_ + "' is already built; share_weights_from('" + other.name_ +
                     "') must come before its first call");
  }
  if (&other == this) throw ValueError("layer '" + name_ + "' cannot share weights with itself");
  share_from_ = &other;
}

void Layer::set_store(VariableStore& store) {
  if (built_) {
    throw StateError("layer '" + name_ +
                     "' is already built; set_store must come before its "
                     "first call");
  }
  store_ = &store;
  for (const auto& l : sublayers_) {
    if (!l->built_) l->set_store(store);
  }
}

void Layer::track_layer(std::shared_ptr<Layer> layer) {
  if (!layer) throw ValueError("layer '" + name_ + "': cannot track a null layer");
  if (layer.get() == this) throw ValueError("layer '" + name_ + "' cannot track itself");
  if (!layer->built_) layer->set_store(*store_);
  sublayers_.push_back(std::move(layer));
}

}  // namespace kiln
