// Variables, initializers, kiln.Layer / Model / Sequential (subclassable from Python through a
// trampoline) and the built-in layers with Keras' argument names.
#include <cstdlib>

#include "common.h"

namespace kiln::python {
namespace {

// Layer's protected members, reached through member pointers (no cast of a Layer& needed).
struct LayerAccess : Layer {
  using Layer::add_weight;
  using Layer::build_dtype;
  using Layer::track_layer;
};
Variable add_weight_to(Layer& l, const std::string& name, const Shape& shape,
                       const Initializer& init, bool trainable, DType dtype) {
  Variable (Layer::*f)(const std::string&, const Shape&, const Initializer&, bool, DType) =
      &LayerAccess::add_weight;
  return (l.*f)(name, shape, init, trainable, dtype);
}

// The trampoline: a Python subclass of kiln.Layer / kiln.Model supplies build, call
// (through the package's _kiln_call, which handles `training`), compute_output_shape and the
// type name. Every override takes the GIL: C++ calls layers with the GIL released.
template <class Base>
class PyLayer : public Base {
 public:
  using Base::Base;

  // The Python class's name ("MyDense"), through the package's _kiln_type_name.
  std::string type_name() const override {
    {
      py::gil_scoped_acquire gil;
      if (py::function f = py::get_override(static_cast<const Base*>(this), "_kiln_type_name")) {
        return f().template cast<std::string>();
      }
    }
    if constexpr (std::is_same_v<Base, Layer>) {
      return "Layer";
    } else {
      return Base::type_name();
    }
  }

