// Optimizers, losses, callbacks (subclassable from Python), datasets and the training loops
// fit / evaluate / predict, each run with the GIL released.
#include "common.h"
#include "kiln/data.h"
#include "kiln/dtype_policy.h"
#include "kiln/threading.h"

namespace kiln::python {
namespace {

py::dict logs_dict(const Logs& logs) {
  py::dict d;
  for (const auto& [k, v] : logs) d[py::str(k)] = v;
  return d;
}

// A callback written in Python: fit() calls these with the GIL taken.
class PyCallback : public Callback {
 public:
  void on_train_begin(const Logs& logs) override { forward("on_train_begin", logs); }
  void on_train_end(const Logs& logs) override { forward("on_train_end", logs); }
  void on_epoch_begin(int epoch, const Logs& logs) override {
    forward("on_epoch_begin", logs, epoch);
  }
  void on_epoch_end(int epoch, const Logs& logs) override { forward("on_epoch_end", logs, epoch); }

 private:
  void forward(const char* name, const Logs& logs, std::optional<int> epoch = std::nullopt) {
    py::gil_scoped_acquire gil;
    py::function f = py::get_override(static_cast<const Callback*>(this), name);
    if (!f) return;
    if (epoch) {
      f(*epoch, logs_dict(logs));
    } else {
      f(logs_dict(logs));
    }
  }
};

MonitorMode mode_of(const std::string& mode) {
  if (mode == "auto") return MonitorMode::kAuto;
  if (mode == "min") return MonitorMode::kMin;
  if (mode == "max") return MonitorMode::kMax;
  throw py::value_error("mode must be 'auto', 'min' or 'max', got '" + mode + "'");
}

py::dict history_dict(const History& h) {
  py::dict d;
  d["epoch"] = h.epochs;
  py::dict hist;
  for (const auto& [k, v] : h.history) hist[py::str(k)] = v;
  d["history"] = hist;
  return d;
}

// One epoch's batches. Destroying the iterator joins the prefetch thread, which may be waiting
// for the GIL to run a Python map: so it is destroyed with the GIL released.
struct PyDatasetIterator {
  std::unique_ptr<DatasetIterator> it;
  PyDatasetIterator(std::unique_ptr<DatasetIterator> i) : it(std::move(i)) {}
  PyDatasetIterator(PyDatasetIterator&&) = default;
  ~PyDatasetIterator() {
    if (it && Py_IsInitialized() && PyGILState_Check()) {
      py::gil_scoped_release nogil;
      it.reset();
    }
  }
};

}  // namespace

void bind_training(py::module_& m) {
  // ---- optimizers (Keras' argument names and defaults)
  py::class_<Optimizer, std::shared_ptr<Optimizer>>(m, "Optimizer")
      .def(
          "apply_gradients",
          [](Optimizer& o, py::iterable grads_and_vars) {
            std::vector<Variable> vars;
            std::vector<Tensor> grads;
            for (py::handle pair : grads_and_vars) {
              py::tuple gv = py::reinterpret_borrow<py::object>(pair).cast<py::tuple>();
              if (gv.size() != 2)
                throw py::value_error("apply_gradients takes (gradient, variable) pairs");
              grads.push_back(gv[0].is_none() ? Tensor() : gv[0].cast<TensorArg>().tensor);
              vars.push_back(gv[1].cast<Variable>());
            }
            py::gil_scoped_release nogil;
            o.apply_gradients(vars, grads);
          },
          py::arg("grads_and_vars"))
      .def_property("iterations", &Optimizer::iterations, &Optimizer::set_iterations)
      .def_property("learning_rate", &Optimizer::learning_rate, &Optimizer::set_learning_rate)
      .def_property_readonly("name", &Optimizer::name)
      .def_property_readonly("variables", &Optimizer::variables)
      .def(
          "slot",
          [](const Optimizer& o, const Variable& v, const std::string& s) -> py::object {
            Variable r = o.slot(v, s);
            return r.defined() ? py::cast(r) : py::none();
          },
          py::arg("variable"), py::arg("slot"));
  py::class_<SGD, Optimizer, std::shared_ptr<SGD>>(m, "SGD").def(
      py::init<double, double, bool>(), py::arg("learning_rate") = 0.01, py::arg("momentum") = 0.0,
      py::arg("nesterov") = false);
  py::class_<Adam, Optimizer, std::shared_ptr<Adam>>(m, "Adam").def(
      py::init<double, double, double, double>(), py::arg("learning_rate") = 0.001,
      py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7);
  py::class_<AdamW, Adam, std::shared_ptr<AdamW>>(m, "AdamW")
      .def(py::init<double, double, double, double, double>(), py::arg("learning_rate") = 0.001,
           py::arg("weight_decay") = 0.004, py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999,
           py::arg("epsilon") = 1e-7);
  py::class_<RMSprop, Optimizer, std::shared_ptr<RMSprop>>(m, "RMSprop")
      .def(py::init<double, double, double, double>(), py::arg("learning_rate") = 0.001,
           py::arg("rho") = 0.9, py::arg("momentum") = 0.0, py::arg("epsilon") = 1e-7);

  // ---- losses (Keras' defaults: from_logits=False)
  py::class_<Loss, std::shared_ptr<Loss>>(m, "Loss")
      .def(
          "__call__",
          [](const Loss& l, const TensorArg& y_true, const TensorArg& y_pred) {
            py::gil_scoped_release nogil;
            return l(y_true.tensor, y_pred.tensor);
          },
          py::arg("y_true"), py::arg("y_pred"))
      .def_property_readonly("name", &Loss::name);
  py::class_<SparseCategoricalCrossentropy, Loss, std::shared_ptr<SparseCategoricalCrossentropy>>(
      m, "SparseCategoricalCrossentropy")
      .def(py::init<bool>(), py::arg("from_logits") = false)
      .def_property_readonly("from_logits", &SparseCategoricalCrossentropy::from_logits);
  py::class_<MeanSquaredError, Loss, std::shared_ptr<MeanSquaredError>>(m, "MeanSquaredError")
      .def(py::init<>());
  py::class_<BinaryCrossentropy, Loss, std::shared_ptr<BinaryCrossentropy>>(m, "BinaryCrossentropy")
      .def(py::init<bool>(), py::arg("from_logits") = false)
      .def_property_readonly("from_logits", &BinaryCrossentropy::from_logits);
  m.def(
      "sparse_categorical_crossentropy",
      [](const TensorArg& t, const TensorArg& p, bool from_logits) {
        return sparse_categorical_crossentropy(t.tensor, p.tensor, from_logits);
      },
      py::arg("y_true"), py::arg("y_pred"), py::arg("from_logits") = false,
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "mean_squared_error",
      [](const TensorArg& t, const TensorArg& p) { return mean_squared_error(t.tensor, p.tensor); },
      py::arg("y_true"), py::arg("y_pred"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "binary_crossentropy",
      [](const TensorArg& t, const TensorArg& p, bool from_logits) {
        return binary_crossentropy(t.tensor, p.tensor, from_logits);
      },
      py::arg("y_true"), py::arg("y_pred"), py::arg("from_logits") = false,
      py::call_guard<py::gil_scoped_release>());

  // ---- callbacks
  py::class_<Callback, PyCallback, std::shared_ptr<Callback>>(m, "Callback", R"doc(
Subclass and define on_train_begin(logs), on_epoch_begin(epoch, logs), on_epoch_end(epoch,
logs), on_train_end(logs); set self.stop_training = True to stop after this epoch.)doc")
      .def(py::init<>())
      .def_readwrite("stop_training", &Callback::stop_training)
      .def_property_readonly("model", [](const Callback& c) -> py::object {
        return c.model() ? py::cast(c.model(), py::return_value_policy::reference) : py::none();
      });
  py::class_<EarlyStopping, Callback, std::shared_ptr<EarlyStopping>>(m, "EarlyStopping")
      .def(py::init([](std::string monitor, double min_delta, int patience, const std::string& mode,
                       bool restore) {
             return std::make_shared<EarlyStopping>(std::move(monitor), patience, min_delta,
                                                    mode_of(mode), restore);
           }),
           py::arg("monitor") = "val_loss", py::arg("min_delta") = 0.0, py::arg("patience") = 0,
           py::arg("mode") = "auto", py::arg("restore_best_weights") = false)
      .def_property_readonly("stopped_epoch", &EarlyStopping::stopped_epoch)
      .def_property_readonly("best_epoch", &EarlyStopping::best_epoch)
      .def_property_readonly("best", &EarlyStopping::best);
  py::class_<CSVLogger, Callback, std::shared_ptr<CSVLogger>>(m, "CSVLogger")
      .def(py::init([](std::string filename, std::string separator, bool append) {
             if (separator.size() != 1) throw py::value_error("separator must be one character");
             return std::make_shared<CSVLogger>(std::move(filename), append, separator[0]);
           }),
           py::arg("filename"), py::arg("separator") = ",", py::arg("append") = false);

  // ---- data
  py::class_<Dataset>(m, "Dataset", "kiln::Dataset over in-memory examples (x, y).")
      .def(py::init(
               [](const TensorArg& x, const TensorArg& y) { return Dataset(x.tensor, y.tensor); }),
           py::arg("x"), py::arg("y"))
      .def("shuffle", &Dataset::shuffle, py::arg("seed"))
      .def("batch", &Dataset::batch, py::arg("batch_size"), py::arg("drop_remainder") = false)
      .def("shard", &Dataset::shard, py::arg("num_shards"), py::arg("index"))
      .def("normalize", &Dataset::normalize, py::arg("mean"), py::arg("stddev"))
      .def(
          "map",
          [](const Dataset& d, py::function fn) {
            auto f = gil_safe(std::move(fn));
            return d.map([f](Batch b) {
              py::gil_scoped_acquire gil;
              py::tuple r = (*f)(b.x, b.y).cast<py::tuple>();
              if (r.size() != 2)
                throw py::value_error("Dataset.map: the function must return (x, y)");
              return Batch{r[0].cast<TensorArg>().tensor, r[1].cast<TensorArg>().tensor};
            });
          },
          py::arg("map_func"), R"doc(
fn(x, y) -> (x, y) per batch, after batching (on the prefetch thread when prefetching; it takes
the GIL there). Exceptions reach the consumer.)doc")
      .def("prefetch", &Dataset::prefetch, py::arg("buffer_size"))
      .def_property_readonly("num_examples", &Dataset::num_examples)
      .def("__len__", &Dataset::num_batches)
      .def(
          "epoch",
          [](const Dataset& d, int64_t e) {
            return PyDatasetIterator{std::make_unique<DatasetIterator>(d.begin_epoch(e))};
          },
          py::arg("epoch") = 0, "Iterates the batches (x, y) of epoch `epoch`.")
      .def("__iter__", [](const Dataset& d) {
        return PyDatasetIterator{std::make_unique<DatasetIterator>(d.begin_epoch(0))};
      });
  py::class_<PyDatasetIterator>(m, "DatasetIterator")
      .def(
          "__iter__", [](PyDatasetIterator& it) -> PyDatasetIterator& { return it; },
          py::return_value_policy::reference_internal)
      .def("__next__", [](PyDatasetIterator& it) {
        std::optional<Batch> b;
        {
          py::gil_scoped_release nogil;
          b = it.it->next();
        }
        if (!b) throw py::stop_iteration();
        return py::make_tuple(b->x, b->y);
      });
  m.def(
      "load_fashion_mnist",
      [](const std::string& dir) {
        FashionMnist d;
        {
          py::gil_scoped_release nogil;
          d = load_fashion_mnist(dir);
        }
        return py::make_tuple(py::make_tuple(d.train_images, d.train_labels),
                              py::make_tuple(d.test_images, d.test_labels));
      },
      py::arg("path") = "", R"doc(
((x_train, y_train), (x_test, y_test)) as kiln tensors: images float32 [N, 28, 28, 1] in
[0, 1], labels int32 (kiln's loader; the files of Debian's dataset-fashion-mnist).)doc");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("num_threads", &num_threads);
  // The global dtype policy (kiln/dtype_policy.h); kiln.keras.mixed_precision wraps these.
  m.def(
      "_set_dtype_policy", [](const std::string& name) { set_dtype_policy(name); },
      py::arg("name"));
  m.def("_dtype_policy", [] { return std::string(dtype_policy()); });
  m.def("_bf16_unsupported_reason", &bf16_unsupported_reason);

  // ---- training loops (the package's Model.fit / evaluate / predict call these)
  m.def("_fit",
        [](Layer& model, Optimizer& opt, const Loss& loss, py::object x, py::object y, int epochs,
           int initial_epoch, int64_t batch_size, std::optional<uint64_t> shuffle_seed,
           py::object validation, py::list callbacks, bool accuracy, int verbose, bool graph) {
          FitOptions o;
          o.epochs = epochs;
          o.initial_epoch = initial_epoch;
          o.batch_size = batch_size;
          o.shuffle_seed = shuffle_seed;
          o.accuracy = accuracy;
          o.verbose = verbose;
          o.graph = graph;
          if (!validation.is_none()) o.validation = validation.cast<Dataset>();
          for (py::handle c : callbacks) o.callbacks.push_back(shared_keep<Callback>(c));
          History h;
          if (py::isinstance<Dataset>(x)) {
            Dataset d = x.cast<Dataset>();
            py::gil_scoped_release nogil;
            h = fit(model, opt, loss, d, o);
          } else {
            Tensor xt = x.cast<TensorArg>().tensor, yt = y.cast<TensorArg>().tensor;
            py::gil_scoped_release nogil;
            h = fit(model, opt, loss, xt, yt, o);
          }
          return history_dict(h);
        });
  m.def("_evaluate",
        [](Layer& model, const Loss& loss, const Dataset& data, bool accuracy, bool graph) {
          Logs logs;
          {
            py::gil_scoped_release nogil;
            logs = evaluate(model, loss, data, accuracy, graph);
          }
          return logs_dict(logs);
        });
  m.def("_predict", [](Layer& model, py::object x, int64_t batch_size, bool graph) {
    if (py::isinstance<Dataset>(x)) {
      Dataset d = x.cast<Dataset>();
      py::gil_scoped_release nogil;
      return predict(model, d, graph);
    }
    Tensor xt = x.cast<TensorArg>().tensor;
    py::gil_scoped_release nogil;
    return predict(model, xt, batch_size, graph);
  });
}

}  // namespace kiln::python
