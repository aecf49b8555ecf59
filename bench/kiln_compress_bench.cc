// int8 against float, for the mlp and the cnn on Fashion-MNIST: trains each (Adam 1e-3, batch
// 64, on the first 55,000 training images), freezes it, quantizes it (kiln::quantize_model:
// calibrated on 512 training images, per-layer check, accuracy budget on the last 5,000
// training images), then measures both on the 10,000 test images: stored bytes (the graph JSON
// plus its constants, as a model file holds them), accuracy, batch-64 throughput and batch-1
// latency (p50/p99). One JSON line per model and variant, then the per-layer table.
//   kiln_compress_bench [--models mlp,cnn] [--epochs N] [--threads T] [--calibrate N]
//                       [--calibration minmax|percentile|mse] [--max-drop P] [--data DIR]
//                       [--reps N] [--finetune-epochs N]
// Then the same after 50% structured pruning (kiln::prune_structured, fine-tuned for
// --finetune-epochs, default 1) in float and in int8.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <kiln/compress.h>
#include <kiln/data.h>
#include <kiln/kiln.h>
#include <kiln/model_file.h>
#include <kiln/nn.h>

#include "graph/graph.h"
#include "graph/serialize.h"
#include "machine.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Bytes a model file spends on the graph: its JSON and its constants' data.
int64_t stored_bytes(const kiln::GraphModel& g) {
  std::vector<std::pair<std::string, kiln::Tensor>> constants;
  const std::string json = kiln::graph::graph_to_json(g.graph(), "graph/", constants).dump();
  int64_t bytes = static_cast<int64_t>(json.size());
  for (const auto& c : constants) bytes += static_cast<int64_t>(c.second.nbytes());
  return bytes;
}

// Elements of every captured constant (int8 weights included; GraphSummary counts float only).
int64_t stored_params(const kiln::GraphModel& g) {
  int64_t n = 0;
  for (const auto& v : g.graph().values) {
    if (v.kind == kiln::graph::ValueKind::kConstant) n += v.captured.numel();
  }
  return n;
}

double accuracy(const kiln::GraphModel& g, const kiln::Tensor& x, const kiln::Tensor& y) {
  const kiln::Tensor want = kiln::cast(y, kiln::DType::kInt64);
  int64_t right = 0;
  for (int64_t b = 0; b < x.shape()[0]; b += 256) {
    const int64_t e = std::min(x.shape()[0], b + 256);
    kiln::Tensor pred = kiln::argmax(g(x.rows(b, e)), -1);
    right += kiln::sum(kiln::cast(kiln::equal(pred, want.rows(b, e)), kiln::DType::kInt64))
                 .item<int64_t>();
  }
  return 100.0 * double(right) / double(x.shape()[0]);
}

struct Timing {
  double images_per_s_64 = 0;  // best of reps over the test set in batches of 64
  double p50_ms_1 = 0, p99_ms_1 = 0;
};

// The models timed in turn within every repetition (float and int8 side by side), so load
// from other processes on a shared machine hits all of them alike.
std::vector<Timing> time_models(const std::vector<const kiln::GraphModel*>& gs,
                                const kiln::Tensor& x, int reps) {
  std::vector<Timing> t(gs.size());
  std::vector<kiln::Tensor> batches;
  for (int64_t b = 0; b + 64 <= x.shape()[0]; b += 64) batches.push_back(x.rows(b, b + 64).clone());
  kiln::Tensor out[1];
  for (const auto* g : gs)
    for (const auto& b : batches) g->call({&b, 1}, out);  // warm up
  for (int r = 0; r < reps; ++r) {
    for (size_t m = 0; m < gs.size(); ++m) {
      const auto a = Clock::now();
      for (const auto& b : batches) gs[m]->call({&b, 1}, out);
      t[m].images_per_s_64 =
          std::max(t[m].images_per_s_64, 64.0 * batches.size() / (ms_since(a) / 1e3));
    }
  }
  std::vector<std::vector<double>> lat(gs.size());
  for (const auto* g : gs) {
    const kiln::Tensor one = x.rows(0, 1).clone();
    for (int i = 0; i < 50; ++i) g->call({&one, 1}, out);
  }
  for (int i = 0; i < 400 * reps; ++i) {
    const kiln::Tensor xi = x.rows(i % x.shape()[0], i % x.shape()[0] + 1);
    for (size_t m = 0; m < gs.size(); ++m) {
      const auto a = Clock::now();
      gs[m]->call({&xi, 1}, out);
      lat[m].push_back(ms_since(a));
    }
  }
  for (size_t m = 0; m < gs.size(); ++m) {
    std::sort(lat[m].begin(), lat[m].end());
    t[m].p50_ms_1 = lat[m][lat[m].size() / 2];
    t[m].p99_ms_1 = lat[m][lat[m].size() * 99 / 100];
  }
  return t;
}

