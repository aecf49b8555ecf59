// Structured pruning of Sequential models (kiln/compress.h): each prunable Dense/Conv2D keeps
// the units whose kernel columns have the largest L1/L2 norms; the channel choice then flows
// forward through BatchNormalization (its vectors sliced), shape-neutral layers and Flatten
// (its fan-out: every spatial position's kept channels) into the next Dense/Conv2D's input
// rows. The new model comes from the old one's config with smaller units/filters, and its
// weights are gathered from the old ones.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor_impl.h"
#include "kiln/compress.h"
#include "kiln/nn/config.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/ops.h"

namespace kiln {
namespace {

enum class Kind { kDense, kConv, kBatchNorm, kFlatten, kNeutral };

Kind kind_of(const Layer& l) {
  if (dynamic_cast<const Dense*>(&l)) return Kind::kDense;
  if (dynamic_cast<const Conv2D*>(&l)) return Kind::kConv;
  if (dynamic_cast<const BatchNormalization*>(&l)) return Kind::kBatchNorm;
  if (dynamic_cast<const Flatten*>(&l)) return Kind::kFlatten;
  if (dynamic_cast<const MaxPool2D*>(&l) || dynamic_cast<const AvgPool2D*>(&l) ||
      dynamic_cast<const Dropout*>(&l) || dynamic_cast<const Activation*>(&l)) {
    return Kind::kNeutral;
  }
  throw ValueError("prune_structured: layer '" + l.name() + "' (" + l.type_name() +
                   ") is not supported: only Dense, Conv2D, BatchNormalization, Flatten, "
                   "MaxPool2D, AvgPool2D, Dropout and Activation");
}

Variable kernel_of(const Layer& l) {
  if (auto* d = dynamic_cast<const Dense*>(&l)) return d->kernel();
  return dynamic_cast<const Conv2D&>(l).kernel();
}
Variable bias_of(const Layer& l) {
  if (auto* d = dynamic_cast<const Dense*>(&l)) return d->bias();
  return dynamic_cast<const Conv2D&>(l).bias();
}

// The `keep` output units (last axis) with the largest norms, in their original order.
std::vector<int64_t> strongest_units(const Tensor& kernel, int64_t keep, PruneNorm norm) {
  const Tensor w = kernel.dtype() == float32 ? kernel : cast(kernel, float32);
  const int64_t n = w.shape()[w.shape().rank() - 1], total = w.numel();
  const float* p = detail::ptr<float>(w);
  std::vector<double> score(n, 0.0);
  for (int64_t i = 0; i < total; ++i) {
    score[i % n] += norm == PruneNorm::kL1 ? std::abs(double(p[i])) : double(p[i]) * p[i];
  }
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  order.resize(keep);
  std::sort(order.begin(), order.end());
  return order;
}

Tensor take(const Tensor& t, const std::vector<int64_t>& idx, int axis) {
  return gather(t, from_vector(idx), axis);
}

}  // namespace

std::string PruneReport::to_text() const {
  std::string s = "structured pruning:\n";
  char line[200];
  for (const PrunedLayerReport& l : layers) {
    std::snprintf(line, sizeof line, "  %-24s %6lld -> %6lld units\n", l.name.c_str(),
                  static_cast<long long>(l.units_before), static_cast<long long>(l.units_after));
    s += line;
  }
  std::snprintf(line, sizeof line, "  parameters: %lld -> %lld (%.2fx)\n",
                static_cast<long long>(params_before), static_cast<long long>(params_after),
                params_before ? double(params_after) / double(params_before) : 0.0);
  return s + line;
}

std::shared_ptr<Sequential> prune_structured(const Sequential& model, const PruneOptions& o,
                                             PruneReport* report_out) {
  if (!(o.fraction >= 0 && o.fraction < 1)) {
    throw ValueError("prune_structured: fraction must be in [0, 1), got " +
                     std::to_string(o.fraction));
  }
  if (!model.built()) {
    throw StateError("prune_structured: model '" + model.name() + "' is not built");
  }
  const auto& layers = model.layers();
  std::vector<Kind> kinds;
  int last_linear = -1;
  for (size_t i = 0; i < layers.size(); ++i) {
    kinds.push_back(kind_of(*layers[i]));
    if (kinds[i] == Kind::kDense || kinds[i] == Kind::kConv) last_linear = static_cast<int>(i);
  }
  nlohmann::json j = serialize_layer(model, false);
  nlohmann::json& entries = j["config"]["layers"];
  if (!entries.is_array() || entries.size() != layers.size()) {
    throw ValueError("prune_structured: model '" + model.name() +
                     "' uses a layer twice; prune a model whose layers are distinct");
  }

  // Per layer: the input channels it keeps (nullopt: all) and, for Dense/Conv2D, its outputs.
  PruneReport report;
  report.params_before = model.count_params();
  std::vector<std::optional<std::vector<int64_t>>> in_keep(layers.size()), out_keep(layers.size());
  std::optional<std::vector<int64_t>> flow;  // the channels the current activation keeps
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = *layers[i];
    nlohmann::json& cfg = entries[i]["config"];
    switch (kinds[i]) {
      case Kind::kFlatten:
        if (flow) {  // [N, ..., C] -> [N, P * C]: each position's kept channels
          const Shape& s = l.built_input_shapes().at(0);
          const int64_t c = s[s.rank() - 1], positions = s.numel() / std::max<int64_t>(s[0], 1) / c;
          std::vector<int64_t> rows;
          for (int64_t p = 0; p < positions; ++p)
            for (int64_t k : *flow) rows.push_back(p * c + k);
          flow = std::move(rows);
        }
        break;
      case Kind::kBatchNorm:
        in_keep[i] = flow;
        break;
      case Kind::kNeutral:
        break;
      case Kind::kDense:
      case Kind::kConv: {
        if (kinds[i] == Kind::kConv && cfg.value("groups", 1) != 1) {
          throw ValueError("prune_structured: layer '" + l.name() +
                           "' is a grouped Conv2D; only groups=1 is pruned");
        }
        in_keep[i] = flow;
        flow.reset();
        if (static_cast<int>(i) == last_linear) break;  // the model's outputs stay
        const Tensor& k = kernel_of(l).value();
        const int64_t units = k.shape()[k.shape().rank() - 1];
        const int64_t keep = std::max<int64_t>(1, std::llround(double(units) * (1.0 - o.fraction)));
        out_keep[i] = strongest_units(k, keep, o.norm);
        flow = out_keep[i];
        cfg[kinds[i] == Kind::kDense ? "units" : "filters"] = keep;
        report.layers.push_back({l.name(), units, keep});
        break;
      }
    }
  }

