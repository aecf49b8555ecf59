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
//
// --variants picks what is measured (default ptq,structured, the above):
//   dynamic    kiln::quantize_dynamic of the float model (int8 weights, per-batch activations)
//   qat        kiln::quantize_aware fine-tuned for --qat-epochs (default 1, Adam 1e-4) then
//              kiln::quantize_model_from_qat, beside PTQ of the float model before and after
//              the same fine-tuning in float (the control: same training budget)
//   magnitude  kiln::prune_low_magnitude to 50% and 80% sparsity (PolynomialDecay over the
//              first 2/3 of --finetune-epochs, then strip_pruning): accuracy, latency, and the
//              saved .kiln file's size raw and zlib-compressed (level 9) against dense
// --train-images N trains on the first N images only (quicker figures).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <zlib.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

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

// Size of the file at `path`, raw and compressed with zlib at level 9.
std::pair<int64_t, int64_t> file_sizes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  uLongf n = compressBound(bytes.size());
  std::vector<Bytef> out(n);
  if (compress2(out.data(), &n, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size(), 9) !=
      Z_OK) {
    throw std::runtime_error("zlib failed on " + path);
  }
  return {static_cast<int64_t>(bytes.size()), static_cast<int64_t>(n)};
}

void print_sizes(const std::string& model, const char* variant, const std::string& path,
                 double sparsity) {
  const auto [raw, z] = file_sizes(path);
  std::printf(
      "{\"model\":\"%s\",\"variant\":\"%s\",\"kernel_sparsity\":%.4f,\"file_bytes\":%lld,"
      "\"zlib_bytes\":%lld}\n",
      model.c_str(), variant, sparsity, static_cast<long long>(raw), static_cast<long long>(z));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string models = "mlp,cnn", data_dir, calibration = "minmax";
  std::string variants = "ptq,structured";
  int epochs = 2, threads = 1, reps = 5, finetune = 1, qat_epochs = 1;
  int64_t calibrate = 512, train_images = 0;
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
    else if (a == "--variants")
      variants = v;
    else if (a == "--qat-epochs")
      qat_epochs = std::atoi(v.c_str());
    else if (a == "--train-images")
      train_images = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "kiln_compress_bench: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::fprintf(stderr,
                 "usage: %s [--models mlp,cnn] [--epochs N] [--threads T] [--calibrate N] "
                 "[--calibration minmax|percentile|mse] [--max-drop P] [--data DIR] [--reps N] "
                 "[--finetune-epochs N] [--variants ptq,structured,dynamic,qat,magnitude] "
                 "[--qat-epochs N] [--train-images N]\n",
                 argv[0]);
    return 2;
  }
  try {
    kiln::set_num_threads(threads);
    kiln::set_global_seed(0);
    kiln::FashionMnist d = kiln::load_fashion_mnist(data_dir);
    const int64_t n_train = d.train_images.shape()[0], held = std::min<int64_t>(5000, n_train / 10);
    const int64_t n_fit =
        train_images > 0 ? std::min(train_images, n_train - held) : n_train - held;
    const kiln::Tensor train_x = d.train_images.rows(0, n_fit);
    const kiln::Tensor train_y = d.train_labels.rows(0, n_fit);
    auto wants = [&](const char* v) {
      return ("," + variants + ",").find("," + std::string(v) + ",") != std::string::npos;
    };
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
      const kiln::Tensor calib = train_x.rows(0, std::min(calibrate, train_x.shape()[0]));
      kiln::QuantizeReport report;
      kiln::GraphModel q;
      if (wants("ptq") || wants("qat")) {
        const auto t1 = Clock::now();
        q = kiln::quantize_model(f, calib, o, &report);
        std::fprintf(stderr, "%s: quantized in %.1f s\n", name.c_str(), ms_since(t1) / 1e3);
      }
      if (wants("ptq") || wants("structured")) {
        std::vector<const kiln::GraphModel*> timed{&f};
        if (wants("ptq")) timed.push_back(&q);
        // 50% structured pruning, fine-tuned for one epoch with the same fit, then int8 on top.
        kiln::PruneReport pr;
        kiln::QuantizeReport prq;
        kiln::GraphModel pf, pq;
        if (wants("structured")) {
          auto pruned = kiln::prune_structured(*model, {.fraction = 0.5}, &pr);
          kiln::Adam opt2(1e-3);
          kiln::FitOptions fo2 = fo;
          fo2.epochs = finetune;
          if (finetune > 0) kiln::fit(*pruned, opt2, loss, train_x, train_y, fo2);
          pf = kiln::freeze(*pruned);
          pq = kiln::quantize_model(pf, calib, o, &prq);
          timed.push_back(&pf);
          timed.push_back(&pq);
        }
        const std::vector<Timing> t = time_models(timed, d.test_images, reps);
        size_t k = 0;
        print(name, "float", f, d.test_images, d.test_labels, t[k++], threads);
        if (wants("ptq")) print(name, "int8", q, d.test_images, d.test_labels, t[k++], threads);
        if (wants("structured")) {
          print(name, "pruned50", pf, d.test_images, d.test_labels, t[k++], threads);
          print(name, "pruned50+int8", pq, d.test_images, d.test_labels, t[k++], threads);
        }
        if (wants("ptq")) std::printf("%s", report.to_text().c_str());
        if (wants("structured")) std::printf("%s%s", pr.to_text().c_str(), prq.to_text().c_str());
        std::fflush(stdout);
      }
      if (wants("dynamic")) {
        int rewritten = 0;
        kiln::GraphModel dq = kiln::quantize_dynamic(f, {}, &rewritten);
        std::fprintf(stderr, "%s: %d matmul(s) dynamic int8\n", name.c_str(), rewritten);
        const std::vector<Timing> t = time_models({&f, &dq}, d.test_images, reps);
        print(name, "float", f, d.test_images, d.test_labels, t[0], threads);
        print(name, "dynamic_int8", dq, d.test_images, d.test_labels, t[1], threads);
      }
      if (wants("magnitude")) {
        // Each sparsity from the same trained weights (restored between runs).
        std::vector<kiln::Variable> vars = model->weights();
        std::vector<kiln::Tensor> saved;
        for (const auto& v : vars) saved.push_back(v.value().clone());
        const std::string dir = std::filesystem::temp_directory_path() / "kiln_compress_bench";
        std::filesystem::create_directories(dir);
        const std::string dense_path = dir + "/dense.kiln";
        kiln::save_model(*model, dense_path, {.frozen = false});
        std::vector<kiln::GraphModel> graphs{f};
        std::vector<std::string> paths{dense_path};
        std::vector<double> sparsities{kiln::kernel_sparsity(*model)};
        for (double target : {0.5, 0.8}) {
          for (size_t i = 0; i < vars.size(); ++i) vars[i].assign(saved[i]);
          auto pruned = kiln::prune_low_magnitude(*model);
          const int64_t steps_per_epoch = (train_x.shape()[0] + 63) / 64;
          const int64_t steps = std::max<int64_t>(1, finetune) * steps_per_epoch;
          kiln::FitOptions fp = fo;
          fp.epochs = std::max(1, finetune);
          fp.callbacks.push_back(std::make_shared<kiln::UpdatePruningStep>(
              kiln::PolynomialDecay{.final_sparsity = target,
                                    .begin_step = 0,
                                    .end_step = std::max<int64_t>(1, steps * 2 / 3),
                                    .frequency = std::max<int64_t>(1, steps / 30)}));
          kiln::Adam opt3(1e-4);
          kiln::fit(*pruned, opt3, loss, train_x, train_y, fp);
          auto stripped = kiln::strip_pruning(*pruned);
          const std::string path = dir + "/pruned" + std::to_string(int(target * 100)) + ".kiln";
          kiln::save_model(*stripped, path, {.frozen = false});
          graphs.push_back(kiln::freeze(*stripped));
          paths.push_back(path);
          sparsities.push_back(kiln::kernel_sparsity(*stripped));
        }
        for (size_t i = 0; i < vars.size(); ++i) vars[i].assign(saved[i]);
        const std::vector<Timing> t =
            time_models({&graphs[0], &graphs[1], &graphs[2]}, d.test_images, reps);
        const char* names[3] = {"dense", "magnitude50", "magnitude80"};
        for (int i = 0; i < 3; ++i) {
          print(name, names[i], graphs[i], d.test_images, d.test_labels, t[i], threads);
          print_sizes(name, names[i], paths[i], sparsities[i]);
        }
        std::filesystem::remove_all(dir);
      }
      if (wants("qat")) {
        // From the trained float model: PTQ (above); the same fine-tuning budget spent in float
        // then PTQ (the control); and QAT fine-tuning then conversion.
        std::vector<kiln::Variable> vars = model->weights();
        std::vector<kiln::Tensor> saved;
        for (const auto& v : vars) saved.push_back(v.value().clone());
        kiln::FitOptions fq = fo;
        fq.epochs = qat_epochs;
        kiln::Adam opt_ft(1e-4);
        kiln::fit(*model, opt_ft, loss, train_x, train_y, fq);
        kiln::GraphModel ff = kiln::freeze(*model);
        kiln::QuantizeReport fr;
        kiln::GraphModel fp = kiln::quantize_model(ff, calib, o, &fr);
        for (size_t i = 0; i < vars.size(); ++i) vars[i].assign(saved[i]);
        auto qat = kiln::quantize_aware(*model);
        kiln::Adam opt4(1e-4);
        const auto t2 = Clock::now();
        kiln::fit(*qat, opt4, loss, train_x, train_y, fq);
        std::fprintf(stderr, "%s: QAT %d epoch(s) in %.1f s\n", name.c_str(), qat_epochs,
                     ms_since(t2) / 1e3);
        kiln::QuantizeReport qr;
        kiln::GraphModel qq = kiln::quantize_model_from_qat(*qat, calib, o, &qr);
        kiln::GraphModel qf = kiln::freeze(*model);  // the float model after QAT fine-tuning
        const std::vector<Timing> t =
            time_models({&f, &q, &ff, &fp, &qf, &qq}, d.test_images, reps);
        print(name, "float", f, d.test_images, d.test_labels, t[0], threads);
        print(name, "ptq_int8", q, d.test_images, d.test_labels, t[1], threads);
        print(name, "finetuned_float", ff, d.test_images, d.test_labels, t[2], threads);
        print(name, "finetuned_ptq_int8", fp, d.test_images, d.test_labels, t[3], threads);
        print(name, "qat_float_weights", qf, d.test_images, d.test_labels, t[4], threads);
        print(name, "qat_int8", qq, d.test_images, d.test_labels, t[5], threads);
        std::printf("%s%s", report.to_text().c_str(), qr.to_text().c_str());
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_compress_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
