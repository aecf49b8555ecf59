// The commands that read model files: eval, predict, summary, freeze. A model file's frozen
// graph runs prediction (no model code needed); a file without one is frozen in memory first.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "cli/commands.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/onnx.h"

namespace kiln::cli {
namespace {

bool is_onnx(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".onnx") == 0;
}

// A model file, or an ONNX model imported as a graph-only model.
LoadedModel open_model(const std::string& path) {
  if (!is_onnx(path)) return load_model(path);
  LoadedModel m;
  m.graph = import_onnx(path);
  m.info.model_name = m.graph.name();
  m.info.class_name = "ONNX model";
  m.info.has_graph = true;
  for (const GraphPort& p : m.graph.inputs()) m.info.input_signature.push_back(p.spec);
  return m;
}

// "input: [?, 28, 28, 1] float32".
std::string port_str(const GraphPort& p) {
  std::string s = p.name + ": [";
  for (size_t d = 0; d < p.spec.dims.size(); ++d) {
    s += (d ? ", " : "") +
         (p.spec.dims[d] == kUnknownDim ? std::string("?") : std::to_string(p.spec.dims[d]));
  }
  return s + "] " + std::string(dtype_name(p.spec.dtype));
}

// The file's frozen graph, or the model frozen now.
GraphModel inference_graph(LoadedModel& m) {
  if (!m.graph.empty()) return m.graph;
  return freeze(*m.model);
}

// Runs `g` over `inputs` in chunks of `batch` rows along dim 0 (all inputs share it) and
// returns the outputs joined along dim 0.
std::vector<Tensor> run_batched(const GraphModel& g, const std::vector<Tensor>& inputs,
                                int64_t batch) {
  const int64_t n = inputs.empty() || inputs[0].rank() == 0 ? 1 : inputs[0].dim(0);
  for (const Tensor& t : inputs) {
    if (t.rank() == 0 || t.dim(0) != n) {
      throw ShapeError("predict: every input needs the same number of rows (dim 0): " +
                       to_string(inputs[0].shape()) + " and " + to_string(t.shape()));
    }
  }
  std::vector<Tensor> results;
  for (int64_t start = 0; start < n || (n == 0 && start == 0); start += batch) {
    const int64_t rows = std::min(batch, n - start);
    std::vector<Tensor> chunk;
    for (const Tensor& t : inputs) chunk.push_back(rows == n ? t : t.rows(start, start + rows));
    std::vector<Tensor> out = g(chunk);
    if (results.empty()) {
      for (const Tensor& o : out) {
        Shape s = o.shape();
        if (s.rank() == 0 || s[0] != rows) {
          throw ShapeError("predict: output shape " + to_string(s) +
                           " does not follow the input's rows; use --batch-size with all rows");
        }
        s[0] = n;
        results.push_back(empty(s, o.dtype()));
      }
    }
    for (size_t k = 0; k < out.size(); ++k) {
      const size_t row_bytes = out[k].nbytes() / static_cast<size_t>(std::max<int64_t>(rows, 1));
      std::memcpy(static_cast<char*>(results[k].raw_data()) + row_bytes * start, out[k].raw_data(),
                  out[k].nbytes());
    }
    if (n == 0) break;
  }
  return results;
}

// --input values: "FILE" in the model's input order, or "NAME=FILE".
std::vector<Tensor> read_inputs(const GraphModel& g, const std::vector<std::string>& args) {
  const std::vector<GraphPort>& ports = g.inputs();
  if (args.size() != ports.size()) {
    std::string names;
    for (const GraphPort& p : ports) names += (names.empty() ? "" : ", ") + p.name;
    throw ValueError("predict: the model takes " + std::to_string(ports.size()) + " input" +
                     (ports.size() == 1 ? "" : "s") + " (" + names + "), got " +
                     std::to_string(args.size()) + " --input");
  }
  std::vector<Tensor> inputs(ports.size());
  for (size_t k = 0; k < args.size(); ++k) {
    std::string path = args[k];
    size_t slot = k;
    const size_t eq = path.find('=');
    if (eq != std::string::npos && path.compare(path.size() - 4, 4, ".npy") == 0 &&
        path.substr(0, eq).find('/') == std::string::npos) {
      const std::string name = path.substr(0, eq);
      slot = ports.size();
      for (size_t p = 0; p < ports.size(); ++p) {
        if (ports[p].name == name) slot = p;
      }
      if (slot == ports.size()) {
        throw ValueError("predict: the model has no input named '" + name + "'");
      }
      path = path.substr(eq + 1);
    }
    if (inputs[slot].defined()) {
      throw ValueError("predict: input '" + ports[slot].name + "' is given twice");
    }
    Tensor t = load_npy(path);
    if (t.dtype() != ports[slot].spec.dtype) {
      throw DTypeError("predict: " + path + " holds " + std::string(dtype_name(t.dtype())) +
                       " but input '" + ports[slot].name + "' takes " +
                       std::string(dtype_name(ports[slot].spec.dtype)));
    }
    inputs[slot] = t;
  }
  return inputs;
}

std::string argmax_preview(const Tensor& logits, int64_t rows) {
  std::string s;
  const Tensor f = logits.dtype() == float32 ? logits : cast(logits, float32);
  const int64_t n = std::min(rows, f.dim(0)), c = f.numel() / std::max<int64_t>(f.dim(0), 1);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = f.data<float>() + i * c;
    int64_t best = 0;
    for (int64_t k = 1; k < c; ++k) best = r[k] > r[best] ? k : best;
    s += (i ? " " : "") + std::to_string(best);
  }
  return s;
}

}  // namespace