  j["config"]["name"] = unique_layer_name(model.name() + "_pruned");
  auto made = std::dynamic_pointer_cast<Sequential>(deserialize_layer(j));
  made->output_shape(model.built_input_shapes().at(0));

  const auto& fresh = made->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = *layers[i];
    if (kinds[i] == Kind::kDense || kinds[i] == Kind::kConv) {
      const int in_axis = kinds[i] == Kind::kDense ? 0 : 2;
      Tensor k = kernel_of(l).value();
      if (in_keep[i]) k = take(k, *in_keep[i], in_axis);
      if (out_keep[i]) k = take(k, *out_keep[i], k.shape().rank() - 1);
      kernel_of(*fresh[i]).assign(k);
      if (Variable b = bias_of(l); b.defined()) {
        bias_of(*fresh[i]).assign(out_keep[i] ? take(b.value(), *out_keep[i], 0) : b.value());
      }
    } else if (kinds[i] == Kind::kBatchNorm) {
      const auto& from = dynamic_cast<const BatchNormalization&>(l);
      const auto& to = dynamic_cast<const BatchNormalization&>(*fresh[i]);
      const Variable src[4] = {from.gamma(), from.beta(), from.moving_mean(),
                               from.moving_variance()};
      Variable dst[4] = {to.gamma(), to.beta(), to.moving_mean(), to.moving_variance()};
      for (int v = 0; v < 4; ++v) {
        if (!src[v].defined()) continue;
        dst[v].assign(in_keep[i] ? take(src[v].value(), *in_keep[i], 0) : src[v].value());
      }
    }
  }
  report.params_after = made->count_params();
  if (report_out) *report_out = std::move(report);
  return made;
}

}  // namespace kiln
