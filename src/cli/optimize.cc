// `kiln optimize`: prunes and/or quantizes a model file (.kiln) or an ONNX model and prints,
// before and after, what the change bought on this CPU: parameters, bytes on disk, FLOPs per
// sample, accuracy, latency at batch 1 and 64 (p50/p99, both models timed in turn so load from
// other processes hits both alike), peak memory; then the per-layer tables.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "cli/commands.h"
#include "kiln/compress.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/model_file.h"
#include "kiln/nn.h"
#include "kiln/onnx.h"

namespace kiln::cli {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

bool is_onnx(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".onnx") == 0;
}

// The data the command works on: `fit` examples (fine-tuning, QAT), `calibration` inputs,
// `check` examples for the accuracy budget, and `test` examples for the reported accuracy.
struct OptimizeData {
  Tensor fit_x, fit_y, calibration, check_x, check_y, test_x, test_y;
  std::string description;
};

OptimizeData load_data(const Options& o) {
  OptimizeData d;
  if (!o.x.empty()) {
    XY xy = load_xy(o.x, o.y);
    d.fit_x = d.check_x = d.test_x = xy.x;
    d.fit_y = d.check_y = d.test_y = xy.y;
    d.calibration = xy.x.rows(0, std::min<int64_t>(o.calibrate, xy.x.dim(0)));
    d.description = o.x + " (" + std::to_string(xy.x.dim(0)) +
                    " examples; also the calibration"
                    " and fine-tuning data)";
    return d;
  }
  FashionMnist f = load_fashion_mnist(o.data);
  const int64_t n = f.train_images.dim(0), held = std::min<int64_t>(5000, n / 10);
  d.fit_x = f.train_images.rows(0, n - held);
  d.fit_y = f.train_labels.rows(0, n - held);
  d.check_x = f.train_images.rows(n - held, n);
  d.check_y = f.train_labels.rows(n - held, n);
  d.calibration = f.train_images.rows(0, std::min<int64_t>(o.calibrate, n - held));
  d.test_x = f.test_images;
  d.test_y = f.test_labels;
  d.description = "Fashion-MNIST test set (" + std::to_string(d.test_x.dim(0)) + " images)";
  return d;
}

double accuracy_percent(const GraphModel& g, const Tensor& x, const Tensor& y) {
  int64_t right = 0;
  for (int64_t b = 0; b < x.dim(0); b += 256) {
    const int64_t e = std::min(x.dim(0), b + 256);
    const Tensor pred = argmax(g(x.rows(b, e)), -1);
    right +=
        sum(cast(equal(pred, cast(y.rows(b, e), pred.dtype())), DType::kInt64)).item<int64_t>();
  }
  return x.dim(0) ? 100.0 * static_cast<double>(right) / static_cast<double>(x.dim(0)) : 0.0;
}

struct Figures {
  int64_t parameters = 0, bytes = 0, flops = 0, peak_bytes = 0;
  double accuracy = 0;
  double p50_ms_1 = 0, p99_ms_1 = 0, p50_ms_64 = 0, p99_ms_64 = 0;
};

