// Shared pieces of the Python bindings: dtype mapping, conversion of Python values to tensors
// (TensorArg), and the keep-alive that lets C++ own layers written in Python.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "kiln/nn.h"
#include "kiln/ops.h"
#include "kiln/tensor.h"

namespace kiln::python {

namespace py = pybind11;

// NumPy dtype of a kiln dtype, and back (TypeError naming a dtype kiln lacks).
py::dtype numpy_dtype(DType t);
DType from_numpy_dtype(const py::dtype& d);
// A dtype given as kiln.DType, a NumPy dtype or type, or a name ("float32").
DType to_dtype(py::handle h);

// A tensor sharing `t`'s memory as a NumPy array; the array keeps the tensor alive.
py::array tensor_to_numpy(const Tensor& t);
// A tensor from anything NumPy can read: an array viewing kiln memory (made by
// tensor_to_numpy) is shared, anything else is copied. Python floats become float32 and
// Python ints int32 (TensorFlow's defaults) unless `dtype` says otherwise.
Tensor to_tensor(py::handle h, std::optional<DType> dtype = std::nullopt);

// An argument of an op: a Tensor, a Variable (its value), a NumPy array or a Python number or
// list. A bare Python number keeps its value so a binary op can give it the other operand's
// dtype (x + 1.5 stays float64 for a float64 x), as TensorFlow does.
struct TensorArg {
  Tensor tensor;
  bool python_scalar = false;
  double scalar = 0;
};
// Both operands of a binary op as tensors; a Python number takes the other side's dtype.
std::pair<Tensor, Tensor> binary_operands(const TensorArg& a, const TensorArg& b);

// A shared_ptr owning `obj`'s C++ layer that also keeps the Python object alive for as long as
// C++ holds it: a layer subclassed in Python keeps its Python half (its call, its attributes)
// when only a C++ model refers to it (pybind11 issues #1333, #2844).
std::shared_ptr<Layer> shared_layer(py::handle obj);
template <class T>
std::shared_ptr<T> shared_keep(py::handle obj) {
  auto holder = obj.cast<std::shared_ptr<T>>();
  auto* keep = new py::object(py::reinterpret_borrow<py::object>(obj));
  T* raw = holder.get();
  return std::shared_ptr<T>(raw, [holder = std::move(holder), keep](T*) mutable {
    if (!Py_IsInitialized()) return;  // at exit: leave both halves to the process's end
    py::gil_scoped_acquire gil;
    delete keep;  // the Python half may go now; the C++ half goes with `holder`
    holder.reset();
  });
}

// A Python object referenced from C++ state that may be released without the GIL held: copies
// need no GIL, the last one takes it to release the object (nothing at interpreter exit).
inline std::shared_ptr<py::object> gil_safe(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    delete p;
  });
}

// A Python tuple of a shape's dims.
py::tuple shape_tuple(const Shape& s);
// A Shape from a tuple, list, TensorShape-like sequence or int; None dims are refused.
Shape to_shape(py::handle h);

// "valid"/"same" in any case (ValueError otherwise); an int or 2 ints (or TensorFlow's
// [1, h, w, 1]) as a pair.
Padding padding_from_string(const std::string& p);
std::array<int64_t, 2> int_pair(py::handle h, const char* what);
// An initializer given by Keras name ("glorot_uniform", "uniform", ...) or as kiln.Initializer.
Initializer to_initializer(py::handle h);
// An activation given by name, None ("linear") or a function whose __name__ is one.
std::string activation_name(py::handle h);

// Adds each part of the module.
void bind_errors(py::module_& m);
void bind_tensor(py::module_& m);
void bind_ops(py::module_& m);
void bind_layers(py::module_& m);
void bind_training(py::module_& m);
void bind_function(py::module_& m);
void bind_cache(py::module_& m);
void bind_model_files(py::module_& m);  // model_files.cc

}  // namespace kiln::python

namespace pybind11::detail {

template <>
struct type_caster<kiln::python::TensorArg> {
  PYBIND11_TYPE_CASTER(kiln::python::TensorArg, const_name("TensorLike"));
  bool load(handle src, bool convert);
};

}  // namespace pybind11::detail
