// The public ops (kiln/ops.h) under their kiln names, kiln.GradientTape and SeedGenerator. The
// package python/kiln adds TensorFlow's names (tf.matmul, tf.reduce_sum, tf.random.normal, ...).
// Every op releases the GIL while it runs.
#include <cctype>

#include "common.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"

namespace kiln::python {
namespace {

using Guard = py::call_guard<py::gil_scoped_release>;
using Unary = Tensor (*)(const Tensor&);
using Binary = Tensor (*)(const Tensor&, const Tensor&);

template <Binary F>
Tensor binary(const TensorArg& a, const TensorArg& b) {
  auto [x, y] = binary_operands(a, b);
  py::gil_scoped_release nogil;
  return F(x, y);
}

std::vector<int> axes_of(py::handle axis) {
  if (axis.is_none()) return {};
  if (py::isinstance<py::int_>(axis)) return {axis.cast<int>()};
  return axis.cast<std::vector<int>>();
}

std::array<int64_t, 2> pair_of(py::handle h, const char* what) {
  if (py::isinstance<py::int_>(h)) return {h.cast<int64_t>(), h.cast<int64_t>()};
  auto v = h.cast<std::vector<int64_t>>();
  if (v.size() == 4) return {v[1], v[2]};  // TensorFlow's [1, sh, sw, 1]
  if (v.size() != 2) {
    throw py::value_error(std::string(what) + " must be an int or 2 ints, got " +
                          std::string(py::repr(h)));
  }
  return {v[0], v[1]};
}

Padding padding_of(const std::string& p) {
  std::string lower;
  for (char c : p) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "valid") return Padding::kValid;
  if (lower == "same") return Padding::kSame;
  throw py::value_error("padding must be 'valid' or 'same', got '" + p + "'");
}

// Sources of tape.gradient: one tensor or variable, or a list/tuple of them.
std::vector<Tensor> source_list(py::handle sources, bool* single) {
  *single = py::isinstance<Tensor>(sources) || py::isinstance<Variable>(sources);
  std::vector<Tensor> out;
  if (*single) {
    out.push_back(sources.cast<TensorArg>().tensor);
  } else {
    for (py::handle s : sources) out.push_back(s.cast<TensorArg>().tensor);
  }
  return out;
}

// A GradientTape recording between __enter__ and __exit__, as in TensorFlow. The C++ tape
// belongs to the thread that entered it.
struct PyTape {
  bool persistent = false;
  std::unique_ptr<GradientTape> tape;
};

}  // namespace

Padding padding_from_string(const std::string& p) { return padding_of(p); }
std::array<int64_t, 2> int_pair(py::handle h, const char* what) { return pair_of(h, what); }