XY load_xy(const std::string& x_path, const std::string& y_path) {
  if (x_path.empty() != y_path.empty()) {
    throw ValueError("--x and --y go together: give both .npy files or neither");
  }
  XY d{load_npy(x_path), load_npy(y_path)};
  if (!is_floating(d.x.dtype())) {
    throw DTypeError("--x: " + x_path + " holds " + std::string(dtype_name(d.x.dtype())) +
                     "; images must be float32");
  }
  if (d.x.dtype() != float32) d.x = cast(d.x, float32);
  if (is_floating(d.y.dtype()) || d.y.dtype() == DType::kBool) {
    throw DTypeError("--y: " + y_path + " holds " + std::string(dtype_name(d.y.dtype())) +
                     "; labels must be integer class indices");
  }
  if (d.y.dtype() != DType::kInt32) d.y = cast(d.y, DType::kInt32);
  if (d.x.rank() < 2 || d.y.rank() != 1 || d.x.dim(0) != d.y.dim(0)) {
    throw ShapeError("--x " + to_string(d.x.shape()) + " and --y " + to_string(d.y.shape()) +
                     ": need x [N, ...] and y [N] with the same N");
  }
  return d;
}

int eval(const Options& o, std::ostream& out) {
  apply_threads(o.threads);
  Tensor x, y;
  if (!o.x.empty()) {
    XY d = load_xy(o.x, o.y);
    x = d.x;
    y = d.y;
  } else {
    FashionMnist d = load_fashion_mnist(o.data);
    x = d.test_images;
    y = d.test_labels;
  }
  Logs logs;
  if (o.file.empty()) {  // --model mlp|cnn --weights FILE
    auto model = o.model == "cnn" ? make_cnn() : make_mlp();
    load_weights(*model, o.weights);
    SparseCategoricalCrossentropy loss;
    logs = evaluate(*model, loss, Dataset(x, y).batch(o.batch_size), true, o.graph);
  } else {
    LoadedModel m = open_model(o.file);
    GraphModel g = inference_graph(m);
    Tensor logits = run_batched(g, {x}, o.batch_size)[0];
    SparseCategoricalCrossentropy loss;
    logs["loss"] = loss(y, logits).item<double>();
    Accuracy acc;
    acc.update(y, logits);
    logs["accuracy"] = acc.result();
  }
  char line[160];
  std::snprintf(line, sizeof line, "test loss %.4f, test accuracy %.4f (%lld examples)\n",
                logs["loss"], logs["accuracy"], static_cast<long long>(x.dim(0)));
  out << line;
  return 0;
}

