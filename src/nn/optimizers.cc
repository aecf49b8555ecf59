// Optimizers: validation and slot bookkeeping in the base class; each rule runs its update op
// (src/ops/updates.cc), so eager steps and traced steps apply the same kernels.
#include "kiln/nn/optimizers.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>

#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw ValueError(what);
}

void run_update(const OpDef& op, std::initializer_list<Tensor> in, const Attrs& attrs) {
  Tensor none[1];
  run_op(op, std::span<const Tensor>(in.begin(), in.size()), attrs, std::span<Tensor>(none, 0));
}

void run_update(const OpDef& op, std::span<const Tensor> in, const Attrs& attrs) {
  Tensor none[1];
  run_op(op, in, attrs, std::span<Tensor>(none, 0));
}

// Calls run(first, count) for consecutive runs of at most max_per_op items (one multi-tensor
// op each: an op takes at most 16 inputs); a run of one item goes to single(item) instead
// (the one-variable op: the same bits, a smaller graph).
template <typename Run, typename Single>
void for_update_runs(std::span<const Optimizer::UpdateItem> items, size_t max_per_op, Run&& run,
                     Single&& single) {
  // Balanced runs: 8 items at 3 per op make 3 + 3 + 2, never 3 + 3 + 1 + 1.
  const size_t ops = (items.size() + max_per_op - 1) / max_per_op;
  size_t first = 0;
  for (size_t k = 0; k < ops; ++k) {
    const size_t count = (items.size() - first) / (ops - k);
    if (count == 1) {
      single(items[first]);
    } else {
      run(items.subspan(first, count));
    }
    first += count;
  }
}

}  // namespace

// ---- Optimizer ------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, double learning_rate, std::vector<std::string> slot_names)
    : name_(std::move(name)), slot_names_(std::move(slot_names)) {
  require(learning_rate >= 0,
          name_ + ": learning_rate must be >= 0, got " + std::to_string(learning_rate));
  learning_rate_ = make_state(scalar(learning_rate, DType::kFloat64));
  iterations_ = make_state(scalar(0, DType::kInt64));
  one_ = scalar(1, DType::kInt64);
}

Optimizer::~Optimizer() = default;

void Optimizer::set_learning_rate(double lr) {
  require(lr >= 0, name_ + ": learning_rate must be >= 0, got " + std::to_string(lr));
  assign(learning_rate_, scalar(lr, DType::kFloat64));
}

double Optimizer::learning_rate() const { return learning_rate_.item<double>(); }
int64_t Optimizer::iterations() const { return iterations_.item<int64_t>(); }
void Optimizer::set_iterations(int64_t n) {
  assign(iterations_, scalar(static_cast<double>(n), DType::kInt64));
}

std::vector<Variable> Optimizer::variables() const { return slot_order_; }

Variable Optimizer::slot(const Variable& variable, const std::string& slot) const {
  auto it = entries_.find(variable.id());
  if (it == entries_.end()) return {};
  for (size_t i = 0; i < slot_names_.size(); ++i) {
    if (slot_names_[i] == slot) return it->second.slots[i];
  }
  return {};
}

Variable Optimizer::slot_for_restore(const Variable& variable, const std::string& slot) {
  for (size_t i = 0; i < slot_names_.size(); ++i) {
    if (slot_names_[i] == slot) return entry_for(variable).slots[i];
  }
  throw ValueError(name_ + ": no slot '" + slot + "' (this optimizer keeps " +
                   std::to_string(slot_names_.size()) + " slots per variable)");
}

nlohmann::json Optimizer::get_config() const {
  return {{"name", name_}, {"learning_rate", learning_rate()}};
}

nlohmann::json serialize_optimizer(const Optimizer& optimizer) {
  static const std::pair<const char*, const char*> kClasses[] = {
      {"sgd", "SGD"}, {"adam", "Adam"}, {"adamw", "AdamW"}, {"rmsprop", "RMSprop"}};
  for (const auto& [name, cls] : kClasses) {
    if (optimizer.name() == name) return {{"class_name", cls}, {"config", optimizer.get_config()}};
  }
  throw ValueError("serialize_optimizer: optimizer '" + optimizer.name() + "' has no class name");
}

namespace {

// config[name] as a number, else `fallback` when absent (Keras' defaults), ValueError when
// present but not a number.
double number(const nlohmann::json& config, const char* cls, const char* name, double fallback) {
  if (!config.contains(name)) return fallback;
  const nlohmann::json& v = config.at(name);
  if (!v.is_number()) {
    throw ValueError(std::string("optimizer ") + cls + ": '" + name + "' must be a number, got " +
                     v.dump().substr(0, 80));
  }
  return v.get<double>();
}

}  // namespace

