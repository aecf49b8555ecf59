// Model files, frozen graphs, ONNX and .npy from Python: thin wrappers of kiln/model_file.h,
// kiln/graph_model.h, kiln/onnx.h and kiln/io.h. Keras' names: kiln.keras.models.save_model /
// load_model; a file without a model config loads as a GraphModel (it predicts, no training).
#include "common.h"
#include "kiln/graph_model.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/onnx.h"

namespace kiln::python {

namespace {

py::list specs_of(const std::vector<GraphPort>& ports) {
  py::list out;
  for (const GraphPort& p : ports) {
    py::list dims;
    for (int64_t d : p.spec.dims)
      dims.append(d == kUnknownDim ? py::object(py::none()) : py::int_(d));
    out.append(py::make_tuple(p.name, py::tuple(dims), std::string(dtype_name(p.spec.dtype))));
  }
  return out;
}

}  // namespace

void bind_model_files(py::module_& m) {
  py::class_<GraphModel>(m, "GraphModel", R"doc(
A frozen inference graph (kiln.freeze, a model file without a config, kiln.import_onnx): call it
on tensors or NumPy arrays; one trace serves every batch size.)doc")
      .def("__call__",
           [](const GraphModel& g, py::args args) {
             std::vector<Tensor> in;
             for (py::handle a : args) in.push_back(to_tensor(a));
             std::vector<Tensor> out;
             {
               py::gil_scoped_release release;
               out = g(in);
             }
             if (out.size() == 1) return py::cast(out[0]);
             return py::cast(out);
           })
      .def_property_readonly("name", &GraphModel::name)
      .def_property_readonly(
          "inputs", [](const GraphModel& g) { return specs_of(g.inputs()); },
          "[(name, shape with None for unknown dims, dtype)]")
      .def_property_readonly("outputs", [](const GraphModel& g) { return specs_of(g.outputs()); })
      .def("graph_text", &GraphModel::graph_text, py::arg("fused") = false)
      .def("summary", [](const GraphModel& g) { return g.summary().to_text(); });

  m.def(
      "save_model",
      [](Layer& model, const std::string& path, std::shared_ptr<Optimizer> optimizer, bool frozen,
         std::map<std::string, std::string> training) {
        SaveModelOptions o;
        o.optimizer = optimizer.get();
        o.frozen = frozen;
        o.training = std::move(training);
        py::gil_scoped_release release;
        save_model(model, path, o);
      },
      py::arg("model"), py::arg("path"), py::arg("optimizer") = nullptr, py::arg("frozen") = true,
      py::arg("training") = std::map<std::string, std::string>{}, R"doc(
Writes the model (config, weights, optimizer state, frozen graph) to one .kiln file; `training`
is free-form metadata (str -> str; kiln.keras keeps compile()'s settings there).)doc");
  m.def(
      "load_model",
      [](const std::string& path) -> py::object {
        LoadedModel loaded;
        {
          py::gil_scoped_release release;
          loaded = load_model(path);
        }
        if (loaded.model) return py::cast(loaded.model);
        return py::cast(loaded.graph);
      },
      py::arg("path"),
      "The model rebuilt from a .kiln file, or its GraphModel when the file has no config.");
  m.def(
      "_load_model_parts",
      [](const std::string& path) {
        LoadedModel loaded;
        {
          py::gil_scoped_release release;
          loaded = load_model(path);
        }
        py::object optimizer = py::none();
        if (loaded.optimizer)
          optimizer = py::cast(std::shared_ptr<Optimizer>(std::move(loaded.optimizer)));
        py::object model = loaded.model ? py::cast(loaded.model) : py::cast(loaded.graph);
        return py::make_tuple(model, optimizer, loaded.info.training);
      },
      py::arg("path"),
      "(model or GraphModel, its optimizer or None, the training metadata) from one load.");
  m.def(
      "load_optimizer",
      [](const std::string& path) -> py::object {
        LoadedModel loaded;
        {
          py::gil_scoped_release release;
          loaded = load_model(path);
        }
        if (!loaded.optimizer) return py::none();
        return py::cast(std::shared_ptr<Optimizer>(std::move(loaded.optimizer)));
      },
      py::arg("path"),
      "The optimizer saved in a .kiln file (None if none); its slots are tied "
      "to a model loaded by the same call only, so use it for inspection.");
  m.def(
      "freeze", [](Layer& model) { return freeze(model); }, py::arg("model"),
      py::call_guard<py::gil_scoped_release>(),
      "The model's inference graph with variables folded to constants and BatchNorm folded.");
  m.def(
      "export_onnx",
      [](py::object model, const std::string& path, int opset) {
        OnnxExportOptions o;
        o.opset = opset;
        if (py::isinstance<GraphModel>(model)) {
          const GraphModel& g = model.cast<const GraphModel&>();
          py::gil_scoped_release release;
          export_onnx(g, path, o);
        } else {
          Layer& l = model.cast<Layer&>();
          py::gil_scoped_release release;
          export_onnx(l, path, o);
        }
      },
      py::arg("model"), py::arg("path"), py::arg("opset") = 13);
  m.def(
      "import_onnx", [](const std::string& path) { return import_onnx(path); }, py::arg("path"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "save_npy",
      [](const std::string& path, py::handle t) {
        Tensor x = to_tensor(t);
        py::gil_scoped_release release;
        save_npy(path, x);
      },
      py::arg("path"), py::arg("tensor"));
  m.def("load_npy", &load_npy, py::arg("path"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace kiln::python