int predict(const Options& o, std::ostream& out) {
  apply_threads(o.threads);
  LoadedModel m = open_model(o.file);
  GraphModel g = inference_graph(m);
  std::vector<Tensor> inputs = read_inputs(g, o.inputs);
  std::vector<Tensor> results = run_batched(g, inputs, o.batch_size);
  if (!o.outputs.empty() && o.outputs.size() != results.size()) {
    throw ValueError("predict: the model has " + std::to_string(results.size()) + " outputs, got " +
                     std::to_string(o.outputs.size()) + " --output");
  }
  for (size_t k = 0; k < results.size(); ++k) {
    const GraphPort& port = g.outputs()[k];
    out << port.name << ": " << to_string(results[k].shape()) << " "
        << dtype_name(results[k].dtype());
    if (!o.outputs.empty()) {
      save_npy(o.outputs[k], results[k]);
      out << " written to " << o.outputs[k];
    } else if (results[k].rank() == 2 && is_floating(results[k].dtype())) {
      out << "; argmax of the first rows: " << argmax_preview(results[k], 10);
    }
    out << "\n";
  }
  return 0;
}

int summary(const Options& o, std::ostream& out) {
  if (o.file.empty()) {
    auto model = o.model == "cnn" ? make_cnn() : make_mlp();
    out << model->summary(Shape{28, 28, 1});
    return 0;
  }
  LoadedModel m = open_model(o.file);
  const ModelFileInfo& i = m.info;
  if (is_onnx(o.file)) {
    out << o.file << ": ONNX model '" << i.model_name << "', imported as a kiln graph\n";
    for (const GraphPort& p : m.graph.inputs()) out << "input  " << port_str(p) << "\n";
    for (const GraphPort& p : m.graph.outputs()) out << "output " << port_str(p) << "\n";
    out << "graph: " << m.graph.summary().to_text();
    return 0;
  }
  out << o.file << ": kiln model file, format " << i.format_version << " (kiln " << i.kiln_version
      << "), model '" << i.model_name << "' (" << i.class_name << ")\n";
  out << "contains: " << (i.has_config ? "config + weights" : "no config (inference only)")
      << (i.has_optimizer
              ? ", optimizer state (" + std::to_string(i.optimizer_iterations) + " steps)"
              : "")
      << (i.has_graph ? ", frozen graph" : "") << "\n";
  for (const auto& [k, v] : i.training) out << "training " << k << ": " << v << "\n";
  if (m.model) {
    std::vector<int64_t> dims = i.input_signature[0].dims;
    dims.erase(dims.begin());
    if (auto* model = dynamic_cast<Model*>(m.model.get())) out << model->summary(Shape(dims));
  }
  if (!m.graph.empty()) out << "frozen graph: " << m.graph.summary().to_text();
  return 0;
}

int freeze_file(const Options& o, std::ostream& out) {
  LoadedModel m = open_model(o.file);
  GraphModel g = m.model ? freeze(*m.model) : m.graph;
  save_model(g, o.out, m.info.training);
  GraphSummary s = g.summary();
  out << "frozen " << o.file << " -> " << o.out << ": " << s.nodes << " nodes, " << s.parameters
      << " parameters, " << s.flops_per_sample << " FLOPs per sample\n";
  return 0;
}

int export_file(const Options& o, std::ostream& out) {
  LoadedModel m = open_model(o.file);
  GraphModel g = inference_graph(m);
  OnnxExportOptions eo;
  eo.opset = o.opset;
  export_onnx(g, o.onnx, eo);
  out << "exported " << o.file << " -> " << o.onnx << " (opset " << o.opset << ")\n";
  return 0;
}

int import_file(const Options& o, std::ostream& out) {
  GraphModel g = import_onnx(o.file);
  save_model(g, o.out, {{"imported_from", o.file}});
  GraphSummary s = g.summary();
  out << "imported " << o.file << " -> " << o.out << ": " << s.nodes << " nodes, " << s.parameters
      << " parameters, " << s.flops_per_sample << " FLOPs per sample\n";
  return 0;
}

}  // namespace kiln::cli
