// Attribute schemas: printing Attrs by name and checking them against an op's schema.
#include <charconv>
#include <string>
#include <string_view>

#include "kiln/error.h"
#include "ops/op_def.h"

namespace kiln {

const AttrSchema kNoAttrs{};

namespace {

std::string positional(const Attrs& a) {
  std::string s;
  for (int k = 0; k < a.num_ints(); ++k) s += (k ? ", " : "") + std::to_string(a.i(k));
  for (double v : a.floats()) {
    char buf[32];
    // Shortest text that reads back as the same double (0.1 prints as 0.1).
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    s += (s.empty() ? "" : ", ") + std::string(buf, r.ptr);
  }
  return s;
}

// The k-th '|'-separated name in `choices`, or "" when there is none.
std::string_view choice(const char* choices, int64_t k) {
  std::string_view c = choices ? choices : "";
  for (int64_t i = 0; k >= 0; ++i) {
    const size_t bar = c.find('|');
    if (i == k) return c.substr(0, bar);
    if (bar == std::string_view::npos) break;
    c.remove_prefix(bar + 1);
  }
  return {};
}

// "strides: 2 ints, padding: valid|same, ..." for error messages.
std::string describe(const AttrSchema& s) {
  static constexpr const char* kNames[] = {"int", "bool", "dtype", "enum", "shape", "float"};
  std::string d;
  for (const AttrField& f : s.fields) {
    if (!d.empty()) d += ", ";
    d += std::string(f.name) + ": ";
    if (f.type == AttrType::kEnum) {
      d += f.choices;
    } else if (f.count == kRest) {
      d += std::string(kNames[static_cast<int>(f.type)]) + " list";
      if (f.group > 1) d += " of " + std::to_string(f.group) + "s";
    } else if (f.count != 1) {
      d += std::to_string(f.count) + " " + kNames[static_cast<int>(f.type)] + "s";
    } else {
      d += kNames[static_cast<int>(f.type)];
    }
  }
  return d.empty() ? "no attributes" : d;
}

// Whether the schema's fields take exactly a's integers and doubles. `rest` receives the
// length of the kRest field (0 if none), `why` what does not fit.
bool layout(const AttrSchema& s, const Attrs& a, int& rest, std::string& why) {
  int fixed = 0, floats = 0;
  const AttrField* rest_field = nullptr;
  for (const AttrField& f : s.fields) {
    if (f.type == AttrType::kFloat) {
      ++floats;
    } else if (f.count == kRest) {
      rest_field = &f;
    } else {
      fixed += f.count;
    }
  }
  rest = 0;
  if (a.num_floats() != floats) {
    why = std::to_string(a.num_floats()) + " floats given, " + std::to_string(floats) + " expected";
    return false;
  }
  if (rest_field) {
    rest = a.num_ints() - fixed;
    if (rest < 0 || rest % rest_field->group != 0) {
      why = std::to_string(a.num_ints()) + " integers given, expected " + std::to_string(fixed) +
            " plus " + std::string(rest_field->name) + " (a multiple of " +
            std::to_string(rest_field->group) + ")";
      return false;
    }
  } else if (a.num_ints() != fixed) {
    why = std::to_string(a.num_ints()) + " integers given, " + std::to_string(fixed) + " expected";
    return false;
  }
  return true;
}

// Why value v is not valid for a field of type t, or "" when it is.
std::string bad_value(const AttrField& f, int64_t v) {
  switch (f.type) {
    case AttrType::kBool:
      if (v != 0 && v != 1) return "is " + std::to_string(v) + ", expected 0 or 1";
      break;
    case AttrType::kDType:
      if (v < 0 || v > static_cast<int64_t>(DType::kBool)) {
        return "is " + std::to_string(v) + ", not a dtype code";
      }
      break;
    case AttrType::kEnum:
      if (choice(f.choices, v).empty()) {
        return "is " + std::to_string(v) + ", expected one of " + f.choices + " (0, 1, ...)";
      }
      break;
    case AttrType::kShape:
      if (v < 0) return "holds the negative dim " + std::to_string(v);
      break;
    default:
      break;
  }
  return "";
}

std::string value_str(const AttrField& f, int64_t v) {
  switch (f.type) {
    case AttrType::kBool:
      return v ? "true" : "false";
    case AttrType::kDType:
      return std::string(dtype_name(static_cast<DType>(v)));
    case AttrType::kEnum:
      return std::string(choice(f.choices, v));
    default:
      return std::to_string(v);
  }
}

// Calls fn(field, values) for each field of a fitting schema, with values its integers (or
// its one double, as fvalue, for kFloat).
template <typename Fn>
void for_each_field(const AttrSchema& s, const Attrs& a, int rest, Fn&& fn) {
  int i = 0, fl = 0;
  for (const AttrField& f : s.fields) {
    if (f.type == AttrType::kFloat) {
      fn(f, std::span<const int64_t>(), a.f(fl++));
      continue;
    }
    const int n = f.count == kRest ? rest : f.count;
    fn(f, a.ints().subspan(i, n), 0.0);
    i += n;
  }
}

}  // namespace

void check_attrs(const OpDef& op, const Attrs& a) {
  if (!op.attrs) throw StateError(std::string(op.name) + ": the op has no attribute schema");
  const AttrSchema& s = *op.attrs;
  int rest = 0;
  std::string why;
  if (layout(s, a, rest, why)) {
    for_each_field(s, a, rest, [&](const AttrField& f, std::span<const int64_t> v, double) {
      for (size_t k = 0; k < v.size() && why.empty(); ++k) {
        why = bad_value(f, v[k]);
        if (!why.empty()) why = std::string(f.name) + " " + why;
      }
    });
  }
  if (!why.empty()) {
    throw ValueError(std::string(op.name) + ": attrs {" + positional(a) +
                     "} do not fit its schema (" + describe(s) + "): " + why);
  }
}

std::string format_attrs(const OpDef& op, const Attrs& a) {
  if (a.num_ints() == 0 && a.num_floats() == 0 && op.attrs && op.attrs->fields.empty()) return "";
  int rest = 0;
  std::string why;
  if (!op.attrs || !layout(*op.attrs, a, rest, why)) return positional(a);
  std::string out;
  bool ok = true;
  for_each_field(*op.attrs, a, rest,
                 [&](const AttrField& f, std::span<const int64_t> v, double fv) {
                   if (!out.empty()) out += ", ";
                   out += std::string(f.name) + "=";
                   if (f.type == AttrType::kFloat) {
                     char buf[32];
                     auto r = std::to_chars(buf, buf + sizeof buf, fv);
                     out.append(buf, r.ptr);
                     return;
                   }
                   const bool list = f.count != 1;
                   if (list) out += "[";
                   for (size_t k = 0; k < v.size(); ++k) {
                     if (!bad_value(f, v[k]).empty()) ok = false;
                     out += (k ? ", " : "") + value_str(f, v[k]);
                   }
                   if (list) out += "]";
                 });
  return ok ? out : positional(a);
}

}  // namespace kiln
