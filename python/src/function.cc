// kiln.function's core: kiln::Function around a Python callable.
#include "kiln/function.h"
#include "common.h"

namespace kiln::python {
namespace {

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

}  // namespace kiln::python