void bind_ops(py::module_& m) {
  // ---- elementwise
  m.def("add", &binary<add>, py::arg("x"), py::arg("y"));
  m.def("subtract", &binary<sub>, py::arg("x"), py::arg("y"));
  m.def("multiply", &binary<mul>, py::arg("x"), py::arg("y"));
  m.def("divide", &binary<div>, py::arg("x"), py::arg("y"));
  m.def("pow", &binary<pow>, py::arg("x"), py::arg("y"));
  m.def("maximum", &binary<maximum>, py::arg("x"), py::arg("y"));
  m.def("minimum", &binary<minimum>, py::arg("x"), py::arg("y"));
  m.def("equal", &binary<equal>, py::arg("x"), py::arg("y"));
  m.def("not_equal", &binary<not_equal>, py::arg("x"), py::arg("y"));
  m.def("less", &binary<less>, py::arg("x"), py::arg("y"));
  m.def("less_equal", &binary<less_equal>, py::arg("x"), py::arg("y"));
  m.def("greater", &binary<greater>, py::arg("x"), py::arg("y"));
  m.def("greater_equal", &binary<greater_equal>, py::arg("x"), py::arg("y"));
  auto unary = [&](const char* name, Unary f) {
    m.def(
        name,
        [f](const TensorArg& x) {
          py::gil_scoped_release nogil;
          return f(x.tensor);
        },
        py::arg("x"));
  };
  unary("negative", &neg);
  unary("exp", &exp);
  unary("log", &log);
  unary("sqrt", &sqrt);
  unary("abs", &abs);
  unary("square", &square);
  unary("relu", &relu);
  unary("sigmoid", &sigmoid);
  unary("tanh", &tanh);
  unary("stop_gradient", &stop_gradient);
  m.def(
      "where",
      [](const TensorArg& c, const TensorArg& a, const TensorArg& b) {
        auto [x, y] = binary_operands(a, b);
        py::gil_scoped_release nogil;
        return where(c.tensor, x, y);
      },
      py::arg("condition"), py::arg("x"), py::arg("y"));
  m.def(
      "cast",
      [](const TensorArg& x, py::handle dtype) {
        const DType t = to_dtype(dtype);
        py::gil_scoped_release nogil;
        return cast(x.tensor, t);
      },
      py::arg("x"), py::arg("dtype"));
  m.def(
      "broadcast_to",
      [](const TensorArg& x, py::handle shape) {
        const Shape s = to_shape(shape);
        py::gil_scoped_release nogil;
        return broadcast_to(x.tensor, s);
      },
      py::arg("input"), py::arg("shape"));
  m.def(
      "sum_to",
      [](const TensorArg& x, py::handle shape) {
        const Shape s = to_shape(shape);
        py::gil_scoped_release nogil;
        return sum_to(x.tensor, s);
      },
      py::arg("input"), py::arg("shape"));

  // ---- activations
  m.def(
      "leaky_relu", [](const TensorArg& x, double alpha) { return leaky_relu(x.tensor, alpha); },
      py::arg("features"), py::arg("alpha") = 0.2, Guard());
  m.def(
      "gelu", [](const TensorArg& x, bool approximate) { return gelu(x.tensor, approximate); },
      py::arg("features"), py::arg("approximate") = false, Guard());
  m.def(
      "softmax", [](const TensorArg& x, int axis) { return softmax(x.tensor, axis); },
      py::arg("logits"), py::arg("axis") = -1, Guard());
  m.def(
      "log_softmax", [](const TensorArg& x, int axis) { return log_softmax(x.tensor, axis); },
      py::arg("logits"), py::arg("axis") = -1, Guard());

  // ---- reductions (axis=None: all axes)
  using Reduce = Tensor (*)(const Tensor&, std::vector<int>, bool);
  auto reduction = [&](const char* name, Reduce f) {
    m.def(
        name,
        [f](const TensorArg& x, py::object axis, bool keepdims) {
          std::vector<int> axes = axes_of(axis);
          py::gil_scoped_release nogil;
          return f(x.tensor, axes, keepdims);
        },
        py::arg("input_tensor"), py::arg("axis") = py::none(), py::arg("keepdims") = false);
  };
  reduction("reduce_sum", &sum);
  reduction("reduce_mean", &mean);
  reduction("reduce_max", &max);
  m.def(
      "argmax",
      [](const TensorArg& x, int axis, bool keepdims) { return argmax(x.tensor, axis, keepdims); },
      py::arg("input"), py::arg("axis") = -1, py::arg("keepdims") = false, Guard());

  // ---- linear algebra and shapes
  m.def(
      "matmul",
      [](const TensorArg& a, const TensorArg& b, bool ta, bool tb) {
        return matmul(a.tensor, b.tensor, ta, tb);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      Guard());
  m.def(
      "reshape",
      [](const TensorArg& x, py::handle shape) {
        const Shape s = to_shape(shape);
        py::gil_scoped_release nogil;
        return reshape(x.tensor, s);
      },
      py::arg("tensor"), py::arg("shape"));
  m.def(
      "transpose",
      [](const TensorArg& x, py::object perm) {
        const std::vector<int> p =
            perm.is_none() ? std::vector<int>{} : perm.cast<std::vector<int>>();
        py::gil_scoped_release nogil;
        return transpose(x.tensor, p);
      },
      py::arg("a"), py::arg("perm") = py::none());
  m.def(
      "concat",
      [](const std::vector<TensorArg>& xs, int axis) {
        std::vector<Tensor> ts;
        for (const TensorArg& x : xs) ts.push_back(x.tensor);
        py::gil_scoped_release nogil;
        return concat(ts, axis);
      },
      py::arg("values"), py::arg("axis"));
  m.def(
      "slice",
      [](const TensorArg& x, std::vector<int64_t> begins, std::vector<int64_t> ends,
         std::vector<int64_t> steps) { return slice(x.tensor, begins, ends, steps); },
      py::arg("input"), py::arg("begin"), py::arg("end"),
      py::arg("strides") = std::vector<int64_t>{}, Guard());
  m.def(
      "gather",
      [](const TensorArg& x, const TensorArg& i, int axis) {
        return gather(x.tensor, i.tensor, axis);
      },
      py::arg("params"), py::arg("indices"), py::arg("axis") = 0, Guard());
  m.def(
      "one_hot",
      [](const TensorArg& i, int64_t depth, py::handle dtype) {
        const DType t = to_dtype(dtype);
        py::gil_scoped_release nogil;
        return one_hot(i.tensor, depth, t);
      },
      py::arg("indices"), py::arg("depth"), py::arg("dtype") = float32);
  m.def(
      "pad",
      [](const TensorArg& x, std::vector<std::pair<int64_t, int64_t>> pads, double value) {
        return pad(x.tensor, pads, value);
      },
      py::arg("tensor"), py::arg("paddings"), py::arg("constant_values") = 0.0, Guard());

  // ---- convolution and pooling, NHWC
  m.def(
      "conv2d",
      [](const TensorArg& x, const TensorArg& f, py::handle strides, const std::string& padding,
         py::handle dilations, int64_t groups) {
        Conv2DOptions o{.strides = pair_of(strides, "strides"),
                        .padding = padding_of(padding),
                        .dilation = pair_of(dilations, "dilations"),
                        .groups = groups};
        py::gil_scoped_release nogil;
        return conv2d(x.tensor, f.tensor, o);
      },
      py::arg("input"), py::arg("filters"), py::arg("strides") = 1, py::arg("padding") = "VALID",
      py::arg("dilations") = 1, py::arg("groups") = 1);
  auto pool = [&](const char* name, Tensor (*f)(const Tensor&, const Pool2DOptions&)) {
    m.def(
        name,
        [f](const TensorArg& x, py::handle ksize, py::handle strides, const std::string& padding) {
          Pool2DOptions o{
              .pool_size = pair_of(ksize, "ksize"),
              .strides = strides.is_none() ? pair_of(ksize, "ksize") : pair_of(strides, "strides"),
              .padding = padding_of(padding)};
          py::gil_scoped_release nogil;
          return f(x.tensor, o);
        },
        py::arg("input"), py::arg("ksize"), py::arg("strides") = py::none(),
        py::arg("padding") = "VALID");
  };
  pool("max_pool2d", &max_pool2d);
  pool("avg_pool2d", &avg_pool2d);

  // ---- nn, random
  m.def(
      "dropout",
      [](const TensorArg& x, double rate, const TensorArg& seed_or_key, bool training) {
        const Tensor& k = seed_or_key.tensor;
        py::gil_scoped_release nogil;
        if (k.rank() == 0)
          return dropout(x.tensor, rate, static_cast<uint64_t>(k.item_double()), training);
        return dropout(x.tensor, rate, k, training);
      },
      py::arg("x"), py::arg("rate"), py::arg("seed"), py::arg("training") = true);
  m.def(
      "softmax_cross_entropy",
      [](const TensorArg& logits, const TensorArg& labels) {
        return softmax_cross_entropy(logits.tensor, labels.tensor);
      },
      py::arg("logits"), py::arg("labels"), Guard());
  m.def(
      "random_uniform_key",
      [](py::handle shape, double low, double high, const TensorArg& key, py::handle dtype) {
        const Shape s = to_shape(shape);
        const DType t = to_dtype(dtype);
        py::gil_scoped_release nogil;
        return random_uniform(s, low, high, key.tensor, t);
      },
      py::arg("shape"), py::arg("minval"), py::arg("maxval"), py::arg("key"),
      py::arg("dtype") = float32);
  m.def(
      "random_normal_key",
      [](py::handle shape, double mean, double stddev, const TensorArg& key, py::handle dtype) {
        const Shape s = to_shape(shape);
        const DType t = to_dtype(dtype);
        py::gil_scoped_release nogil;
        return random_normal(s, mean, stddev, key.tensor, t);
      },
      py::arg("shape"), py::arg("mean"), py::arg("stddev"), py::arg("key"),
      py::arg("dtype") = float32);
  m.def(
      "assign", [](const TensorArg& t, const TensorArg& v) { assign(t.tensor, v.tensor); },
      py::arg("ref"), py::arg("value"), Guard());
  m.def(
      "assign_add", [](const TensorArg& t, const TensorArg& v) { assign_add(t.tensor, v.tensor); },
      py::arg("ref"), py::arg("delta"), Guard());
  py::class_<SeedGenerator>(m, "SeedGenerator",
                            "Keras' SeedGenerator: next() -> key {seed, counter}.")
      .def(py::init<uint64_t>(), py::arg("seed") = 0)
      .def("next", &SeedGenerator::next)
      .def_property_readonly("seed", &SeedGenerator::seed)
      .def_property_readonly("counter", &SeedGenerator::counter)
      .def_property_readonly("state", &SeedGenerator::state);

  // ---- autograd
  py::class_<PyTape>(m, "GradientTape", R"doc(
Records ops inside `with kiln.GradientTape() as tape:` (trainable variables are watched without
watch()); tape.gradient(target, sources) differentiates. A persistent tape allows several
gradient() calls. The tape belongs to the thread that entered it.)doc")
      .def(py::init([](bool persistent) {
             return PyTape{persistent, nullptr};
           }),
           py::arg("persistent") = false)
      .def(
          "__enter__",
          [](PyTape& t) -> PyTape& {
            if (t.tape) {
              t.tape->start_recording();
            } else {
              t.tape = std::make_unique<GradientTape>(t.persistent);
            }
            return t;
          },
          py::return_value_policy::reference_internal)
      .def("__exit__",
           [](PyTape& t, py::args) {
             if (t.tape) t.tape->stop_recording();
           })
      .def(
          "watch",
          [](PyTape& t, py::handle x) {
            if (!t.tape) throw StateError("GradientTape.watch: enter the tape first (with ...)");
            bool single;
            for (const Tensor& s : source_list(x, &single)) t.tape->watch(s);
          },
          py::arg("tensor"))
      .def("stop_recording",
           [](PyTape& t) {
             if (t.tape) t.tape->stop_recording();
           })
      .def("start_recording",
           [](PyTape& t) {
             if (t.tape) t.tape->start_recording();
           })
      .def("__len__", [](const PyTape& t) { return t.tape ? t.tape->size() : 0; })
      .def(
          "gradient",
          [](PyTape& t, const TensorArg& target, py::handle sources, py::object output_gradients) {
            if (!t.tape)
              throw StateError("GradientTape.gradient: the tape never recorded (use `with`)");
            bool single;
            std::vector<Tensor> srcs = source_list(sources, &single);
            Tensor seed =
                output_gradients.is_none() ? Tensor() : output_gradients.cast<TensorArg>().tensor;
            std::vector<Tensor> grads;
            {
              py::gil_scoped_release nogil;
              grads = t.tape->gradient(target.tensor, srcs, seed);
            }
            auto out = [](const Tensor& g) { return g.defined() ? py::cast(g) : py::none(); };
            if (single) return out(grads[0]);
            py::list r;
            for (const Tensor& g : grads) r.append(out(g));
            return py::object(r);
          },
          py::arg("target"), py::arg("sources"), py::arg("output_gradients") = py::none());
}

}  // namespace kiln::python
