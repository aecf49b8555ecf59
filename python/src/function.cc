// kiln.function's core (kiln::Function around a Python callable), the cache report, and the
// per-instance cache behind @kiln.cached_per_instance (kiln::cached_per_instance holding Python
// values).
#include "kiln/function.h"
#include "common.h"
#include "kiln/cache.h"
#include "kiln/cache_report.h"

namespace kiln::python {
namespace {

// A Python object referenced from C++ state that may be destroyed without the GIL held.
std::shared_ptr<py::object> gil_safe(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    delete p;
  });
}

std::vector<Tensor> tensor_args(py::handle args) {
  std::vector<Tensor> out;
  for (py::handle a : args) out.push_back(a.cast<TensorArg>().tensor);
  return out;
}

py::dict signature_dict(const Signature& s) {
  py::dict d;
  py::list args;
  for (const TensorSpec& spec : s.args) {
    py::list dims;
    for (int64_t v : spec.dims)
      dims.append(v == kUnknownDim ? py::none() : py::object(py::int_(v)));
    args.append(py::make_tuple(py::tuple(dims), spec.dtype));
  }
  d["args"] = args;
  d["training"] = s.training;
  d["text"] = s.to_string();
  return d;
}

// A Function whose callable is Python: `trace(args_tuple, training)` returns a list of tensors.
struct PyFunction {
  std::unique_ptr<Function> function;
};

// One Python value in a C++ per-instance cache: copies (shared_ptr) need no GIL; the last one
// takes the GIL to release the object.
using PyValue = std::shared_ptr<py::object>;

struct PyInstanceCache {
  explicit PyInstanceCache(const std::string& name) : cache(name) {}
  PyInstanceCache(const std::string& name, CacheLimits limits) : cache(name, limits) {}
  cached_per_instance<PyValue> cache;
};

py::dict cache_stats(const CacheStats& s) {
  py::dict d;
  d["name"] = s.name;
  d["hits"] = s.hits;
  d["misses"] = s.misses;
  d["version_recomputes"] = s.version_recomputes;
  d["evictions"] = s.evictions;
  d["invalidations"] = s.invalidations;
  d["expirations"] = s.expirations;
  d["entries"] = s.entries;
  d["bytes"] = s.bytes;
  d["max_entries"] = s.limits.max_entries;
  d["max_bytes"] = s.limits.max_bytes;
  return d;
}

}  // namespace

void bind_function(py::module_& m) {
  py::class_<PyFunction>(m, "_Function", "kiln::Function; use the kiln.function decorator.")
      .def(py::init([](py::object trace, const std::string& name, py::object input_signature,
                       int retrace_budget, const std::string& policy, size_t max_entries,
                       size_t max_bytes) {
             FunctionOptions o;
             o.name = name;
             o.retrace_budget = retrace_budget;
             if (policy == "warn") {
               o.policy = RetracePolicy::kWarn;
             } else if (policy == "relax") {
               o.policy = RetracePolicy::kRelax;
             } else if (policy == "throw") {
               o.policy = RetracePolicy::kThrow;
             } else {
               throw py::value_error("retrace policy must be 'warn', 'relax' or 'throw', got '" +
                                     policy + "'");
             }
             o.max_entries = max_entries;
             o.max_bytes = max_bytes;
             if (!input_signature.is_none()) {
               std::vector<TensorSpec> specs;
               for (py::handle spec : input_signature) {
                 auto [dims, dtype] = spec.cast<std::pair<py::object, py::object>>();
                 TensorSpec s;
                 for (py::handle d : dims)
                   s.dims.push_back(d.is_none() ? kUnknownDim : d.cast<int64_t>());
                 s.dtype = to_dtype(dtype);
                 specs.push_back(std::move(s));
               }
               o.input_signature = std::move(specs);
             }
             auto fn = gil_safe(std::move(trace));
             Function::Callable callable = [fn](const std::vector<Tensor>& args, bool training) {
               py::gil_scoped_acquire gil;
               py::object r = (*fn)(py::cast(args), training);
               return r.cast<std::vector<Tensor>>();
             };
             return PyFunction{std::make_unique<Function>(std::move(callable), std::move(o))};
           }),
           py::arg("trace"), py::arg("name"), py::arg("input_signature"), py::arg("retrace_budget"),
           py::arg("policy"), py::arg("max_entries"), py::arg("max_bytes"))
      .def(
          "__call__",
          [](PyFunction& f, py::handle args, bool training) {
            std::vector<Tensor> in = tensor_args(args);
            py::gil_scoped_release nogil;
            return (*f.function)(in, training);
          },
          py::arg("args"), py::arg("training") = false)
      .def("cache_info",
           [](const PyFunction& f) {
             FunctionCacheInfo i = f.function->cache_info();
             py::dict d;
             d["traces"] = i.traces;
             d["hits"] = i.hits;
             d["misses"] = i.misses;
             d["evictions"] = i.evictions;
             py::list sigs;
             for (const Signature& s : i.signatures) sigs.append(signature_dict(s));
             d["signatures"] = sigs;
             d["last_retrace_reason"] = i.last_retrace_reason;
             d["warnings"] = i.warnings;
             d["variables"] = i.variables;
             d["arena_bytes"] = i.arena_bytes;
             d["plan_steps"] = i.plan_steps;
             d["fused_nodes"] = i.fused_nodes;
             return d;
           })
      .def(
          "graph_text",
          [](PyFunction& f, py::handle args, bool training, bool optimized) {
            std::vector<Tensor> in = tensor_args(args);
            py::gil_scoped_release nogil;
            return f.function->graph_text(in, training, optimized);
          },
          py::arg("args"), py::arg("training") = false, py::arg("optimized") = true)
      .def(
          "graph_dot",
          [](PyFunction& f, py::handle args, bool training, bool optimized) {
            std::vector<Tensor> in = tensor_args(args);
            py::gil_scoped_release nogil;
            return f.function->graph_dot(in, training, optimized);
          },
          py::arg("args"), py::arg("training") = false, py::arg("optimized") = true)
      .def("clear_cache", [](PyFunction& f) { f.function->clear_cache(); });
}

