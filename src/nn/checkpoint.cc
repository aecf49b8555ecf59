// save_weights / load_weights over the safetensors io layer. Loading validates the whole file
// against the model before assigning anything, so a failed load leaves the model unchanged.
#include "kiln/nn/checkpoint.h"

#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kiln/io.h"
#include "kiln/nn/layer.h"
#include "nn/weight_keys.h"

namespace kiln {
namespace {

// The name, cut to 80 bytes (at a UTF-8 character boundary) when longer.
std::string clip(const std::string& s) {
  size_t max = 80;
  if (s.size() <= max) return s;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;
  return s.substr(0, max) + "...";
}

// "a, b, c" (at most `limit` names, each cut by clip, then "and N more"): names from a file can
// be any length, and the message stays one readable line.
std::string join_names(const std::vector<std::string>& names, size_t limit = 8) {
  std::string r;
  for (size_t i = 0; i < names.size() && i < limit; ++i) r += (i ? ", " : "") + clip(names[i]);
  if (names.size() > limit) r += " and " + std::to_string(names.size() - limit) + " more";
  return r;
}

std::vector<Variable> unique_variables(const std::vector<Variable>& variables) {
  std::vector<Variable> out;
  std::unordered_set<const void*> seen;
  for (const Variable& v : variables) {
    if (!v.defined()) throw ValueError("save_variables: an undefined variable was given");
    if (seen.insert(v.id()).second) out.push_back(v);
  }
  return out;
}

}  // namespace

void assign_keyed(const Keyed& keyed, const SafetensorsFile& file, const std::string& prefix,
                  const std::string& path) {
  Keyed vars;
  for (const auto& [key, v] : keyed) vars.emplace_back(prefix + key, v);
  std::set<std::string> wanted;
  std::vector<std::string> missing;
  for (const auto& [key, v] : vars) {
    wanted.insert(key);
    if (!file.contains(key)) missing.push_back(key);
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : file.all()) {
    if (name.compare(0, prefix.size(), prefix) == 0 && !wanted.count(name)) {
      unexpected.push_back(name);
    }
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = "load_weights: " + path + " does not match the model:";
    if (!missing.empty()) msg += " missing " + join_names(missing) + ";";
    if (!unexpected.empty()) msg += " unexpected " + join_names(unexpected) + ";";
    msg.pop_back();
    throw FormatError(msg);
  }
  for (const auto& [key, v] : vars) {
    const Tensor& t = file.at(key);
    if (t.shape() != v.shape()) {
      throw ShapeError("load_weights: variable '" + v.name() + "' has shape " +
                       to_string(v.shape()) + " but " + path + " holds " + to_string(t.shape()));
    }
    if (t.dtype() != v.dtype()) {
      throw DTypeError("load_weights: variable '" + v.name() + "' has dtype " +
                       std::string(dtype_name(v.dtype())) + " but " + path + " holds " +
                       std::string(dtype_name(t.dtype())));
    }
  }
  // A variable reached under two keys (shared in the model) must be one tensor in the file too,
  // else one of the two values would be silently dropped.
  std::unordered_map<const void*, std::pair<std::string, const void*>> first;
  for (const auto& [key, v] : vars) {
    const void* data = file.at(key).numel() ? file.at(key).raw_data() : nullptr;
    auto [it, fresh] = first.emplace(v.id(), std::make_pair(key, data));
    if (!fresh && it->second.second != data) {
      throw FormatError("load_weights: " + path + " holds different tensors under '" +
                        it->second.first + "' and '" + key +
                        "', which are one shared variable in the model ('" + v.name() + "')");
    }
  }
  for (auto [key, v] : vars) v.assign(file.at(key));
}

// Every weight of `layer` keyed by its place in the layer tree: "2/kernel" is the weight
// "kernel" of sublayer 2, "0/1/bias" nests. Unique layer names ("dense_7") differ between
// processes and models; positions do not, so a model built by the same code loads the file.
// A variable reachable from two places (shared) is listed under both; the file stores it once.
void collect_keys(const Layer& layer, const std::string& prefix, Keyed& out) {
  std::unordered_set<const void*> in_sublayers;
  for (const auto& sub : layer.layers()) {
    for (const Variable& v : sub->weights()) in_sublayers.insert(v.id());
  }
  for (const Variable& v : layer.weights()) {
    if (in_sublayers.count(v.id())) continue;
    // The weight's name below its layer ("kernel", or "inner/w" from a scope inside build()).
    const std::string& n = v.name();
    const std::string marker = "/" + layer.name() + "/";
    size_t at = n.rfind(marker);
    size_t from = at == std::string::npos ? n.rfind('/') + 1 : at + marker.size();
    if (at == std::string::npos && n.compare(0, marker.size() - 1, marker.substr(1)) == 0) {
      from = marker.size() - 1;  // the layer is the outermost scope: "net/kernel"
    }
    out.emplace_back(prefix + n.substr(from), v);
  }
  for (size_t i = 0; i < layer.layers().size(); ++i) {
    collect_keys(*layer.layers()[i], prefix + std::to_string(i) + "/", out);
  }
}

Keyed weight_keys(const Layer& model) {
  Keyed keyed;
  collect_keys(model, "", keyed);
  return keyed;
}

namespace {
void load_keyed(const Keyed& vars, const std::string& path) {
  assign_keyed(vars, load_safetensors(path), "", path);
}
}  // namespace

void save_variables(const std::vector<Variable>& variables, const std::string& path,
                    const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Variable& v : unique_variables(variables)) tensors.emplace_back(v.name(), v.value());
  save_safetensors(path, tensors, metadata);
}

void load_variables(const std::vector<Variable>& variables, const std::string& path) {
  Keyed vars;
  for (const Variable& v : variables) {
    if (!v.defined()) throw ValueError("load_variables: an undefined variable was given");
  }
  for (const Variable& v : unique_variables(variables)) vars.emplace_back(v.name(), v);
  load_keyed(vars, path);
}

void save_weights(const Layer& model, const std::string& path) {
  Keyed keyed;
  collect_keys(model, "", keyed);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [key, v] : keyed) tensors.emplace_back(key, v.value());
  save_safetensors(path, tensors, {{"format", "kiln.weights"}, {"model", model.name()}});
}

void load_weights(Layer& model, const std::string& path) {
  Keyed keyed;
  collect_keys(model, "", keyed);
  load_keyed(keyed, path);
}

}  // namespace kiln