std::unique_ptr<Optimizer> deserialize_optimizer(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("class_name") || !j.at("class_name").is_string() ||
      !j.contains("config") || !j.at("config").is_object()) {
    throw ValueError("optimizer config must be {\"class_name\": ..., \"config\": {...}}");
  }
  const std::string cls = j.at("class_name").get<std::string>();
  const nlohmann::json& c = j.at("config");
  const char* n = cls.c_str();
  if (cls == "SGD") {
    bool nesterov = false;
    if (c.contains("nesterov")) {
      if (!c.at("nesterov").is_boolean())
        throw ValueError("optimizer SGD: 'nesterov' must be a bool");
      nesterov = c.at("nesterov").get<bool>();
    }
    return std::make_unique<SGD>(number(c, n, "learning_rate", 0.01), number(c, n, "momentum", 0),
                                 nesterov);
  }
  if (cls == "Adam") {
    return std::make_unique<Adam>(number(c, n, "learning_rate", 0.001), number(c, n, "beta_1", 0.9),
                                  number(c, n, "beta_2", 0.999), number(c, n, "epsilon", 1e-7));
  }
  if (cls == "AdamW") {
    return std::make_unique<AdamW>(number(c, n, "learning_rate", 0.001),
                                   number(c, n, "weight_decay", 0.004), number(c, n, "beta_1", 0.9),
                                   number(c, n, "beta_2", 0.999), number(c, n, "epsilon", 1e-7));
  }
  if (cls == "RMSprop") {
    return std::make_unique<RMSprop>(number(c, n, "learning_rate", 0.001), number(c, n, "rho", 0.9),
                                     number(c, n, "momentum", 0), number(c, n, "epsilon", 1e-7));
  }
  throw ValueError("unknown optimizer class '" + cls.substr(0, 80) +
                   "' (known: SGD, Adam, AdamW, RMSprop)");
}

Optimizer::Entry& Optimizer::entry_for(const Variable& v) {
  auto it = entries_.find(v.id());
  if (it != entries_.end()) return it->second;
  Entry e;
  e.variable = v;
  for (const std::string& s : slot_names_) {
    Variable slot(name_ + "/" + v.name() + "/" + s, zeros(v.shape(), v.dtype()),
                  /*trainable=*/false);
    e.slot_values.push_back(slot.value());
    e.slots.push_back(slot);
    slot_order_.push_back(slot);
  }
  return entries_.emplace(v.id(), std::move(e)).first->second;
}

void Optimizer::apply_gradients(const std::vector<Variable>& variables,
                                const std::vector<Tensor>& grads) {
  if (variables.size() != grads.size()) {
    throw ValueError(name_ + ".apply_gradients: " + std::to_string(variables.size()) +
                     " variables but " + std::to_string(grads.size()) + " gradients");
  }
  // Validate everything first so a bad call leaves every variable untouched.
  for (size_t i = 0; i < variables.size(); ++i) {
    const Variable& v = variables[i];
    if (!v.defined()) {
      throw ValueError(name_ + ".apply_gradients: variable " + std::to_string(i) + " is undefined");
    }
    const Tensor& g = grads[i];
    if (!g.defined()) continue;
    if (v.dtype() != DType::kFloat32 && v.dtype() != DType::kFloat64) {
      throw DTypeError(name_ + ".apply_gradients: variable '" + v.name() + "' has dtype " +
                       std::string(dtype_name(v.dtype())) + "; only float32/float64 train");
    }
    if (g.dtype() != v.dtype()) {
      throw DTypeError(name_ + ".apply_gradients: gradient of variable '" + v.name() +
                       "' has dtype " + std::string(dtype_name(g.dtype())) + ", the variable " +
                       std::string(dtype_name(v.dtype())));
    }
    if (g.shape() != v.shape()) {
      throw ShapeError(name_ + ".apply_gradients: gradient of variable '" + v.name() +
                       "' has shape " + to_string(g.shape()) + ", the variable " +
                       to_string(v.shape()));
    }
  }
  // The update ops bump the versions of each variable and slot they write.
  if (!foreach_) {
    for (size_t i = 0; i < variables.size(); ++i) {
      if (!grads[i].defined()) continue;
      Entry& e = entry_for(variables[i]);
      update(variables[i].value(), grads[i], e.slot_values);
    }
    assign_add(iterations_, one_);
    return;
  }
  // Entries first (unordered_map nodes stay put, so the pointers survive later insertions).
  std::vector<Entry*> entry(variables.size(), nullptr);
  for (size_t i = 0; i < variables.size(); ++i) {
    if (grads[i].defined()) entry[i] = &entry_for(variables[i]);
  }
  std::vector<Tensor> values(variables.size());
  std::vector<UpdateItem> items[2];  // float32, float64
  std::vector<const void*> seen;
  bool repeated = false;
  for (size_t i = 0; i < variables.size(); ++i) {
    if (!entry[i]) continue;
    values[i] = variables[i].value();
    const void* data = values[i].raw_data();
    repeated = repeated || std::find(seen.begin(), seen.end(), data) != seen.end();
    seen.push_back(data);
    items[values[i].dtype() == DType::kFloat64].push_back(
        {&values[i], &grads[i], &entry[i]->slot_values});
  }
  for (const std::vector<UpdateItem>& group : items) {
    if (repeated || group.size() == 1) {  // in order, one op each (a repeat updates twice)
      for (const UpdateItem& it : group) update(*it.value, *it.grad, *it.slots);
    } else if (!group.empty()) {
      update_many(group);
    }
  }
  assign_add(iterations_, one_);
}

