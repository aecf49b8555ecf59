#include "graph/serialize.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "kiln/error.h"
#include "ops/registry.h"

namespace kiln::graph {

using json = nlohmann::json;

namespace {

std::vector<std::string_view> choices_of(const AttrField& f) {
  std::vector<std::string_view> out;
  std::string_view c = f.choices ? f.choices : "";
  while (!c.empty()) {
    const size_t bar = c.find('|');
    out.push_back(c.substr(0, bar));
    if (bar == std::string_view::npos) break;
    c.remove_prefix(bar + 1);
  }
  return out;
}

json int_value(const AttrField& f, int64_t v) {
  switch (f.type) {
    case AttrType::kBool:
      return v != 0;
    case AttrType::kDType:
      return std::string(dtype_name(static_cast<DType>(v)));
    case AttrType::kEnum: {
      std::vector<std::string_view> c = choices_of(f);
      return v >= 0 && v < static_cast<int64_t>(c.size()) ? json(std::string(c[v])) : json(v);
    }
    default:
      return v;
  }
}

// A text cut for messages: names from a file can be any length.
std::string clip(const std::string& s) { return s.size() <= 80 ? s : s.substr(0, 80) + "..."; }

int64_t parse_int(const AttrField& f, const json& v, const std::string& where) {
  auto bad = [&](const std::string& expected) -> int64_t {
    throw FormatError(where + ": attribute '" + f.name + "' must be " + expected + ", got " +
                      clip(v.dump()));
  };
  switch (f.type) {
    case AttrType::kBool:
      if (!v.is_boolean()) bad("true or false");
      return v.get<bool>() ? 1 : 0;
    case AttrType::kDType:
      if (v.is_string()) {
        if (std::optional<DType> t = dtype_from_name(v.get<std::string>())) {
          return static_cast<int64_t>(*t);
        }
      }
      return bad("a dtype name (float32, float64, int32, int64, int8, uint8, bool)");
    case AttrType::kEnum: {
      std::vector<std::string_view> c = choices_of(f);
      if (v.is_string()) {
        for (size_t k = 0; k < c.size(); ++k) {
          if (c[k] == v.get<std::string>()) return static_cast<int64_t>(k);
        }
      }
      return bad(std::string("one of ") + f.choices);
    }
    default:
      if (!v.is_number_integer()) bad("an integer");
      return v.get<int64_t>();
  }
}

// JSON has no infinities or NaN: they are written as the strings "inf", "-inf", "nan" (a pad
// value of -inf is how max pooling pads).
json float_value(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

double parse_float(const AttrField& f, const json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string t = v.get<std::string>();
    if (t == "inf") return std::numeric_limits<double>::infinity();
    if (t == "-inf") return -std::numeric_limits<double>::infinity();
    if (t == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  throw FormatError(where + ": attribute '" + f.name +
                    "' must be a number (or \"inf\", "
                    "\"-inf\", \"nan\"), got " +
                    clip(v.dump()));
}

}  // namespace

json attrs_to_json(const OpDef& op, const Attrs& a) {
  check_attrs(op, a);  // so the layout below fits
  json j = json::object();
  int fixed = 0;
  for (const AttrField& f : op.attrs->fields) {
    if (f.type != AttrType::kFloat && f.count != kRest) fixed += f.count;
  }
  int i = 0, fl = 0;
  for (const AttrField& f : op.attrs->fields) {
    if (f.type == AttrType::kFloat) {
      j[f.name] = float_value(a.f(fl++));
      continue;
    }
    const int n = f.count == kRest ? a.num_ints() - fixed : f.count;
    if (f.count == 1) {
      j[f.name] = int_value(f, a.i(i));
    } else {
      json arr = json::array();
      for (int k = 0; k < n; ++k) arr.push_back(int_value(f, a.i(i + k)));
      j[f.name] = std::move(arr);
    }
    i += n;
  }
  return j;
}

Attrs attrs_from_json(const OpDef& op, const json& j, const std::string& where_in) {
  const std::string where = where_in + " (" + op.name + ")";
  if (!op.attrs) throw FormatError(where + ": the op has no attribute schema");
  if (!j.is_object()) throw FormatError(where + ": attrs must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const AttrField& f : op.attrs->fields) known |= it.key() == f.name;
    if (!known) throw FormatError(where + ": unknown attribute '" + clip(it.key()) + "'");
  }
  Attrs a;
  try {
    for (const AttrField& f : op.attrs->fields) {
      if (!j.contains(f.name)) {
        throw FormatError(where + ": attribute '" + f.name + "' is missing");
      }
      const json& v = j.at(f.name);
      if (f.type == AttrType::kFloat) {
        a.add_float(parse_float(f, v, where));
      } else if (f.count == 1) {
        a.add_int(parse_int(f, v, where));
      } else {
        if (!v.is_array() || (f.count != kRest && v.size() != static_cast<size_t>(f.count))) {
          throw FormatError(
              where + ": attribute '" + f.name + "' must be a list of " +
              (f.count == kRest ? std::string("values") : std::to_string(f.count) + " values") +
              ", got " + clip(v.dump()));
        }
        if (v.size() > static_cast<size_t>(Attrs::kMaxInts)) {
          throw FormatError(where + ": attribute '" + f.name + "' has " + std::to_string(v.size()) +
                            " values, more than an op takes");
        }
        for (const json& e : v) a.add_int(parse_int(f, e, where));
      }
    }
    check_attrs(op, a);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    throw FormatError(where + ": " + e.what());
  }
  return a;
}

json graph_to_json(const Graph& g, const std::string& prefix,
                   std::vector<std::pair<std::string, Tensor>>& constants) {
  json values = json::array();
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& val = g.values[v];
    json e = {{"dtype", std::string(dtype_name(val.meta.dtype))}, {"shape", val.meta.shape.vec()}};
    switch (val.kind) {
      case ValueKind::kInput:
        e["kind"] = "input";
        break;
      case ValueKind::kConstant: {
        const std::string name = prefix + std::to_string(v);
        e["kind"] = "constant";
        e["tensor"] = name;
        constants.emplace_back(name, val.captured);
        break;
      }
      case ValueKind::kVariable:
        throw ValueError("graph_to_json: value %" + std::to_string(v) +
                         " is a variable; freeze the graph before saving it");
      case ValueKind::kNode:
        e["kind"] = "node";
        break;
    }
    values.push_back(std::move(e));
  }
  json nodes = json::array();
  for (const Node& n : g.nodes) {
    nodes.push_back({{"op", n.op->name},
                     {"inputs", n.inputs},
                     {"outputs", n.outputs},
                     {"attrs", attrs_to_json(*n.op, n.attrs)}});
  }
  return {{"version", kGraphFormatVersion},
          {"values", std::move(values)},
          {"nodes", std::move(nodes)},
          {"inputs", g.inputs},
          {"outputs", g.outputs}};
}

namespace {

const json& field(const json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) {
    throw FormatError(where + ": field '" + name + "' is missing");
  }
  return j.at(name);
}

std::vector<int32_t> id_list(const json& j, const char* name, const std::string& where,
                             size_t num_values) {
  const json& a = field(j, name, where);
  if (!a.is_array()) throw FormatError(where + ": field '" + name + "' must be a list of ids");
  std::vector<int32_t> ids;
  for (const json& e : a) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
        e.get<int64_t>() >= static_cast<int64_t>(num_values)) {
      throw FormatError(where + ": field '" + name + "' holds " + clip(e.dump()) +
                        ", not a value id below " + std::to_string(num_values));
    }
    ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
  }
  return ids;
}

