// kiln.Tensor and kiln.DType: NumPy in and out, creation functions, operators, indexing.
#include <cstring>
#include <vector>

#include "common.h"
#include "kiln/external_tensor.h"
#include "kiln/ops.h"

namespace kiln::python {
namespace {

constexpr const char* kTensorCapsule = "kiln.Tensor";

// NumPy, imported once and kept for the process's life (never released at exit).
py::handle numpy() {
  static py::handle np = py::module_::import("numpy").release();
  return np;
}

// What a NumPy array that views kiln memory refers to: the tensor, kept alive by the capsule.
const Tensor* capsule_tensor(py::handle base) {
  if (!base || !PyCapsule_CheckExact(base.ptr())) return nullptr;
  if (std::strcmp(PyCapsule_GetName(base.ptr()), kTensorCapsule) != 0) return nullptr;
  return static_cast<const Tensor*>(PyCapsule_GetPointer(base.ptr(), kTensorCapsule));
}

// `arr` as a view of the kiln tensor whose memory it shows, or undefined when it shows other
// memory, is not contiguous, or has another dtype (those are copied).
Tensor shared_view(const py::array& arr) {
  // Views of views: NumPy's base chain ends at the capsule of the tensor owning the memory.
  py::handle base = arr.base();
  while (base && py::isinstance<py::array>(base))
    base = py::reinterpret_borrow<py::array>(base).base();
  const Tensor* owner = capsule_tensor(base);
  if (!owner || !(arr.flags() & py::array::c_style)) return {};
  DType dt;
  try {
    dt = from_numpy_dtype(arr.dtype());
  } catch (const py::error_already_set&) {
    return {};
  }
  if (dt != owner->dtype()) return {};
  const auto* start = static_cast<const char*>(owner->raw_data());
  const auto* data = static_cast<const char*>(arr.data());
  const ptrdiff_t offset = data - start;
  const size_t item = size_of(dt);
  if (offset < 0 || static_cast<size_t>(offset) % item != 0 ||
      offset + static_cast<size_t>(arr.nbytes()) > owner->nbytes())
    return {};
  std::vector<int64_t> dims(arr.shape(), arr.shape() + arr.ndim());
  const int64_t begin = offset / static_cast<ptrdiff_t>(item);
  Tensor flat = owner->reshape(Shape{owner->numel()});
  return flat.rows(begin, begin + static_cast<int64_t>(arr.size())).reshape(Shape(dims));
}

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// Drops the reference a tensor over NumPy memory holds on its array. Runs on whichever thread
// frees the last tensor: it takes the GIL (re-entrant when held), keeps any pending Python
// error, and at interpreter exit does nothing (the array goes with the process).
void release_array(void* array) noexcept {
  if (!Py_IsInitialized() || interpreter_finalizing()) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  Py_DECREF(static_cast<PyObject*>(array));
  PyErr_Restore(type, value, trace);
  PyGILState_Release(gil);
}

// `arr`'s own memory as a kiln tensor (no copy; the tensor holds a reference to the array), or
// undefined when it cannot be shared: not C-contiguous, read-only, not native byte order, or
// not aligned to its element size (those are copied).
Tensor adopt_array(const py::array& arr) {
  constexpr int kNeeded = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                          py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  if ((arr.flags() & kNeeded) != kNeeded) return {};
  if (!arr.dtype().attr("isnative").cast<bool>()) return {};
  DType dt;
  try {
    dt = from_numpy_dtype(arr.dtype());
  } catch (const py::error_already_set&) {
    return {};
  }
  if (reinterpret_cast<uintptr_t>(arr.data()) % size_of(dt) != 0) return {};
  std::vector<int64_t> dims(arr.shape(), arr.shape() + arr.ndim());
  void* data = arr.size() ? const_cast<void*>(arr.data()) : nullptr;
  PyObject* owner = arr.inc_ref().ptr();
  try {
    return from_external(data, Shape(dims), dt, &release_array, owner);
  } catch (...) {
    Py_DECREF(owner);  // refused: the tensor never took it
    throw;
  }
}

// A new kiln tensor holding `arr`'s values converted to `dt` (NumPy's conversion rules).
Tensor copy_array(const py::array& arr, DType dt) {
  // asarray(order="C"), not ascontiguousarray: the latter turns rank 0 into rank 1.
  py::array c = numpy().attr("asarray")(arr, numpy_dtype(dt), "C");
  std::vector<int64_t> dims(c.shape(), c.shape() + c.ndim());
  Tensor t = empty(Shape(dims), dt);
  if (t.nbytes()) std::memcpy(t.raw_data(), c.data(), t.nbytes());
  return t;
}

}  // namespace

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::kFloat32:
      return py::dtype::of<float>();
    case DType::kFloat64:
      return py::dtype::of<double>();
    case DType::kInt32:
      return py::dtype::of<int32_t>();
    case DType::kInt64:
      return py::dtype::of<int64_t>();
    case DType::kInt8:
      return py::dtype::of<int8_t>();
    case DType::kUInt8:
      return py::dtype::of<uint8_t>();
    case DType::kBool:
      return py::dtype::of<bool>();
  }
  throw ValueError("numpy_dtype: unknown dtype");
}