void Optimizer::update_many(std::span<const UpdateItem> items) {
  for (const UpdateItem& it : items) update(*it.value, *it.grad, *it.slots);
}

// ---- SGD --------------------------------------------------------------------------------------

SGD::SGD(double learning_rate, double momentum, bool nesterov)
    : Optimizer("sgd", learning_rate,
                momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{}),
      momentum_(momentum),
      nesterov_(nesterov) {
  require(momentum >= 0 && momentum <= 1,
          "sgd: momentum must be in [0, 1], got " + std::to_string(momentum));
}

void SGD::update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) {
  Attrs a;
  a.add_int(nesterov_ ? 1 : 0);
  a.add_float(momentum_);
  if (slots.empty()) {
    run_update(ops::kSgdUpdate, {value, grad, learning_rate_tensor()}, a);
  } else {
    run_update(ops::kSgdUpdate, {value, grad, learning_rate_tensor(), slots[0]}, a);
  }
}

void SGD::update_many(std::span<const UpdateItem> items) {
  const bool slot = momentum_ > 0;
  Attrs a;
  a.add_int(nesterov_ ? 1 : 0).add_int(slot ? 1 : 0);
  a.add_float(momentum_);
  for_update_runs(
      items, slot ? 5 : 7,
      [&](std::span<const UpdateItem> run) {
        Tensor in[16];
        int n = 0;
        for (const UpdateItem& it : run) {
          in[n++] = *it.value;
          in[n++] = *it.grad;
          if (slot) in[n++] = (*it.slots)[0];
        }
        in[n++] = learning_rate_tensor();
        run_update(ops::kSgdUpdateMulti, std::span<const Tensor>(in, n), a);
      },
      [&](const UpdateItem& it) { update(*it.value, *it.grad, *it.slots); });
}

// ---- Adam / AdamW -------------------------------------------------------------------------------

Adam::Adam(double learning_rate, double beta_1, double beta_2, double epsilon)
    : Adam("adam", learning_rate, beta_1, beta_2, epsilon) {}

Adam::Adam(std::string name, double learning_rate, double beta_1, double beta_2, double epsilon)
    : Optimizer(name, learning_rate, {"m", "v"}),
      beta_1_(beta_1),
      beta_2_(beta_2),
      epsilon_(epsilon) {
  require(beta_1 >= 0 && beta_1 < 1,
          name + ": beta_1 must be in [0, 1), got " + std::to_string(beta_1));
  require(beta_2 >= 0 && beta_2 < 1,
          name + ": beta_2 must be in [0, 1), got " + std::to_string(beta_2));
  require(epsilon >= 0, name + ": epsilon must be >= 0, got " + std::to_string(epsilon));
}

void Adam::update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) {
  adam_step(value, grad, slots, 0.0);
}

void Adam::adam_step(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots,
                     double decay) {
  Attrs a;
  a.add_float(beta_1_).add_float(beta_2_).add_float(epsilon_).add_float(decay);
  run_update(ops::kAdamUpdate,
             {value, slots[0], slots[1], grad, learning_rate_tensor(), iterations_tensor()}, a);
}

void Adam::update_many(std::span<const UpdateItem> items) { adam_step_many(items, 0.0); }

