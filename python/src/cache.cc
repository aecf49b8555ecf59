// The cache report and the per-instance cache behind @kiln.cached_per_instance
// (kiln::cached_per_instance holding Python values), and InstanceToken.
#include "kiln/cache.h"
#include "common.h"
#include "kiln/cache_report.h"

namespace kiln::python {
namespace {

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
