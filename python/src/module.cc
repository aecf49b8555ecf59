// The extension module kiln._kiln; the package python/kiln arranges it under Keras' and
// TensorFlow's names.
#include "common.h"
#include "kiln/compress.h"

namespace kiln::python {

// kiln's exceptions as Python classes that also subclass the matching built-in, so
// `except ValueError` catches a kiln.ShapeError; the message is the C++ one.
void bind_errors(py::module_& m) {
  auto make = [&](const char* name, py::handle bases) {
    std::string full = std::string("kiln.") + name;
    PyObject* cls = PyErr_NewException(full.c_str(), bases.ptr(), nullptr);
    if (!cls) throw py::error_already_set();
    m.attr(name) = py::handle(cls);
    return py::handle(cls);  // one reference kept for the process's life (the translator's)
  };
  static py::handle error = make("Error", PyExc_RuntimeError);
  static py::handle shape_error =
      make("ShapeError", py::make_tuple(error, py::handle(PyExc_ValueError)));
  static py::handle dtype_error =
      make("DTypeError", py::make_tuple(error, py::handle(PyExc_TypeError)));
  static py::handle value_error =
      make("ValueError", py::make_tuple(error, py::handle(PyExc_ValueError)));
  static py::handle format_error =
      make("FormatError", py::make_tuple(error, py::handle(PyExc_ValueError)));
  static py::handle state_error =
      make("StateError", py::make_tuple(error, py::handle(PyExc_RuntimeError)));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ShapeError& e) {
      PyErr_SetString(shape_error.ptr(), e.what());
    } catch (const DTypeError& e) {
      PyErr_SetString(dtype_error.ptr(), e.what());
    } catch (const ValueError& e) {
      PyErr_SetString(value_error.ptr(), e.what());
    } catch (const FormatError& e) {
      PyErr_SetString(format_error.ptr(), e.what());
    } catch (const StateError& e) {
      PyErr_SetString(state_error.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
}

}  // namespace kiln::python

PYBIND11_MODULE(_kiln, m) {
  using namespace kiln::python;
  m.doc() = "kiln's C++ core (import kiln, not this module)";
  kiln::register_compress_layers();  // model files may hold pruning / QAT wrappers
  bind_errors(m);
  bind_tensor(m);
  bind_ops(m);
  bind_layers(m);
  bind_training(m);
  bind_function(m);
  bind_cache(m);
  bind_model_files(m);
}