void Adam::adam_step_many(std::span<const UpdateItem> items, double decay) {
  Attrs a;
  a.add_float(beta_1_).add_float(beta_2_).add_float(epsilon_).add_float(decay);
  for_update_runs(
      items, 3,
      [&](std::span<const UpdateItem> run) {
        Tensor in[16];
        int n = 0;
        for (const UpdateItem& it : run) {
          in[n++] = *it.value;
          in[n++] = (*it.slots)[0];
          in[n++] = (*it.slots)[1];
          in[n++] = *it.grad;
        }
        in[n++] = learning_rate_tensor();
        in[n++] = iterations_tensor();
        run_update(ops::kAdamUpdateMulti, std::span<const Tensor>(in, n), a);
      },
      [&](const UpdateItem& it) { adam_step(*it.value, *it.grad, *it.slots, decay); });
}

AdamW::AdamW(double learning_rate, double weight_decay, double beta_1, double beta_2,
             double epsilon)
    : Adam("adamw", learning_rate, beta_1, beta_2, epsilon), weight_decay_(weight_decay) {
  require(weight_decay >= 0,
          "adamw: weight_decay must be >= 0, got " + std::to_string(weight_decay));
}

void AdamW::update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) {
  adam_step(value, grad, slots, weight_decay_);
}

void AdamW::update_many(std::span<const UpdateItem> items) { adam_step_many(items, weight_decay_); }

// ---- RMSprop ----------------------------------------------------------------------------------

RMSprop::RMSprop(double learning_rate, double rho, double momentum, double epsilon)
    : Optimizer("rmsprop", learning_rate,
                momentum > 0 ? std::vector<std::string>{"velocity", "momentum"}
                             : std::vector<std::string>{"velocity"}),
      rho_(rho),
      momentum_(momentum),
      epsilon_(epsilon) {
  require(rho >= 0 && rho < 1, "rmsprop: rho must be in [0, 1), got " + std::to_string(rho));
  require(momentum >= 0 && momentum <= 1,
          "rmsprop: momentum must be in [0, 1], got " + std::to_string(momentum));
  require(epsilon >= 0, "rmsprop: epsilon must be >= 0, got " + std::to_string(epsilon));
}

void RMSprop::update(const Tensor& value, const Tensor& grad, const std::vector<Tensor>& slots) {
  Attrs a;
  a.add_float(rho_).add_float(momentum_).add_float(epsilon_);
  if (slots.size() > 1) {
    run_update(ops::kRmspropUpdate, {value, slots[0], grad, learning_rate_tensor(), slots[1]}, a);
  } else {
    run_update(ops::kRmspropUpdate, {value, slots[0], grad, learning_rate_tensor()}, a);
  }
}

void RMSprop::update_many(std::span<const UpdateItem> items) {
  const bool slot = momentum_ > 0;
  Attrs a;
  a.add_int(slot ? 1 : 0);
  a.add_float(rho_).add_float(momentum_).add_float(epsilon_);
  for_update_runs(
      items, slot ? 3 : 5,
      [&](std::span<const UpdateItem> run) {
        Tensor in[16];
        int n = 0;
        for (const UpdateItem& it : run) {
          in[n++] = *it.value;
          in[n++] = (*it.slots)[0];
          in[n++] = *it.grad;
          if (slot) in[n++] = (*it.slots)[1];
        }
        in[n++] = learning_rate_tensor();
        run_update(ops::kRmspropUpdateMulti, std::span<const Tensor>(in, n), a);
      },
      [&](const UpdateItem& it) { update(*it.value, *it.grad, *it.slots); });
}

// ---- configs (Keras' names) -------------------------------------------------------------------

nlohmann::json SGD::get_config() const {
  nlohmann::json c = Optimizer::get_config();
  c["momentum"] = momentum_;
  c["nesterov"] = nesterov_;
  return c;
}

nlohmann::json Adam::get_config() const {
  nlohmann::json c = Optimizer::get_config();
  c["beta_1"] = beta_1_;
  c["beta_2"] = beta_2_;
  c["epsilon"] = epsilon_;
  return c;
}

nlohmann::json AdamW::get_config() const {
  nlohmann::json c = Adam::get_config();
  c["weight_decay"] = weight_decay_;
  return c;
}

nlohmann::json RMSprop::get_config() const {
  nlohmann::json c = Optimizer::get_config();
  c["rho"] = rho_;
  c["momentum"] = momentum_;
  c["epsilon"] = epsilon_;
  return c;
}

}  // namespace kiln