void bind_cache(py::module_& m) {
  m.def("_cache_report", [] {
    CacheReport r;
    {
      py::gil_scoped_release nogil;
      r = cache_report();
    }
    return py::make_tuple(r.to_json(), r.to_text(), r.cache_bytes());
  });
  m.def("clear_caches", [] {
    py::gil_scoped_release nogil;
    clear_caches();
  });
  m.def(
      "set_instance_cache_limits",
      [](uint64_t e, uint64_t b) { set_instance_cache_limits({.max_entries = e, .max_bytes = b}); },
      py::arg("max_entries"), py::arg("max_bytes") = 0);

  py::class_<InstanceToken>(m, "InstanceToken", R"doc(
An object's identity for per-instance caches (kiln::InstanceToken): a 64-bit id that is never
reused; when the token dies, every cache drops its entries.)doc")
      .def(py::init<>())
      .def_property_readonly("id", &InstanceToken::id)
      .def_property_readonly("used", &InstanceToken::used)
      .def("reset", &InstanceToken::reset);
  m.def(
      "_layer_cache_token", [](const Layer& l) -> const InstanceToken& { return l.cache_token(); },
      py::return_value_policy::reference_internal);

  py::class_<PyInstanceCache>(m, "_InstanceCache", "kiln::cached_per_instance of Python values.")
      .def(py::init([](const std::string& name, uint64_t max_entries, uint64_t max_bytes) {
             if (max_entries == 0 && max_bytes == 0) return std::make_unique<PyInstanceCache>(name);
             return std::make_unique<PyInstanceCache>(
                 name, CacheLimits{.max_entries = max_entries, .max_bytes = max_bytes});
           }),
           py::arg("name"), py::arg("max_entries") = 0, py::arg("max_bytes") = 0)
      .def(
          "get",
          [](PyInstanceCache& c, const InstanceToken& token, py::function compute,
             uint64_t version) {
            PyValue v;
            {
              // Waiting for another thread's computation must not hold the GIL it needs.
              py::gil_scoped_release nogil;
              v = c.cache.get(
                  token,
                  [&]() -> PyValue {
                    py::gil_scoped_acquire gil;
                    return gil_safe(compute());
                  },
                  version);
            }
            return *v;
          },
          py::arg("token"), py::arg("compute"), py::arg("version") = 0)
      .def(
          "peek",
          [](PyInstanceCache& c, const InstanceToken& token, uint64_t version) -> py::object {
            PyValue v;
            bool hit;
            {
              py::gil_scoped_release nogil;
              hit = c.cache.peek(token, version, v);
            }
            return hit ? *v : py::object(py::none());
          },
          py::arg("token"), py::arg("version") = 0)
      .def("invalidate",
           [](PyInstanceCache& c, const InstanceToken& t) {
             py::gil_scoped_release nogil;
             c.cache.invalidate(t);
           })
      .def("clear",
           [](PyInstanceCache& c) {
             py::gil_scoped_release nogil;
             c.cache.clear();
           })
      .def("stats", [](const PyInstanceCache& c) { return cache_stats(c.cache.stats()); })
      .def(
          "set_limits",
          [](PyInstanceCache& c, uint64_t e, uint64_t b) {
            py::gil_scoped_release nogil;
            c.cache.set_limits({.max_entries = e, .max_bytes = b});
          },
          py::arg("max_entries"), py::arg("max_bytes") = 0);
}

}  // namespace kiln::python