void print(const std::string& model, const char* variant, const kiln::GraphModel& g,
           const kiln::Tensor& x, const kiln::Tensor& y, const Timing& t, int threads) {
  const int64_t bytes = stored_bytes(g);
  const double acc = accuracy(g, x, y);
  std::printf(
      "{\"model\":\"%s\",\"variant\":\"%s\",\"stored_bytes\":%lld,\"params\":%lld,"
      "\"flops_per_sample\":%lld,\"test_accuracy\":%.2f,"
      "\"batch64_images_per_s\":%.0f,\"batch1_p50_ms\":%.4f,\"batch1_p99_ms\":%.4f,"
      "\"threads\":%d,\"cpu_model\":\"%s\",\"cpu_isa\":\"%s\",\"int8_vnni\":%s}\n",
      model.c_str(), variant, static_cast<long long>(bytes),
      static_cast<long long>(stored_params(g)),
      static_cast<long long>(g.summary().flops_per_sample), acc, t.images_per_s_64, t.p50_ms_1,
      t.p99_ms_1, threads, kiln_bench::cpu_model().c_str(), kiln_bench::cpu_isa(),
      kiln::int8_has_vnni() ? "true" : "false");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string models = "mlp,cnn", data_dir, calibration = "minmax";
  int epochs = 2, threads = 1, reps = 5, finetune = 1;
  int64_t calibrate = 512;
  double max_drop = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models")
      models = v;
    else if (a == "--epochs")
      epochs = std::atoi(v.c_str());
    else if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--calibrate")
      calibrate = std::atoll(v.c_str());
    else if (a == "--calibration")
      calibration = v;
    else if (a == "--max-drop")
      max_drop = std::atof(v.c_str());
    else if (a == "--data")
      data_dir = v;
    else if (a == "--reps")
      reps = std::atoi(v.c_str());
    else if (a == "--finetune-epochs")
      finetune = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "kiln_compress_bench: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::fprintf(stderr,
                 "usage: %s [--models mlp,cnn] [--epochs N] [--threads T] [--calibrate N] "
                 "[--calibration minmax|percentile|mse] [--max-drop P] [--data DIR] [--reps N] "
                 "[--finetune-epochs N]\n",
                 argv[0]);
    return 2;
  }
  try {
    kiln::set_num_threads(threads);
    kiln::set_global_seed(0);
    kiln::FashionMnist d = kiln::load_fashion_mnist(data_dir);
    const int64_t n_train = d.train_images.shape()[0], held = std::min<int64_t>(5000, n_train / 10);
    const kiln::Tensor train_x = d.train_images.rows(0, n_train - held);
    const kiln::Tensor train_y = d.train_labels.rows(0, n_train - held);
    const kiln::Tensor val_x = d.train_images.rows(n_train - held, n_train);
    const kiln::Tensor val_y = d.train_labels.rows(n_train - held, n_train);
    for (const std::string name : {"mlp", "cnn"}) {
      if (models.find(name) == std::string::npos) continue;
      auto model = name == "cnn" ? kiln::make_cnn() : kiln::make_mlp();
      kiln::Adam opt(1e-3);
      kiln::SparseCategoricalCrossentropy loss(true);
      kiln::FitOptions fo;
      fo.epochs = epochs;
      fo.batch_size = 64;
      fo.verbose = 0;
      fo.graph = true;
      const auto t0 = Clock::now();
      kiln::fit(*model, opt, loss, train_x, train_y, fo);
      std::fprintf(stderr, "%s: trained %d epoch(s) in %.1f s\n", name.c_str(), epochs,
                   ms_since(t0) / 1e3);

      kiln::GraphModel f = kiln::freeze(*model);
      kiln::QuantizeOptions o;
      o.calibration = calibration == "mse"          ? kiln::Calibration::kMse
                      : calibration == "percentile" ? kiln::Calibration::kPercentile
                                                    : kiln::Calibration::kMinMax;
      o.validation_images = val_x;
      o.validation_labels = val_y;
      o.max_drop = max_drop;
      kiln::QuantizeReport report;
      const auto t1 = Clock::now();
      kiln::GraphModel q = kiln::quantize_model(
          f, train_x.rows(0, std::min(calibrate, train_x.shape()[0])), o, &report);
      std::fprintf(stderr, "%s: quantized in %.1f s\n", name.c_str(), ms_since(t1) / 1e3);

      // 50% structured pruning, fine-tuned for one epoch with the same fit, then int8 on top.
      kiln::PruneReport pr;
      auto pruned = kiln::prune_structured(*model, {.fraction = 0.5}, &pr);
      kiln::Adam opt2(1e-3);
      kiln::FitOptions fo2 = fo;
      fo2.epochs = finetune;
      if (finetune > 0) kiln::fit(*pruned, opt2, loss, train_x, train_y, fo2);
      kiln::GraphModel pf = kiln::freeze(*pruned);
      kiln::QuantizeReport prq;
      kiln::GraphModel pq = kiln::quantize_model(
          pf, train_x.rows(0, std::min(calibrate, train_x.shape()[0])), o, &prq);
      const std::vector<Timing> t = time_models({&f, &q, &pf, &pq}, d.test_images, reps);
      print(name, "float", f, d.test_images, d.test_labels, t[0], threads);
      print(name, "int8", q, d.test_images, d.test_labels, t[1], threads);
      print(name, "pruned50", pf, d.test_images, d.test_labels, t[2], threads);
      print(name, "pruned50+int8", pq, d.test_images, d.test_labels, t[3], threads);
      std::printf("%s%s%s", report.to_text().c_str(), pr.to_text().c_str(), prq.to_text().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_compress_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