DType from_numpy_dtype(const py::dtype& d) {
  const char kind = d.kind();
  const auto size = d.itemsize();
  if (kind == 'f' && size == 4) return float32;
  if (kind == 'f' && size == 8) return float64;
  if (kind == 'i' && size == 4) return int32;
  if (kind == 'i' && size == 8) return int64;
  if (kind == 'i' && size == 1) return int8;
  if (kind == 'u' && size == 1) return uint8;
  if (kind == 'b') return boolean;
  throw py::type_error("kiln has no dtype for NumPy's " + std::string(py::str(py::handle(d))) +
                       " (kiln: float32, float64, int32, int64, int8, uint8, bool)");
}

DType to_dtype(py::handle h) {
  if (py::isinstance<DType>(h)) return h.cast<DType>();
  if (py::isinstance<py::str>(h)) {
    const std::string name = h.cast<std::string>();
    if (std::optional<DType> t = dtype_from_name(name)) return *t;
    throw py::type_error("unknown dtype '" + name +
                         "' (kiln: float32, float64, int32, int64, int8, uint8, bool)");
  }
  return from_numpy_dtype(py::dtype::from_args(py::reinterpret_borrow<py::object>(h)));
}

py::array tensor_to_numpy(const Tensor& t) {
  auto* keep = new Tensor(t);
  py::capsule base(keep, kTensorCapsule, [](PyObject* cap) {
    delete static_cast<Tensor*>(PyCapsule_GetPointer(cap, kTensorCapsule));
  });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = static_cast<py::ssize_t>(size_of(t.dtype()));
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return py::array(numpy_dtype(t.dtype()), shape, strides, keep->raw_data(), base);
}

Tensor to_tensor(py::handle h, std::optional<DType> dtype) {
  if (py::isinstance<Tensor>(h)) {
    const Tensor& t = h.cast<const Tensor&>();
    return dtype && *dtype != t.dtype() ? cast(t, *dtype) : t;
  }
  if (py::isinstance<Variable>(h)) return to_tensor(py::cast(h.cast<Variable>().value()), dtype);
  const bool from_numpy =
      py::isinstance<py::array>(h) || py::isinstance(h, numpy().attr("generic"));
  py::array arr = numpy().attr("asarray")(h);
  if (from_numpy && !dtype) {
    if (Tensor shared = shared_view(arr); shared.defined()) return shared;
  }
  DType dt;
  if (dtype) {
    dt = *dtype;
    if (from_numpy && arr.dtype().is(numpy_dtype(dt))) {
      if (Tensor shared = shared_view(arr); shared.defined()) return shared;
    }
  } else {
    dt = from_numpy_dtype(arr.dtype());
    if (!from_numpy && dt == float64) dt = float32;  // TensorFlow's defaults for Python values
    if (!from_numpy && dt == int64) dt = int32;
  }
  return copy_array(arr, dt);
}

std::pair<Tensor, Tensor> binary_operands(const TensorArg& a, const TensorArg& b) {
  if (a.python_scalar && !b.python_scalar) return {scalar_like(a.scalar, b.tensor), b.tensor};
  if (b.python_scalar && !a.python_scalar) return {a.tensor, scalar_like(b.scalar, a.tensor)};
  return {a.tensor, b.tensor};
}

py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.rank());
  for (int i = 0; i < s.rank(); ++i) t[i] = py::int_(s[i]);
  return t;
}

Shape to_shape(py::handle h) {
  if (py::isinstance<py::int_>(h)) return Shape{h.cast<int64_t>()};
  std::vector<int64_t> dims;
  for (py::handle d : h) {
    if (d.is_none())
      throw py::value_error("shape " + std::string(py::repr(h)) +
                            ": a dim is None (unknown dims need a TensorSpec)");
    dims.push_back(d.cast<int64_t>());
  }
  return Shape(dims);
}

}  // namespace kiln::python