// A temporary path in the system's temp directory, removed when this goes.
class TempFile {
 public:
  explicit TempFile(const std::string& tag)
      : path_((std::filesystem::temp_directory_path() /
               ("kiln_optimize_" + std::to_string(::getpid()) + "_" + tag + ".kiln"))
                  .string()) {}
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Counts, bytes of the graph-only model file, and the peak memory of one batch-64 call: the
// constants, the executor's arena (measured on a fresh copy of the graph, so only that plan
// counts) and the batch's input and output.
void measure_static(const GraphModel& g, const std::string& tag, const Tensor& sample, Figures& f) {
  const GraphSummary s = g.summary();
  f.parameters = s.parameters;
  f.flops = s.flops_per_sample;
  TempFile file(tag);
  save_model(g, file.path());
  f.bytes = static_cast<int64_t>(std::filesystem::file_size(file.path()));
  const GraphModel fresh = load_model(file.path()).graph;
  const Tensor out = fresh(sample);
  f.peak_bytes = s.parameter_bytes + static_cast<int64_t>(fresh.cache_info().arena_bytes) +
                 static_cast<int64_t>(sample.nbytes() + out.nbytes());
}

double ms_since(Clock::time_point a) {
  return std::chrono::duration<double, std::milli>(Clock::now() - a).count();
}

// Latency of the models in turn, call by call, at batch 1 (`n1` calls each) and 64 (`n64`).
void measure_latency(const std::vector<const GraphModel*>& gs, const Tensor& x,
                     std::vector<Figures*> figures, int n1, int n64) {
  for (const int64_t batch : {int64_t{1}, int64_t{64}}) {
    const int calls = batch == 1 ? n1 : n64;
    const int64_t rows = std::min(batch, x.dim(0));
    std::vector<Tensor> inputs;
    for (int64_t b = 0; b + rows <= x.dim(0) && inputs.size() < 64; b += rows) {
      inputs.push_back(x.rows(b, b + rows).clone());
    }
    Tensor out[1];
    for (const GraphModel* g : gs) {
      for (int i = 0; i < 10; ++i) g->call({&inputs[i % inputs.size()], 1}, out);
    }
    std::vector<std::vector<double>> ms(gs.size());
    for (int i = 0; i < calls; ++i) {
      for (size_t m = 0; m < gs.size(); ++m) {
        const auto a = Clock::now();
        gs[m]->call({&inputs[i % inputs.size()], 1}, out);
        ms[m].push_back(ms_since(a));
      }
    }
    for (size_t m = 0; m < gs.size(); ++m) {
      std::sort(ms[m].begin(), ms[m].end());
      const double p50 = ms[m][ms[m].size() / 2], p99 = ms[m][ms[m].size() * 99 / 100];
      (batch == 1 ? figures[m]->p50_ms_1 : figures[m]->p50_ms_64) = p50;
      (batch == 1 ? figures[m]->p99_ms_1 : figures[m]->p99_ms_64) = p99;
    }
  }
}

json to_json(const Figures& f) {
  return {{"parameters", f.parameters},    {"bytes", f.bytes},
          {"flops_per_sample", f.flops},   {"accuracy", f.accuracy},
          {"batch1_p50_ms", f.p50_ms_1},   {"batch1_p99_ms", f.p99_ms_1},
          {"batch64_p50_ms", f.p50_ms_64}, {"batch64_p99_ms", f.p99_ms_64},
          {"peak_bytes", f.peak_bytes}};
}

std::string table(const Figures& a, const Figures& b) {
  std::string s = "                         before        after    after/before\n";
  char line[160];
  auto row = [&](const char* name, double x, double y, const char* fmt) {
    char vx[32], vy[32];
    std::snprintf(vx, sizeof vx, fmt, x);
    std::snprintf(vy, sizeof vy, fmt, y);
    std::snprintf(line, sizeof line, "%-20s %12s %12s %10.3fx\n", name, vx, vy, x ? y / x : 0.0);
    s += line;
  };
  row("parameters", a.parameters, b.parameters, "%.0f");
  row("bytes on disk", a.bytes, b.bytes, "%.0f");
  row("FLOPs per sample", a.flops, b.flops, "%.0f");
  std::snprintf(line, sizeof line, "%-20s %12.2f %12.2f %+10.2f points\n", "accuracy (%)",
                a.accuracy, b.accuracy, b.accuracy - a.accuracy);
  s += line;
  row("batch 1 p50 (ms)", a.p50_ms_1, b.p50_ms_1, "%.4f");
  row("batch 1 p99 (ms)", a.p99_ms_1, b.p99_ms_1, "%.4f");
  row("batch 64 p50 (ms)", a.p50_ms_64, b.p50_ms_64, "%.3f");
  row("batch 64 p99 (ms)", a.p99_ms_64, b.p99_ms_64, "%.3f");
  row("peak memory (bytes)", a.peak_bytes, b.peak_bytes, "%.0f");
  return s;
}

// Fine-tuning and quantization-aware training: Adam at --lr, the same fit as `kiln train`.
void train_quietly(Layer& model, const Options& o, int epochs, const OptimizeData& data) {
  if (epochs <= 0) return;
  Adam opt(o.lr);
  SparseCategoricalCrossentropy loss;
  FitOptions fo;
  fo.epochs = epochs;
  fo.batch_size = o.batch_size;
  fo.verbose = 0;
  fo.shuffle_seed = o.seed;
  fit(model, opt, loss, data.fit_x, data.fit_y, fo);
}

Calibration parse_calibration(const std::string& name) {
  if (name == "percentile") return Calibration::kPercentile;
  if (name == "mse") return Calibration::kMse;
  return Calibration::kMinMax;
}

}  // namespace

