// onnx_peer_bench: kiln's side of the ONNX Runtime comparison (bench/onnx_vs_ort.sh).
//
//   onnx_peer_bench OUT_DIR [--runs N] [--only MODEL BATCH THREADS]
//
// Builds the mlp and the cnn (seeded), freezes them, exports OUT_DIR/<model>.onnx (the files
// ONNX Runtime runs), and their int8 versions "mlp_int8", "cnn_int8" (kiln::quantize_model,
// calibrated on 256 images, every layer int8: no timing decisions, so every run makes the same
// model) as OUT_DIR/<model>_int8.onnx in QDQ form and writes the inputs OUT_DIR/x<batch>.npy
// (Fashion-MNIST test images when the data set is installed, else uniform noise), then times kiln's
// frozen graph on the same inputs: batch 1 and 64, 1 and 2 threads, N timed calls (default 500 at
// batch 1, 200 at 64) after N/10 warm-up calls, each one allocation-free GraphModel::call. Prints
// one JSON line per case: median, p99 and min in ms, and the CPU. --only times one case (the files
// are written every time), so a script can alternate kiln and ONNX Runtime case by case.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/compress.h"
#include "kiln/data.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "kiln/onnx.h"
#include "kiln/threading.h"
#include "machine.h"

namespace {

kiln::Tensor images(int64_t n) {
  const std::string file = kiln::default_fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz";
  if (!std::filesystem::exists(file)) return kiln::random_uniform({n, 28, 28, 1}, 0, 1, 7);
  kiln::Tensor raw = kiln::read_idx(file);
  const uint8_t* p = static_cast<const uint8_t*>(raw.raw_data());
  std::vector<float> v(p, p + n * 784);
  for (float& x : v) x /= 255.0f;
  return kiln::from_vector(v, kiln::Shape{n, 28, 28, 1});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: onnx_peer_bench OUT_DIR [--runs N]\n");
    return 2;
  }
  const std::string out = argv[1];
  int runs_override = 0;
  std::string only_model;
  int64_t only_batch = 0;
  int only_threads = 0;
  bool pair = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--int8-vs-float") {
      pair = true;
    } else if (a == "--runs" && i + 1 < argc) {
      runs_override = std::stoi(argv[++i]);
    } else if (a == "--only" && i + 3 < argc) {
      only_model = argv[i + 1], only_batch = std::stoll(argv[i + 2]);
      only_threads = std::stoi(argv[i + 3]);
      i += 3;
    } else {
      std::fprintf(stderr, "onnx_peer_bench: unknown or incomplete argument %s\n", a.c_str());
      return 2;
    }
  }
  auto wanted = [&](const std::string& model, int64_t b, int threads) {
    return only_model.empty() ||
           (only_model == model && only_batch == b && only_threads == threads);
  };
  std::filesystem::create_directories(out);
  const int64_t batches[] = {1, 64};
  for (int64_t b : batches) kiln::save_npy(out + "/x" + std::to_string(b) + ".npy", images(b));

  struct Case {
    const char* name;
    std::shared_ptr<kiln::Sequential> (*make)(kiln::VariableStore*);
  };
  for (const Case& c : {Case{"mlp", kiln::make_mlp}, Case{"cnn", kiln::make_cnn}}) {
    kiln::VariableStore store(1);
    auto model = c.make(&store);
    const kiln::GraphModel f = kiln::freeze(*model);
    kiln::QuantizeOptions qo;
    qo.keep_slower_float = false;
    qo.timing_repeats = 1;
    const kiln::GraphModel q = kiln::quantize_model(f, images(256), qo);
    const std::string int8_name = std::string(c.name) + "_int8";
    if (pair) {
      kiln::set_num_threads(1);
      for (int64_t b : batches) {
        const kiln::Tensor x = images(b);
        const int runs = runs_override > 0 ? runs_override : (b == 1 ? 2000 : 300);
        std::vector<kiln::Tensor> outs(1);
        std::vector<double> ms[2];
        for (int k = 0; k < runs / 10 + runs; ++k) {
          for (int v = 0; v < 2; ++v) {
            const auto t0 = std::chrono::steady_clock::now();
            (v ? q : f).call({&x, 1}, outs);
            const std::chrono::duration<double, std::milli> d =
                std::chrono::steady_clock::now() - t0;
            if (k >= runs / 10) ms[v].push_back(d.count());
          }
        }
        for (auto& m : ms) std::sort(m.begin(), m.end());
        const double fm = ms[0][ms[0].size() / 2], qm = ms[1][ms[1].size() / 2];
        std::printf(
            "{\"model\": \"%s\", \"batch\": %lld, \"threads\": 1, \"runs\": %d, "
            "\"float_median_ms\": %.5f, \"int8_median_ms\": %.5f, \"int8_over_float\": "
            "%.3f, \"cpu\": \"%s\"}\n",
            c.name, static_cast<long long>(b), runs, fm, qm, qm / fm,
            kiln_bench::cpu_model().c_str());
        std::fflush(stdout);
      }
      continue;
    }
    for (const auto& [name, g] :
         {std::pair<std::string, const kiln::GraphModel&>{c.name, f}, {int8_name, q}}) {
      kiln::export_onnx(g, out + "/" + name + ".onnx");
      for (int64_t b : batches) {
        const kiln::Tensor x = images(b);
        for (int threads : {1, 2}) {
          if (!wanted(name.c_str(), b, threads)) continue;
          kiln::set_num_threads(threads);
          const int runs = runs_override > 0 ? runs_override : (b == 1 ? 500 : 200);
          std::vector<kiln::Tensor> outs(1);
          for (int k = 0; k < std::max(5, runs / 10); ++k) g.call({&x, 1}, outs);
          std::vector<double> ms;
          for (int k = 0; k < runs; ++k) {
            const auto t0 = std::chrono::steady_clock::now();
            g.call({&x, 1}, outs);
            ms.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
          }
          std::sort(ms.begin(), ms.end());
          auto pct = [&](double p) {
            const size_t k = static_cast<size_t>(std::max(1.0, std::ceil(p * ms.size()))) - 1;
            return ms[std::min(k, ms.size() - 1)];
          };
          std::printf(
              "{\"side\": \"kiln\", \"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"runs\": "
              "%d, "
              "\"median_ms\": %.5f, \"p99_ms\": %.5f, \"min_ms\": %.5f, \"cpu\": \"%s\"}\n",
              name.c_str(), static_cast<long long>(b), threads, runs, pct(0.5), pct(0.99), ms[0],
              kiln_bench::cpu_model().c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