namespace pybind11::detail {

bool type_caster<kiln::python::TensorArg>::load(handle src, bool convert) {
  using kiln::python::to_tensor;
  if (isinstance<kiln::Tensor>(src)) {
    value.tensor = src.cast<const kiln::Tensor&>();
    return true;
  }
  if (isinstance<kiln::Variable>(src)) {
    value.tensor = src.cast<const kiln::Variable&>().value();
    return true;
  }
  if (!convert || src.is_none()) return false;
  if (PyFloat_Check(src.ptr()) || (PyLong_Check(src.ptr()) && !PyBool_Check(src.ptr()))) {
    value.python_scalar = true;
    value.scalar = src.cast<double>();
    value.tensor =
        kiln::scalar(value.scalar, PyFloat_Check(src.ptr()) ? kiln::float32 : kiln::int32);
    return true;
  }
  try {
    value.tensor = to_tensor(src);
  } catch (const error_already_set&) {
    return false;  // not array-like: overload resolution reports the TypeError
  }
  return true;
}

}  // namespace pybind11::detail

namespace kiln::python {
namespace {

// x[i, a:b:s, ...]: ints and slices with step >= 1, one per leading dim; ints drop their dim.
Tensor index_tensor(const Tensor& x, py::handle key) {
  py::tuple keys =
      py::isinstance<py::tuple>(key) ? py::reinterpret_borrow<py::tuple>(key) : py::make_tuple(key);
  if (static_cast<int>(keys.size()) > x.rank()) {
    throw py::index_error("too many indices for a tensor of rank " + std::to_string(x.rank()));
  }
  std::vector<int64_t> begins, ends, steps, out_dims;
  std::vector<bool> dropped(x.rank(), false);
  for (int i = 0; i < static_cast<int>(keys.size()); ++i) {
    const int64_t n = x.dim(i);
    py::handle k = keys[i];
    if (py::isinstance<py::slice>(k)) {
      py::ssize_t start, stop, step, len;
      if (!py::reinterpret_borrow<py::slice>(k).compute(n, &start, &stop, &step, &len)) {
        throw py::error_already_set();
      }
      if (step < 1)
        throw py::value_error("tensor slicing: step must be >= 1, got " + std::to_string(step));
      begins.push_back(start);
      ends.push_back(len == 0 ? start : stop);
      steps.push_back(step);
    } else if (py::isinstance<py::int_>(k)) {
      int64_t j = k.cast<int64_t>();
      if (j < -n || j >= n) {
        throw py::index_error("index " + std::to_string(j) + " is out of range for dim " +
                              std::to_string(i) + " of size " + std::to_string(n));
      }
      if (j < 0) j += n;
      begins.push_back(j);
      ends.push_back(j + 1);
      steps.push_back(1);
      dropped[i] = true;
    } else {
      throw py::type_error("tensor indices must be ints or slices, got " +
                           std::string(py::str(k.get_type().attr("__name__"))));
    }
  }
  Tensor r = slice(x, begins, ends, steps);
  for (int i = 0; i < r.rank(); ++i) {
    if (!dropped[i]) out_dims.push_back(r.dim(i));
  }
  return r.rank() == static_cast<int>(out_dims.size()) ? r : reshape(r, Shape(out_dims));
}

using Binary = Tensor (*)(const Tensor&, const Tensor&);

template <Binary F>
Tensor apply(const TensorArg& a, const TensorArg& b) {
  auto [x, y] = binary_operands(a, b);
  py::gil_scoped_release nogil;
  return F(x, y);
}

template <Binary F>
Tensor apply_reversed(const TensorArg& a, const TensorArg& b) {
  return apply<F>(b, a);
}

Tensor matmul2(const Tensor& a, const Tensor& b) { return matmul(a, b); }

}  // namespace

void bind_tensor(py::module_& m) {
  py::enum_<DType> dtype(m, "DType", "kiln's element types (kiln.float32, kiln.int64, ...).");
  dtype.value("float32", DType::kFloat32)
      .value("float64", DType::kFloat64)
      .value("int32", DType::kInt32)
      .value("int64", DType::kInt64)
      .value("int8", DType::kInt8)
      .value("uint8", DType::kUInt8)
      .value("bool", DType::kBool)
      .def_property_readonly("name", [](DType t) { return std::string(dtype_name(t)); })
      .def_property_readonly("size", [](DType t) { return size_of(t); })
      .def_property_readonly("is_floating", [](DType t) { return is_floating(t); })
      .def_property_readonly("as_numpy_dtype", [](DType t) { return numpy_dtype(t); });
  // Replaces (not overloads) the enum's own repr and str.
  dtype.attr("__repr__") = py::cpp_function(
      [](DType t) { return "kiln." + std::string(dtype_name(t)); }, py::is_method(dtype));
  dtype.attr("__str__") =
      py::cpp_function([](DType t) { return std::string(dtype_name(t)); }, py::is_method(dtype));
  for (DType t : {float32, float64, int32, int64, int8, uint8, boolean}) {
    m.attr(std::string(dtype_name(t)).c_str()) = t;
  }
  m.def(
      "as_dtype", [](py::handle h) { return to_dtype(h); }, py::arg("dtype"),
      "A kiln.DType from a kiln dtype, a NumPy dtype or type, or a name.");

  py::class_<Tensor> tensor(m, "Tensor", py::buffer_protocol(), R"doc(
A handle to contiguous row-major data (kiln::Tensor). Copying the handle never copies data.
NumPy sees a tensor's memory without a copy (np.asarray(t), t.numpy(); the array keeps the
tensor alive), and kiln.from_numpy(a) shares an array's memory (see its docstring).
kiln.Tensor(a), kiln.constant(a) and kiln.convert_to_tensor(a) copy NumPy-owned memory (a
snapshot, as tf.constant), sharing only memory that is already kiln's.)doc");
  tensor
      .def(py::init([](py::handle value, py::handle dtype) {
             return to_tensor(
                 value, dtype.is_none() ? std::nullopt : std::optional<DType>(to_dtype(dtype)));
           }),
           py::arg("value"), py::arg("dtype") = py::none())
      .def_buffer([](Tensor& t) {
        std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
        std::vector<py::ssize_t> strides(shape.size());
        py::ssize_t stride = static_cast<py::ssize_t>(size_of(t.dtype()));
        for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
          strides[i] = stride;
          stride *= shape[i];
        }
        return py::buffer_info(t.raw_data(), static_cast<py::ssize_t>(size_of(t.dtype())),
                               std::string(1, numpy_dtype(t.dtype()).char_()),
                               static_cast<py::ssize_t>(shape.size()), shape, strides);
      })
      .def_property_readonly("shape", [](const Tensor& t) { return shape_tuple(t.shape()); })
      .def_property_readonly("dtype", &Tensor::dtype)
      .def_property_readonly("ndim", &Tensor::rank)
      .def_property_readonly("size", &Tensor::numel)
      .def_property_readonly("nbytes", &Tensor::nbytes)
      .def_property("requires_grad", &Tensor::requires_grad, &Tensor::set_requires_grad)
      .def("numpy", &tensor_to_numpy,
           "The values as a NumPy array sharing this tensor's memory (no copy).")
      .def(
          "__array__",
          [](const Tensor& t, py::handle dtype) {
            py::array a = tensor_to_numpy(t);
            return dtype.is_none() ? a : py::array(a.attr("astype")(dtype));
          },
          py::arg("dtype") = py::none())
      .def("item",
           [](const Tensor& t) -> py::object {
             if (t.dtype() == boolean) return py::bool_(t.item_double() != 0);
             if (is_floating(t.dtype())) return py::float_(t.item_double());
             return py::int_(static_cast<int64_t>(t.item_double()));
           })
      .def("__float__", &Tensor::item_double)
      .def("__int__", [](const Tensor& t) { return static_cast<int64_t>(t.item_double()); })
      .def("__index__",
           [](const Tensor& t) {
             if (is_floating(t.dtype())) throw py::type_error("a float tensor is not an index");
             return static_cast<int64_t>(t.item_double());
           })
      .def("__bool__",
           [](const Tensor& t) {
             if (t.numel() != 1) {
               throw py::value_error("the truth value of a tensor of shape " +
                                     to_string(t.shape()) + " is ambiguous");
             }
             return t.item_double() != 0;
           })
      .def("__len__",
           [](const Tensor& t) {
             if (t.rank() == 0) throw py::type_error("len() of a rank-0 tensor");
             return t.dim(0);
           })
      .def("__getitem__", &index_tensor)
      .def("__repr__", [](const Tensor& t) { return to_string(t); })
      .def("clone", &Tensor::clone)
      .def("reshape", [](const Tensor& t, py::handle shape) { return reshape(t, to_shape(shape)); })
      .def("__add__", &apply<add>, py::is_operator())
      .def("__radd__", &apply_reversed<add>, py::is_operator())
      .def("__sub__", &apply<sub>, py::is_operator())
      .def("__rsub__", &apply_reversed<sub>, py::is_operator())
      .def("__mul__", &apply<mul>, py::is_operator())
      .def("__rmul__", &apply_reversed<mul>, py::is_operator())
      .def("__truediv__", &apply<div>, py::is_operator())
      .def("__rtruediv__", &apply_reversed<div>, py::is_operator())
      .def("__pow__", &apply<pow>, py::is_operator())
      .def("__rpow__", &apply_reversed<pow>, py::is_operator())
      .def("__matmul__", &apply<matmul2>, py::is_operator())
      .def("__rmatmul__", &apply_reversed<matmul2>, py::is_operator())
      .def("__lt__", &apply<less>, py::is_operator())
      .def("__le__", &apply<less_equal>, py::is_operator())
      .def("__gt__", &apply<greater>, py::is_operator())
      .def("__ge__", &apply<greater_equal>, py::is_operator())
      .def("__eq__", &apply<equal>, py::is_operator())
      .def("__ne__", &apply<not_equal>, py::is_operator())
      .def("__neg__", [](const Tensor& t) { return neg(t); })
      .def("__abs__", [](const Tensor& t) { return abs(t); })
      .attr("__array_priority__") = 1000;
  tensor.attr("__hash__") = py::none();  // == is elementwise, as in TensorFlow

