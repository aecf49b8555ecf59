#include "graph/signature.h"

namespace kiln {

std::string Signature::to_string() const {
  std::string s = "(";
  for (size_t k = 0; k < args.size(); ++k) {
    s += std::string(dtype_name(args[k].dtype)) + " " + graph::dims_str(args[k].dims) + ", ";
  }
  s += std::string("training=") + (training ? "true" : "false");
  if (dtype_policy != DTypePolicy::kFloat32)
    s += ", dtype_policy=" + std::string(dtype_policy_name(dtype_policy));
  return s + ")";
}

bool Signature::accepts(const Signature& c) const {
  if (c.training != training || c.dtype_policy != dtype_policy || c.args.size() != args.size()) {
    return false;
  }
  for (size_t k = 0; k < args.size(); ++k) {
    const TensorSpec &a = args[k], &b = c.args[k];
    if (a.dtype != b.dtype || a.dims.size() != b.dims.size()) return false;
    for (size_t d = 0; d < a.dims.size(); ++d) {
      if (a.dims[d] != kUnknownDim && a.dims[d] != b.dims[d]) return false;
    }
  }
  return true;
}

namespace graph {

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t d = 0; d < dims.size(); ++d) {
    s += (d ? ", " : "") + (dims[d] == kUnknownDim ? std::string("None") : std::to_string(dims[d]));
  }
  return s + "]";
}

Signature signature_of(const std::vector<Tensor>& args, bool training) {
  Signature s;
  s.training = training;
  s.dtype_policy = dtype_policy_kind();
  s.args.reserve(args.size());
  for (const Tensor& t : args) {
    TensorSpec spec;
    spec.dims.assign(t.shape().begin(), t.shape().end());
    spec.dtype = t.dtype();
    s.args.push_back(std::move(spec));
  }
  return s;
}

int signature_distance(const Signature& a, const Signature& b) {
  if (a.args.size() != b.args.size()) return 1000;
  int d = (a.training != b.training) + (a.dtype_policy != b.dtype_policy);
  for (size_t k = 0; k < a.args.size(); ++k) {
    const TensorSpec &x = a.args[k], &y = b.args[k];
    d += x.dtype != y.dtype;
    if (x.dims.size() != y.dims.size()) {
      d += 10;
      continue;
    }
    for (size_t i = 0; i < x.dims.size(); ++i) {
      d += x.dims[i] != y.dims[i] && x.dims[i] != kUnknownDim;
    }
  }
  return d;
}

std::vector<std::string> signature_diff(const Signature& from, const Signature& to) {
  std::vector<std::string> out;
  if (from.args.size() != to.args.size()) {
    out.push_back(std::to_string(from.args.size()) + " arguments -> " +
                  std::to_string(to.args.size()));
  } else {
    for (size_t k = 0; k < from.args.size(); ++k) {
      const TensorSpec &a = from.args[k], &b = to.args[k];
      const std::string arg = "arg " + std::to_string(k) + ": ";
      if (a.dtype != b.dtype) {
        out.push_back(arg + "dtype " + std::string(dtype_name(a.dtype)) + " -> " +
                      std::string(dtype_name(b.dtype)));
      }
      bool same = a.dims.size() == b.dims.size();
      for (size_t d = 0; same && d < a.dims.size(); ++d) {
        same = a.dims[d] == kUnknownDim || a.dims[d] == b.dims[d];
      }
      if (!same) {
        out.push_back(arg + "shape " + dims_str(a.dims) + " -> " + dims_str(b.dims));
      }
    }
  }
  if (from.training != to.training) {
    out.push_back(std::string("training: ") + (from.training ? "true" : "false") + " -> " +
                  (to.training ? "true" : "false"));
  }
  if (from.dtype_policy != to.dtype_policy) {
    out.push_back(std::string("dtype_policy: ") + dtype_policy_name(from.dtype_policy) + " -> " +
                  dtype_policy_name(to.dtype_policy));
  }
  return out;
}

Signature relax(const Signature& from, const Signature& to) {
  Signature r = to;
  if (from.args.size() != to.args.size()) return r;
  for (size_t k = 0; k < to.args.size(); ++k) {
    if (from.args[k].dims.size() != to.args[k].dims.size()) continue;
    for (size_t d = 0; d < to.args[k].dims.size(); ++d) {
      if (from.args[k].dims[d] != to.args[k].dims[d]) r.args[k].dims[d] = kUnknownDim;
    }
  }
  return r;
}

}  // namespace graph
}  // namespace kiln