 protected:
  void build(const Shape& input_shape) override {
    py::gil_scoped_acquire gil;
    if (py::function f = py::get_override(static_cast<const Base*>(this), "build")) {
      f(shape_tuple(input_shape));
      return;
    }
    Base::build(input_shape);
  }
  void build_multi(const std::vector<Shape>& shapes) override {
    py::gil_scoped_acquire gil;
    if (shapes.size() != 1) {
      if (py::function f = py::get_override(static_cast<const Base*>(this), "build")) {
        py::list l;
        for (const Shape& s : shapes) l.append(shape_tuple(s));
        f(l);
        return;
      }
    }
    Base::build_multi(shapes);
  }
  Tensor call(const Tensor& x, bool training) override {
    py::gil_scoped_acquire gil;
    if (py::function f = py::get_override(static_cast<const Base*>(this), "_kiln_call")) {
      return f(x, training).template cast<Tensor>();
    }
    throw StateError("layer '" + this->name() + "' has no call() (define call in the subclass)");
  }
  Tensor call_multi(const std::vector<Tensor>& xs, bool training) override {
    py::gil_scoped_acquire gil;
    if (py::function f = py::get_override(static_cast<const Base*>(this), "_kiln_call")) {
      return f(py::cast(xs), training).template cast<Tensor>();
    }
    return Base::call_multi(xs, training);
  }
  Shape compute_output_shape(const Shape& input_shape) override {
    {
      py::gil_scoped_acquire gil;
      if (py::function f =
              py::get_override(static_cast<const Base*>(this), "compute_output_shape")) {
        return to_shape(f(shape_tuple(input_shape)));
      }
    }
    return Base::compute_output_shape(input_shape);
  }
};

using PyModel = PyLayer<Model>;

py::array read_only(py::array a) {
  a.attr("flags").attr("writeable") = false;
  return a;
}

py::object var_or_none(const Variable& v) { return v.defined() ? py::cast(v) : py::none(); }

py::list variable_list(const std::vector<Variable>& vs) {
  py::list l;
  for (const Variable& v : vs) l.append(py::cast(v));
  return l;
}

py::dict layer_cache_info(const LayerCacheInfo& info) {
  py::dict d;
  d["layer"] = info.layer;
  d["variables"] = info.variables;
  d["variable_bytes"] = info.variable_bytes;
  d["own_weights"] = variable_list(info.own_weights);
  py::list entries;
  for (const auto& e : info.entries) {
    py::dict de;
    de["cache"] = e.cache;
    de["object"] = e.object;
    de["bytes"] = e.bytes;
    entries.append(de);
  }
  d["entries"] = entries;
  d["entry_bytes"] = info.entry_bytes;
  return d;
}

std::string opt_name(py::handle name) { return name.is_none() ? "" : name.cast<std::string>(); }

Layer* share_target(py::handle h) { return h.is_none() ? nullptr : h.cast<Layer*>(); }

}  // namespace

std::shared_ptr<Layer> shared_layer(py::handle obj) { return shared_keep<Layer>(obj); }

Initializer to_initializer(py::handle h) {
  if (py::isinstance<Initializer>(h)) return h.cast<Initializer>();
  if (py::isinstance<py::str>(h)) return initializers::get(h.cast<std::string>());
  throw py::type_error(
      "an initializer is a Keras name (\"glorot_uniform\") or kiln.Initializer, got " +
      std::string(py::repr(h)));
}

std::string activation_name(py::handle h) {
  if (h.is_none()) return "linear";
  if (py::isinstance<py::str>(h)) return h.cast<std::string>();
  if (py::hasattr(h, "__name__")) return h.attr("__name__").cast<std::string>();
  throw py::type_error("an activation is a name (\"relu\") or None, got " +
                       std::string(py::repr(h)));
}

void bind_layers(py::module_& m) {
  // ---- variables and initializers
  py::class_<Variable>(m, "Variable", R"doc(
A named tensor that persists across steps (kiln::Variable). Handles of one variable compare
equal; assign() writes in place and bumps version.)doc")
      .def(py::init([](const TensorArg& initial, py::handle name, bool trainable) {
             return Variable(name.is_none() ? "Variable" : name.cast<std::string>(),
                             initial.tensor.clone(), trainable);
           }),
           py::arg("initial_value"), py::arg("name") = py::none(), py::arg("trainable") = true)
      .def_property_readonly("name", &Variable::name)
      .def_property_readonly("trainable", &Variable::trainable)
      .def_property_readonly("value", &Variable::value)
      .def("read_value", &Variable::value)
      .def_property_readonly("shape", [](const Variable& v) { return shape_tuple(v.shape()); })
      .def_property_readonly("dtype", &Variable::dtype)
      .def_property_readonly("version", &Variable::version)
      .def_property_readonly("ndim", [](const Variable& v) { return v.shape().rank(); })
      // Read-only views: a variable is written through assign(), which bumps its version (the
      // key of caches such as conv's reordered filters); a write through NumPy would not.
      .def("numpy", [](const Variable& v) { return read_only(tensor_to_numpy(v.value())); })
      .def(
          "__array__",
          [](const Variable& v, py::handle dtype) {
            py::array a = read_only(tensor_to_numpy(v.value()));
            return dtype.is_none() ? a : py::array(a.attr("astype")(dtype));
          },
          py::arg("dtype") = py::none())
      .def(
          "assign",
          [](Variable& v, const TensorArg& x) {
            Tensor t = x.python_scalar ? full(v.shape(), x.scalar, v.dtype()) : x.tensor;
            py::gil_scoped_release nogil;
            v.assign(t);
          },
          py::arg("value"))
      .def(
          "assign_add",
          [](Variable& v, const TensorArg& x) {
            Tensor t = x.python_scalar ? full(v.shape(), x.scalar, v.dtype()) : x.tensor;
            py::gil_scoped_release nogil;
            assign_add(v.value(), t);
          },
          py::arg("delta"))
      .def(
          "__eq__", [](const Variable& a, const Variable& b) { return a == b; }, py::is_operator())
      .def("__hash__", [](const Variable& v) { return reinterpret_cast<uintptr_t>(v.id()); })
      .def("__repr__",
           [](const Variable& v) {
             return "<kiln.Variable '" + v.name() + "' shape=" + to_string(v.shape()) +
                    " dtype=" + std::string(dtype_name(v.dtype())) + ">";
           })
      .attr("__array_priority__") = 1000;

  py::class_<Initializer>(m, "Initializer", "Maps (shape, dtype, seed) to a fresh tensor.")
      .def_property_readonly("name", &Initializer::name)
      .def(
          "__call__",
          [](const Initializer& i, py::handle shape, py::handle dtype, uint64_t seed) {
            return i(to_shape(shape), to_dtype(dtype), seed);
          },
          py::arg("shape"), py::arg("dtype") = float32, py::arg("seed") = 0)
      .def("__repr__", [](const Initializer& i) { return "<kiln.Initializer " + i.name() + ">"; });
  py::module_ init =
      m.def_submodule("initializers", "Keras' initializers (kiln/nn/initializers.h)");
  init.def("get", &initializers::get, py::arg("identifier"));
  init.def("glorot_uniform", &initializers::glorot_uniform);
  init.def("glorot_normal", &initializers::glorot_normal);
  init.def("he_normal", &initializers::he_normal);
  init.def("he_uniform", &initializers::he_uniform);
  init.def("lecun_normal", &initializers::lecun_normal);
  init.def("lecun_uniform", &initializers::lecun_uniform);
  init.def("zeros", &initializers::zeros);
  init.def("ones", &initializers::ones);
  init.def("constant", &initializers::constant, py::arg("value") = 0.0);
  init.def("random_uniform", &initializers::random_uniform, py::arg("minval") = -0.05,
           py::arg("maxval") = 0.05);
  init.def("random_normal", &initializers::random_normal, py::arg("mean") = 0.0,
           py::arg("stddev") = 0.05);
  init.def("truncated_normal", &initializers::truncated_normal, py::arg("mean") = 0.0,
           py::arg("stddev") = 0.05);
  init.def("orthogonal", &initializers::orthogonal, py::arg("gain") = 1.0);
  init.def("identity", &initializers::identity, py::arg("gain") = 1.0);
  m.def("set_global_seed", &set_global_seed, py::arg("seed"));
  m.def("global_seed", &global_seed);
  m.def("reset_layer_names", &reset_layer_names);

  // ---- Layer
  py::class_<Layer, PyLayer<Layer>, std::shared_ptr<Layer>>(m, "Layer", R"doc(
kiln::Layer. Subclass kiln.keras.layers.Layer (which adds Keras' conveniences) rather than
this class. The first call builds (build(input_shape) once), later calls check the input shape.)doc")
      .def(py::init_alias<std::string, std::string>(), py::arg("name") = "",
           py::arg("default_base") = "layer")
      .def(
          "__call__",
          [](Layer& l, py::handle inputs, py::handle training) {
            const bool t = !training.is_none() && training.cast<bool>();
            if (py::isinstance<py::list>(inputs) || py::isinstance<py::tuple>(inputs)) {
              std::vector<Tensor> xs;
              for (py::handle x : inputs) xs.push_back(x.cast<TensorArg>().tensor);
              py::gil_scoped_release nogil;
              return l(xs, t);
            }
            Tensor x = inputs.cast<TensorArg>().tensor;
            py::gil_scoped_release nogil;
            return l(x, t);
          },
          py::arg("inputs"), py::arg("training") = py::none())
      .def_property_readonly("name", &Layer::name)
      .def_property_readonly("built", &Layer::built)
      .def_property_readonly("_kiln_class_name", &Layer::type_name)
      .def_property("trainable", &Layer::trainable, &Layer::set_trainable)
      .def_property_readonly("weights", [](const Layer& l) { return variable_list(l.weights()); })
      .def_property_readonly("variables", [](const Layer& l) { return variable_list(l.weights()); })
      .def_property_readonly("trainable_weights",
                             [](const Layer& l) { return variable_list(l.trainable_weights()); })
      .def_property_readonly("trainable_variables",
                             [](const Layer& l) { return variable_list(l.trainable_weights()); })
      .def_property_readonly(
          "non_trainable_weights",
          [](const Layer& l) { return variable_list(l.non_trainable_weights()); })
      .def("count_params", &Layer::count_params)
      .def_property_readonly("layers", &Layer::layers)
      .def_property_readonly("input_shape",
                             [](const Layer& l) -> py::object {
                               const auto& s = l.built_input_shapes();
                               if (s.empty()) return py::none();
                               return shape_tuple(s[0]);
                             })
      .def(
          "get_weight",
          [](const Layer& l, const std::string& n) { return var_or_none(l.weight(n)); },
          py::arg("name"),
          "The weight this layer created under short name `name` ('kernel'), or None.")
      .def("share_weights_from", &Layer::share_weights_from, py::arg("other"),
           py::keep_alive<1, 2>(),
           "Before the first call: use `other`'s weights of the same names.")
      .def(
          "compute_output_shape",
          [](Layer& l, py::handle shape) { return shape_tuple(l.output_shape(to_shape(shape))); },
          py::arg("input_shape"))
      .def("cache_info", [](const Layer& l) { return layer_cache_info(l.cache_info()); })
      .def("_track",
           [](Layer& self, py::handle child) {
             (self.*&LayerAccess::track_layer)(shared_layer(child));
           })
      .def("_build_dtype", [](Layer& self) { return (self.*&LayerAccess::build_dtype)(); })
      .def(
          "_add_weight",
          [](Layer& self, const std::string& name, py::handle shape, py::handle initializer,
             bool trainable, py::handle dtype) {
            return add_weight_to(self, name, to_shape(shape), to_initializer(initializer),
                                 trainable, to_dtype(dtype));
          },
          py::arg("name"), py::arg("shape"), py::arg("initializer"), py::arg("trainable"),
          py::arg("dtype"));

  // ---- Model, Sequential
  // dynamic_attr: a model rebuilt by load_model is a C++ instance, not a Python subclass, and
  // Keras' compile() keeps its loss and optimizer on it (kiln.keras.models adds the methods).
  py::class_<Model, Layer, PyModel, std::shared_ptr<Model>>(m, "Model", py::dynamic_attr())
      .def(py::init_alias<std::string, std::string>(), py::arg("name") = "",
           py::arg("default_base") = "model")
      .def(
          "_summary",
          [](Model& model, py::handle shape) {
            if (shape.is_none()) {
              py::gil_scoped_release nogil;
              return model.summary();
            }
            Shape s = to_shape(shape);
            py::gil_scoped_release nogil;
            return model.summary(s);
          },
          py::arg("input_shape") = py::none());

  py::class_<Sequential, Model, std::shared_ptr<Sequential>>(m, "Sequential")
      .def(py::init([](py::object layers, py::handle name) {
             auto s = std::make_shared<Sequential>(opt_name(name));
             if (!layers.is_none()) {
               for (py::handle l : layers) s->add(shared_layer(l));
             }
             return s;
           }),
           py::arg("layers") = py::none(), py::arg("name") = py::none())
      .def(
          "add", [](Sequential& s, py::handle layer) { s.add(shared_layer(layer)); },
          py::arg("layer"))
      .def("__len__", &Sequential::size);

  // ---- built-in layers, Keras' argument names and defaults
  py::class_<Dense, Layer, std::shared_ptr<Dense>>(m, "Dense")
      .def(py::init([](int64_t units, py::handle activation, bool use_bias,
                       py::handle kernel_initializer, py::handle bias_initializer, py::handle name,
                       py::handle share) {
             return std::make_shared<Dense>(
                 units, DenseOptions{.activation = activation_name(activation),
                                     .use_bias = use_bias,
                                     .kernel_initializer = to_initializer(kernel_initializer),
                                     .bias_initializer = to_initializer(bias_initializer),
                                     .name = opt_name(name),
                                     .share_weights_with = share_target(share)});
           }),
           py::arg("units"), py::arg("activation") = py::none(), py::arg("use_bias") = true,
           py::arg("kernel_initializer") = "glorot_uniform", py::arg("bias_initializer") = "zeros",
           py::arg("name") = py::none(), py::arg("share_weights_with") = py::none(),
           py::keep_alive<1, 8>())
      .def_property_readonly("units", &Dense::units)
      .def_property_readonly("kernel", [](const Dense& d) { return var_or_none(d.kernel()); })
      .def_property_readonly("bias", [](const Dense& d) { return var_or_none(d.bias()); });
  py::class_<Conv2D, Layer, std::shared_ptr<Conv2D>>(m, "Conv2D")
      .def(py::init([](int64_t filters, py::handle kernel_size, py::handle strides,
                       const std::string& padding, py::handle dilation_rate, int64_t groups,
                       py::handle activation, bool use_bias, py::handle kernel_initializer,
                       py::handle bias_initializer, py::handle name, py::handle share) {
             return std::make_shared<Conv2D>(
                 filters, int_pair(kernel_size, "kernel_size"),
                 Conv2DLayerOptions{.strides = int_pair(strides, "strides"),
                                    .padding = padding_from_string(padding),
                                    .dilation = int_pair(dilation_rate, "dilation_rate"),
                                    .groups = groups,
                                    .activation = activation_name(activation),
                                    .use_bias = use_bias,
                                    .kernel_initializer = to_initializer(kernel_initializer),
                                    .bias_initializer = to_initializer(bias_initializer),
                                    .name = opt_name(name),
                                    .share_weights_with = share_target(share)});
           }),
           py::arg("filters"), py::arg("kernel_size"), py::arg("strides") = 1,
           py::arg("padding") = "valid", py::arg("dilation_rate") = 1, py::arg("groups") = 1,
           py::arg("activation") = py::none(), py::arg("use_bias") = true,
           py::arg("kernel_initializer") = "glorot_uniform", py::arg("bias_initializer") = "zeros",
           py::arg("name") = py::none(), py::arg("share_weights_with") = py::none(),
           py::keep_alive<1, 13>())
      .def_property_readonly("kernel", [](const Conv2D& d) { return var_or_none(d.kernel()); })
      .def_property_readonly("bias", [](const Conv2D& d) { return var_or_none(d.bias()); });
  auto pool_options = [](py::handle pool_size, py::handle strides, const std::string& padding,
                         py::handle name) {
    return Pool2DLayerOptions{
        .pool_size = int_pair(pool_size, "pool_size"),
        .strides = strides.is_none() ? std::array<int64_t, 2>{0, 0} : int_pair(strides, "strides"),
        .padding = padding_from_string(padding),
        .name = opt_name(name)};
  };
  py::class_<MaxPool2D, Layer, std::shared_ptr<MaxPool2D>>(m, "MaxPooling2D")
      .def(py::init([pool_options](py::handle pool_size, py::handle strides,
                                   const std::string& padding, py::handle name) {
             return std::make_shared<MaxPool2D>(pool_options(pool_size, strides, padding, name));
           }),
           py::arg("pool_size") = 2, py::arg("strides") = py::none(), py::arg("padding") = "valid",
           py::arg("name") = py::none());
  py::class_<AvgPool2D, Layer, std::shared_ptr<AvgPool2D>>(m, "AveragePooling2D")
      .def(py::init([pool_options](py::handle pool_size, py::handle strides,
                                   const std::string& padding, py::handle name) {
             return std::make_shared<AvgPool2D>(pool_options(pool_size, strides, padding, name));
           }),
           py::arg("pool_size") = 2, py::arg("strides") = py::none(), py::arg("padding") = "valid",
           py::arg("name") = py::none());
  py::class_<GlobalAveragePooling2D, Layer, std::shared_ptr<GlobalAveragePooling2D>>(
      m, "GlobalAveragePooling2D")
      .def(py::init([](py::handle name) {
             return std::make_shared<GlobalAveragePooling2D>(opt_name(name));
           }),
           py::arg("name") = py::none());
  py::class_<Flatten, Layer, std::shared_ptr<Flatten>>(m, "Flatten")
      .def(py::init([](py::handle name) { return std::make_shared<Flatten>(opt_name(name)); }),
           py::arg("name") = py::none());
  py::class_<Activation, Layer, std::shared_ptr<Activation>>(m, "Activation")
      .def(py::init([](py::handle activation, py::handle name) {
             return std::make_shared<Activation>(activation_name(activation), opt_name(name));
           }),
           py::arg("activation"), py::arg("name") = py::none());
  py::class_<Dropout, Layer, std::shared_ptr<Dropout>>(m, "Dropout")
      .def(py::init([](double rate, std::optional<uint64_t> seed, py::handle name) {
             return std::make_shared<Dropout>(rate, seed, opt_name(name));
           }),
           py::arg("rate"), py::arg("seed") = py::none(), py::arg("name") = py::none())
      .def_property_readonly("rate", &Dropout::rate);
  py::class_<Embedding, Layer, std::shared_ptr<Embedding>>(m, "Embedding")
      .def(py::init([](int64_t input_dim, int64_t output_dim, py::handle init, py::handle name) {
             return std::make_shared<Embedding>(
                 input_dim, output_dim,
                 EmbeddingOptions{.embeddings_initializer = to_initializer(init),
                                  .name = opt_name(name)});
           }),
           py::arg("input_dim"), py::arg("output_dim"),
           py::arg("embeddings_initializer") = "uniform", py::arg("name") = py::none())
      .def_property_readonly("embeddings",
                             [](const Embedding& e) { return var_or_none(e.embeddings()); });
  py::class_<BatchNormalization, Layer, std::shared_ptr<BatchNormalization>>(m,
                                                                             "BatchNormalization")
      .def(py::init([](double momentum, double epsilon, bool center, bool scale, py::handle name) {
             return std::make_shared<BatchNormalization>(BatchNormOptions{.momentum = momentum,
                                                                          .epsilon = epsilon,
                                                                          .center = center,
                                                                          .scale = scale,
                                                                          .name = opt_name(name)});
           }),
           py::arg("momentum") = 0.99, py::arg("epsilon") = 1e-3, py::arg("center") = true,
           py::arg("scale") = true, py::arg("name") = py::none())
      .def_property_readonly(
          "moving_mean", [](const BatchNormalization& b) { return var_or_none(b.moving_mean()); })
      .def_property_readonly(
          "moving_variance",
          [](const BatchNormalization& b) { return var_or_none(b.moving_variance()); })
      .def_property_readonly("gamma",
                             [](const BatchNormalization& b) { return var_or_none(b.gamma()); })
      .def_property_readonly("beta",
                             [](const BatchNormalization& b) { return var_or_none(b.beta()); });
  py::class_<LayerNormalization, Layer, std::shared_ptr<LayerNormalization>>(m,
                                                                             "LayerNormalization")
      .def(py::init([](double epsilon, bool center, bool scale, py::handle name) {
             return std::make_shared<LayerNormalization>(LayerNormOptions{
                 .epsilon = epsilon, .center = center, .scale = scale, .name = opt_name(name)});
           }),
           py::arg("epsilon") = 1e-3, py::arg("center") = true, py::arg("scale") = true,
           py::arg("name") = py::none());
  py::class_<Add, Layer, std::shared_ptr<Add>>(m, "Add").def(
      py::init([](py::handle name) { return std::make_shared<Add>(opt_name(name)); }),
      py::arg("name") = py::none());
  py::class_<Concatenate, Layer, std::shared_ptr<Concatenate>>(m, "Concatenate")
      .def(py::init([](int axis, py::handle name) {
             return std::make_shared<Concatenate>(axis, opt_name(name));
           }),
           py::arg("axis") = -1, py::arg("name") = py::none());

  m.def(
      "make_mlp", [] { return make_mlp(); }, "kiln's ready-made MLP (built for [28, 28, 1]).");
  m.def(
      "make_cnn", [] { return make_cnn(); }, "kiln's ready-made CNN (built for [28, 28, 1]).");
}

}  // namespace kiln::python