  m.def(
      "from_numpy",
      [](py::array a) {
        if (Tensor shared = shared_view(a); shared.defined()) return shared;
        if (Tensor adopted = adopt_array(a); adopted.defined()) return adopted;
        return copy_array(a, from_numpy_dtype(a.dtype()));
      },
      py::arg("array"), R"doc(
A tensor with the array's values and dtype, sharing the array's memory (no copy), as
torch.from_numpy: writes through either side show in the other, and the tensor (and every
view or result that aliases it) keeps the array alive after the array itself is deleted.
Shared when the array is C-contiguous, writeable, in native byte order and aligned to its
element size (kiln's kernels assume nothing more: kiln's own storage is 64-byte aligned, but
no kernel relies on it). Anything else is copied into kiln's storage: non-contiguous arrays
(a[:, ::2], a.T), read-only arrays (kiln.assign could write them), byte-swapped ('>f4' on
this machine) or misaligned ones. An array that views a kiln tensor's memory (t.numpy(),
or a contiguous slice of one) shares that tensor's storage directly.
dtypes: float32, float64, int32, int64, int8, uint8, bool; others raise TypeError.
Resizing the array in place (a.resize) is refused by NumPy while the tensor holds it.)doc");
  m.def(
      "convert_to_tensor",
      [](py::handle value, py::handle dtype) {
        return to_tensor(value,
                         dtype.is_none() ? std::nullopt : std::optional<DType>(to_dtype(dtype)));
      },
      py::arg("value"), py::arg("dtype") = py::none());
  auto creator = [&](const char* name, Tensor (*f)(const Shape&, DType)) {
    m.def(
        name,
        [f](py::handle shape, py::handle dtype) { return f(to_shape(shape), to_dtype(dtype)); },
        py::arg("shape"), py::arg("dtype") = float32);
  };
  creator("zeros", &zeros);
  creator("ones", &ones);
  creator("empty", &empty);
  m.def(
      "fill",
      [](py::handle shape, double value, py::handle dtype) {
        return full(to_shape(shape), value, to_dtype(dtype));
      },
      py::arg("dims"), py::arg("value"), py::arg("dtype") = float32);
  m.def("zeros_like", &zeros_like, py::arg("input"));
  m.def("ones_like", &ones_like, py::arg("input"));
  m.def(
      "arange",
      [](double start, py::object limit, double delta, py::handle dtype) {
        if (limit.is_none()) return arange(0, start, delta, to_dtype(dtype));
        return arange(start, limit.cast<double>(), delta, to_dtype(dtype));
      },
      py::arg("start"), py::arg("limit") = py::none(), py::arg("delta") = 1,
      py::arg("dtype") = float32);
  m.def(
      "random_uniform",
      [](py::handle shape, double low, double high, uint64_t seed, py::handle dtype) {
        return random_uniform(to_shape(shape), low, high, seed, to_dtype(dtype));
      },
      py::arg("shape"), py::arg("minval"), py::arg("maxval"), py::arg("seed"),
      py::arg("dtype") = float32);
  m.def(
      "random_normal",
      [](py::handle shape, double mean, double stddev, uint64_t seed, py::handle dtype) {
        return random_normal(to_shape(shape), mean, stddev, seed, to_dtype(dtype));
      },
      py::arg("shape"), py::arg("mean"), py::arg("stddev"), py::arg("seed"),
      py::arg("dtype") = float32);
}

}  // namespace kiln::python
