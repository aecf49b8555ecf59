// Magnitude pruning during training (kiln/compress.h): the PolynomialDecay schedule, the
// PruneLowMagnitude wrapper owning each kernel's mask, the UpdatePruningStep callback and
// strip_pruning.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor_impl.h"
#include "kiln/compress.h"
#include "kiln/nn.h"
#include "kiln/nn/config.h"
#include "kiln/ops.h"

namespace kiln {
namespace {

bool prunable(const Layer& l) {
  return dynamic_cast<const Dense*>(&l) != nullptr || dynamic_cast<const Conv2D*>(&l) != nullptr;
}

Variable kernel_of(const Layer& l) {
  if (auto* d = dynamic_cast<const Dense*>(&l)) return d->kernel();
  if (auto* c = dynamic_cast<const Conv2D*>(&l)) return c->kernel();
  return {};
}

void require_built(const Layer& model, const char* fn) {
  if (!model.built()) {
    throw StateError(std::string(fn) + ": model '" + model.name() +
                     "' is not built (call it once or use output_shape first)");
  }
}

// The example shape (no batch dim) model was built for.
Shape example_shape(const Layer& model) {
  Shape s = model.built_input_shapes().at(0);
  s[0] = 1;
  return s;
}

void collect_wrappers(Layer& l, std::vector<PruneLowMagnitude*>& out) {
  if (auto* w = dynamic_cast<PruneLowMagnitude*>(&l)) {
    out.push_back(w);
    return;
  }
  for (const auto& s : l.layers()) collect_wrappers(*s, out);
}

void count_zeros(const Layer& l, int64_t& zeros, int64_t& total) {
  if (prunable(l)) {
    const Variable k = kernel_of(l);
    if (k.defined()) {
      const Tensor v = k.dtype() == float32 ? k.value() : cast(k.value(), float32);
      const float* p = detail::ptr<float>(v);
      for (int64_t i = 0, n = v.numel(); i < n; ++i) zeros += p[i] == 0.f;
      total += v.numel();
    }
    return;
  }
  for (const auto& s : l.layers()) count_zeros(*s, zeros, total);
}

}  // namespace

// ---- PolynomialDecay ------------------------------------------------------------------------

void PolynomialDecay::validate() const {
  auto fail = [](const std::string& what) { throw ValueError("PolynomialDecay: " + what); };
  if (!(initial_sparsity >= 0 && initial_sparsity < 1)) {
    fail("initial_sparsity must be in [0, 1), got " + std::to_string(initial_sparsity));
  }
  if (!(final_sparsity >= initial_sparsity && final_sparsity < 1)) {
    fail("final_sparsity must be in [initial_sparsity, 1), got " + std::to_string(final_sparsity));
  }
  if (begin_step < 0 || end_step <= begin_step) {
    fail("need 0 <= begin_step < end_step, got begin_step " + std::to_string(begin_step) +
         " and end_step " + std::to_string(end_step));
  }
  if (frequency < 1) fail("frequency must be >= 1, got " + std::to_string(frequency));
  if (!(power > 0)) fail("power must be > 0, got " + std::to_string(power));
}

double PolynomialDecay::sparsity(int64_t step) const {
  const double p = std::clamp(double(step - begin_step) / double(end_step - begin_step), 0.0, 1.0);
  return final_sparsity + (initial_sparsity - final_sparsity) * std::pow(1.0 - p, power);
}

bool PolynomialDecay::should_update(int64_t step) const {
  if (step < begin_step || step > end_step) return false;
  return step == end_step || (step - begin_step) % frequency == 0;
}

// ---- PruneLowMagnitude ----------------------------------------------------------------------

PruneLowMagnitude::PruneLowMagnitude(std::shared_ptr<Layer> layer, std::string name)
    : Layer(std::move(name),
            "prune_low_magnitude_" + (layer ? layer->name() : std::string("layer"))),
      layer_(std::move(layer)) {
  if (!layer_) throw ValueError("PruneLowMagnitude: the layer to wrap is null");
  if (!prunable(*layer_)) {
    throw ValueError("PruneLowMagnitude: layer '" + layer_->name() + "' is a " +
                     layer_->type_name() + "; only Dense and Conv2D kernels are pruned");
  }
  track_layer(layer_);
}

nlohmann::json PruneLowMagnitude::get_config() const {
  nlohmann::json c = base_config();
  c["layer"] = serialize_layer(*layer_, /*with_build_config=*/false);
  return c;
}

std::shared_ptr<Layer> PruneLowMagnitude::from_config(const nlohmann::json& config) {
  ConfigReader r(config, "PruneLowMagnitude");
  std::shared_ptr<Layer> inner = deserialize_layer(r.raw("layer"));
  r.finish();
  auto w = std::make_shared<PruneLowMagnitude>(std::move(inner), r.name());
  w->set_trainable(r.trainable());
  return w;
}

void PruneLowMagnitude::build(const Shape& input_shape) {
  layer_->output_shape(input_shape);
  const Variable k = kernel_of(*layer_);
  mask_ = add_weight("prune_mask", k.shape(), initializers::ones(), /*trainable=*/false, k.dtype());
}

Tensor PruneLowMagnitude::call(const Tensor& x, bool training) { return (*layer_)(x, training); }

Shape PruneLowMagnitude::compute_output_shape(const Shape& input_shape) {
  return layer_->output_shape(input_shape);
}

Variable PruneLowMagnitude::kernel() const {
  if (!built()) throw StateError("PruneLowMagnitude '" + name() + "' is not built");
  return kernel_of(*layer_);
}

Variable PruneLowMagnitude::mask() const {
  if (!built()) throw StateError("PruneLowMagnitude '" + name() + "' is not built");
  return mask_;
}

void PruneLowMagnitude::update_mask(double sparsity) {
  if (!(sparsity >= 0 && sparsity < 1)) {
    throw ValueError("PruneLowMagnitude '" + name() + "': sparsity must be in [0, 1), got " +
                     std::to_string(sparsity));
  }
  const Variable k = kernel();
  const Tensor w = cast(k.value(), DType::kFloat64);
  const Tensor old = cast(mask_.value(), DType::kFloat64);
  const double *p = detail::ptr<double>(w), *was = detail::ptr<double>(old);
  const int64_t n = w.numel();
  int64_t masked = 0;
  for (int64_t i = 0; i < n; ++i) masked += was[i] == 0.0;
  // Masks only grow (as tfmot's): the entries masked already, then the smallest magnitudes,
  // ties broken by position (deterministic).
  const int64_t drop = std::max(masked, static_cast<int64_t>(std::floor(sparsity * double(n))));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto first = [&](int64_t a, int64_t b) {
    const bool ma = was[a] == 0.0, mb = was[b] == 0.0;
    if (ma != mb) return ma;
    const double xa = std::abs(p[a]), xb = std::abs(p[b]);
    return xa < xb || (xa == xb && a < b);
  };
  if (drop > 0 && drop < n) {
    std::nth_element(order.begin(), order.begin() + drop, order.end(), first);
  }
  Tensor m = ones(k.shape(), DType::kFloat64);
  double* mp = detail::ptr<double>(m);
  for (int64_t i = 0; i < std::min(drop, n); ++i) mp[order[i]] = 0.0;
  mask_.assign(cast(m, mask_.dtype()));
  apply_mask();
}

void PruneLowMagnitude::apply_mask() {
  Variable k = kernel();
  k.assign(mul(k.value(), mask_.value()));
}

KILN_REGISTER_LAYER(PruneLowMagnitude);

namespace compress {
bool qat_layers_linked();  // qat.cc: referencing it links QuantizeAware's registration
}  // namespace compress

void register_compress_layers() { (void)compress::qat_layers_linked(); }

// ---- prune_low_magnitude / strip_pruning ------------------------------------------------------

std::shared_ptr<Sequential> prune_low_magnitude(const Sequential& model) {
  require_built(model, "prune_low_magnitude");
  auto out = std::make_shared<Sequential>(unique_layer_name(model.name() + "_pruning"));
  out->set_store(model.store());
  int wrapped = 0;
  for (const auto& l : model.layers()) {
    if (prunable(*l)) {
      out->add(std::make_shared<PruneLowMagnitude>(l));
      ++wrapped;
    } else {
      out->add(l);
    }
  }
  if (wrapped == 0) {
    throw ValueError("prune_low_magnitude: model '" + model.name() +
                     "' has no Dense or Conv2D layer to prune");
  }
  out->output_shape(example_shape(model));
  return out;
}

std::shared_ptr<Sequential> strip_pruning(const Sequential& model) {
  require_built(model, "strip_pruning");
  auto out = std::make_shared<Sequential>(unique_layer_name(model.name() + "_stripped"));
  out->set_store(model.store());
  for (const auto& l : model.layers()) {
    if (auto* w = dynamic_cast<PruneLowMagnitude*>(l.get())) {
      w->apply_mask();
      out->add(w->shared_layer());
    } else {
      out->add(l);
    }
  }
  out->output_shape(example_shape(model));
  return out;
}

double kernel_sparsity(const Layer& layer) {
  require_built(layer, "kernel_sparsity");
  int64_t zeros = 0, total = 0;
  count_zeros(layer, zeros, total);
  return total == 0 ? 0.0 : double(zeros) / double(total);
}

// ---- UpdatePruningStep ------------------------------------------------------------------------

UpdatePruningStep::UpdatePruningStep(PolynomialDecay schedule) : schedule_(schedule) {
  schedule_.validate();
}

void UpdatePruningStep::on_train_begin(const Logs&) {
  wrappers_.clear();
  if (model() != nullptr) collect_wrappers(*model(), wrappers_);
  if (wrappers_.empty()) {
    throw ValueError("UpdatePruningStep: model '" + (model() ? model()->name() : std::string("?")) +
                     "' holds no PruneLowMagnitude layer (wrap it with prune_low_magnitude)");
  }
}

void UpdatePruningStep::on_train_batch_end(int64_t, const Logs&) {
  const bool update = schedule_.should_update(step_);
  const double target = schedule_.sparsity(step_);
  for (PruneLowMagnitude* w : wrappers_) {
    if (update) {
      w->update_mask(target);
    } else {
      w->apply_mask();
    }
  }
  ++step_;
}

}  // namespace kiln