int optimize(const Options& o, std::ostream& out) {
  apply_threads(o.threads);
  if (o.qat_epochs > 0 && !o.int8) {
    throw ValueError("optimize: --qat-epochs trains for int8: give --int8 too");
  }
  if (o.prune < 0 && !o.int8) {
    throw ValueError("optimize: nothing to do: give --prune FRACTION and/or --int8");
  }
  LoadedModel m;
  if (is_onnx(o.file)) {
    m.graph = import_onnx(o.file);
  } else {
    m = load_model(o.file);
  }
  const GraphModel before = m.graph.empty() ? freeze(*m.model) : m.graph;
  if (before.inputs().size() != 1 || before.outputs().size() != 1) {
    throw ValueError("optimize: " + o.file + " has " + std::to_string(before.inputs().size()) +
                     " inputs and " + std::to_string(before.outputs().size()) +
                     " outputs; kiln optimize takes single-input, single-output models");
  }
  OptimizeData data = load_data(o);

  json report;
  std::string text;
  std::shared_ptr<Layer> kept_model;  // the pruned model, saved with its config when float
  GraphModel after = before;
  std::shared_ptr<Sequential> sequential;  // the model that --prune / --qat-epochs rewrite
  if (o.prune >= 0 || o.qat_epochs > 0) {
    const char* flag = o.prune >= 0 ? "--prune" : "--qat-epochs";
    if (!m.model) {
      throw ValueError("optimize: " + std::string(flag) + " needs the model's architecture; " +
                       o.file + " holds only a graph (use the model file it was made from)");
    }
    sequential = std::dynamic_pointer_cast<Sequential>(m.model);
    if (!sequential) {
      throw ValueError("optimize: " + std::string(flag) + " takes Sequential models; " + o.file +
                       " holds a " + m.info.class_name);
    }
  }
  if (o.prune >= 0) {
    PruneOptions po;
    po.fraction = o.prune;
    po.norm = o.prune_norm == "l2" ? PruneNorm::kL2 : PruneNorm::kL1;
    PruneReport pr;
    std::shared_ptr<Sequential> pruned = prune_structured(*sequential, po, &pr);
    train_quietly(*pruned, o, o.finetune_epochs, data);
    kept_model = sequential = pruned;
    after = freeze(*pruned);
    text += "pruning (" + std::string(o.prune_norm == "l2" ? "L2" : "L1") + " norm, " +
            std::to_string(o.finetune_epochs) + " fine-tuning epoch" +
            (o.finetune_epochs == 1 ? "" : "s") + "):\n" + pr.to_text();
    report["pruning"] = {{"fraction", o.prune},
                         {"norm", o.prune_norm},
                         {"finetune_epochs", o.finetune_epochs},
                         {"params_before", pr.params_before},
                         {"params_after", pr.params_after}};
  }
  if (o.int8) {
    QuantizeOptions qo;
    qo.calibration = parse_calibration(o.calibration);
    qo.percentile = o.percentile;
    qo.max_drop = o.max_drop;
    qo.keep_slower_float = !o.keep_slower_int8;
    qo.validation_images = data.check_x;
    qo.validation_labels = data.check_y;
    QuantizeReport qr;
    if (o.qat_epochs > 0) {
      std::shared_ptr<Sequential> qat = quantize_aware(*sequential);
      train_quietly(*qat, o, o.qat_epochs, data);
      after = quantize_model_from_qat(*qat, data.calibration, qo, &qr);
      text += "int8 (quantization-aware training, " + std::to_string(o.qat_epochs) + " epoch" +
              (o.qat_epochs == 1 ? "" : "s") + "; ranges learned in training):\n" + qr.to_text();
    } else {
      after = quantize_model(after, data.calibration, qo, &qr);
      text += "int8 (calibrated on " + std::to_string(data.calibration.dim(0)) + " examples):\n" +
              qr.to_text();
    }
    kept_model = nullptr;  // an int8 model is a graph
    json layers = json::array();
    for (const QuantizedLayerReport& l : qr.layers) {
      layers.push_back({{"name", l.name},
                        {"int8", l.int8},
                        {"error", l.error},
                        {"float_us", l.float_us},
                        {"int8_us", l.int8_us},
                        {"reason", l.reason}});
    }
    report["int8"] = {{"calibration", qr.calibration},
                      {"weight_bits", qr.weight_bits},
                      {"layers", layers},
                      {"reverted_for_accuracy", qr.reverted_for_accuracy},
                      {"qat_epochs", o.qat_epochs}};
  }

  Figures fb, fa;
  const Tensor sample = data.test_x.rows(0, std::min<int64_t>(64, data.test_x.dim(0)));
  measure_static(before, "before", sample, fb);
  measure_static(after, "after", sample, fa);
  fb.accuracy = accuracy_percent(before, data.test_x, data.test_y);
  fa.accuracy = accuracy_percent(after, data.test_x, data.test_y);
  measure_latency({&before, &after}, data.test_x, {&fb, &fa}, o.latency_calls,
                  o.latency_calls / 8 + 5);

  // ONNX first: a model it cannot express leaves no .kiln behind either.
  if (!o.onnx.empty()) export_onnx(after, o.onnx);
  if (kept_model) {
    SaveModelOptions so;
    so.training = m.info.training;
    so.training["optimized_from"] = o.file;
    save_model(*kept_model, o.out, so);
  } else {
    std::map<std::string, std::string> training = m.info.training;
    training["optimized_from"] = o.file;
    save_model(after, o.out, training);
  }
  const int64_t out_bytes = static_cast<int64_t>(std::filesystem::file_size(o.out));

  if (o.json) {
    report["model"] = o.file;
    report["out"] = o.out;
    report["out_file_bytes"] = out_bytes;
    report["data"] = data.description;
    report["before"] = to_json(fb);
    report["after"] = to_json(fa);
    if (!o.onnx.empty()) report["onnx"] = o.onnx;
    out << report.dump(2) << "\n";
    return 0;
  }
  out << text << "\nbefore: " << o.file << ", after: " << o.out << " (" << out_bytes << " bytes"
      << (kept_model ? ", with its config: trainable" : ", graph only") << ")"
      << (o.onnx.empty() ? "" : ", ONNX: " + o.onnx) << "\naccuracy on " << data.description << "\n"
      << table(fb, fa);
  return 0;
}

}  // namespace kiln::cli