Meta parse_meta(const json& e, const std::string& where) {
  const json& dt = field(e, "dtype", where);
  Meta m;
  const std::optional<DType> t =
      dt.is_string() ? dtype_from_name(dt.get<std::string>()) : std::nullopt;
  if (!t) throw FormatError(where + ": dtype " + clip(dt.dump()) + " is not a kiln dtype");
  m.dtype = *t;
  const json& sh = field(e, "shape", where);
  if (!sh.is_array() || sh.size() > static_cast<size_t>(Shape::kMaxRank)) {
    throw FormatError(where + ": shape must be a list of at most " +
                      std::to_string(Shape::kMaxRank) + " dims, got " + clip(sh.dump()));
  }
  std::vector<int64_t> dims;
  for (const json& d : sh) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      throw FormatError(where + ": shape " + clip(sh.dump()) + " holds a dim that is not >= 0");
    }
    dims.push_back(d.get<int64_t>());
  }
  m.shape = Shape(dims);
  return m;
}

}  // namespace

Graph graph_from_json(const json& j, const std::map<std::string, Tensor>& constants,
                      const std::string& where) {
  if (!j.is_object()) throw FormatError(where + ": the graph must be a JSON object");
  const json& version = field(j, "version", where);
  if (!version.is_number_integer() || version.get<int64_t>() < 1) {
    throw FormatError(where + ": graph version " + clip(version.dump()) + " is not valid");
  }
  if (version.get<int64_t>() > kGraphFormatVersion) {
    throw FormatError(where + ": graph format version " + std::to_string(version.get<int64_t>()) +
                      " is newer than this kiln reads (" + std::to_string(kGraphFormatVersion) +
                      "); upgrade kiln");
  }
  Graph g;
  const json& values = field(j, "values", where);
  if (!values.is_array()) throw FormatError(where + ": field 'values' must be a list");
  for (size_t v = 0; v < values.size(); ++v) {
    const std::string at = where + ": value %" + std::to_string(v);
    const json& e = values[v];
    Value val;
    val.meta = parse_meta(e, at);
    const json& kind = field(e, "kind", at);
    const std::string k = kind.is_string() ? kind.get<std::string>() : "";
    if (k == "input") {
      val.kind = ValueKind::kInput;
    } else if (k == "node") {
      val.kind = ValueKind::kNode;
    } else if (k == "constant") {
      val.kind = ValueKind::kConstant;
      const json& name = field(e, "tensor", at);
      auto it = name.is_string() ? constants.find(name.get<std::string>()) : constants.end();
      if (it == constants.end()) {
        throw FormatError(at + ": its tensor " + clip(name.dump()) + " is not in the file");
      }
      val.captured = it->second;
    } else {
      throw FormatError(at + ": kind " + clip(kind.dump()) + " is not input, constant or node");
    }
    g.values.push_back(std::move(val));
  }
  g.inputs = id_list(j, "inputs", where, g.values.size());
  g.outputs = id_list(j, "outputs", where, g.values.size());
  for (size_t k = 0; k < g.inputs.size(); ++k)
    g.values[g.inputs[k]].input_index = static_cast<int32_t>(k);
  const json& nodes = field(j, "nodes", where);
  if (!nodes.is_array()) throw FormatError(where + ": field 'nodes' must be a list");
  for (size_t i = 0; i < nodes.size(); ++i) {
    const json& e = nodes[i];
    std::string at = where + ": node " + std::to_string(i);
    const json& op = field(e, "op", at);
    const OpDef* def = op.is_string() ? ops::find_op(op.get<std::string>()) : nullptr;
    if (!def) throw FormatError(at + ": unknown op " + clip(op.dump()));
    Node n;
    n.op = def;
    n.inputs = id_list(e, "inputs", at, g.values.size());
    n.outputs = id_list(e, "outputs", at, g.values.size());
    n.attrs = attrs_from_json(*def, field(e, "attrs", at), at);
    for (int32_t v : n.outputs) {
      if (g.values[v].kind != ValueKind::kNode || g.values[v].producer != -1) {
        throw FormatError(at + " (" + def->name + ") writes %" + std::to_string(v) +
                          ", which is not a fresh node value");
      }
      g.values[v].producer = static_cast<int32_t>(i);
    }
    g.nodes.push_back(std::move(n));
  }
  validate(g, where);
  return g;
}

}  // namespace kiln::graph
