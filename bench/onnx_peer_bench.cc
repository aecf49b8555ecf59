// onnx_peer_bench: kiln's side of the ONNX Runtime comparison (bench/onnx_vs_ort.sh).
//
//   onnx_peer_bench OUT_DIR [--runs N]
//
// Builds the mlp and the cnn (seeded), freezes them, exports OUT_DIR/<model>.onnx (the files
// ONNX Runtime runs) and writes the inputs OUT_DIR/x<batch>.npy (Fashion-MNIST test images when
// the data set is installed, else uniform noise), then times kiln's frozen graph on the same
// inputs: batch 1 and 64, 1 and 2 threads, N timed calls (default 500 at batch 1, 200 at 64)
// after N/10 warm-up calls, each one allocation-free GraphModel::call. Prints one JSON line per
// case: median, p99 and min in ms, and the CPU.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kiln/data.h"
#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "kiln/onnx.h"
#include "kiln/threading.h"
#include "machine.h"

namespace {

void write_npy(const std::string& path, const kiln::Tensor& t) {
  std::string shape;
  for (int d = 0; d < t.rank(); ++d) shape += std::to_string(t.shape()[d]) + ", ";
  if (t.rank() > 1) shape.resize(shape.size() - 2);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  header += std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";
  std::ofstream f(path, std::ios::binary);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&len), 2);
  f << header;
  f.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
}

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
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--runs") runs_override = std::stoi(argv[i + 1]);
  }
  std::filesystem::create_directories(out);
  const int64_t batches[] = {1, 64};
  for (int64_t b : batches) write_npy(out + "/x" + std::to_string(b) + ".npy", images(b));

  struct Case {
    const char* name;
    std::shared_ptr<kiln::Sequential> (*make)(kiln::VariableStore*);
  };
  for (const Case& c : {Case{"mlp", kiln::make_mlp}, Case{"cnn", kiln::make_cnn}}) {
    kiln::VariableStore store(1);
    auto model = c.make(&store);
    kiln::GraphModel g = kiln::freeze(*model);
    kiln::export_onnx(g, out + "/" + c.name + ".onnx");
    for (int64_t b : batches) {
      const kiln::Tensor x = images(b);
      for (int threads : {1, 2}) {
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
        auto q = [&](double p) {
          const size_t k = static_cast<size_t>(std::max(1.0, std::ceil(p * ms.size()))) - 1;
          return ms[std::min(k, ms.size() - 1)];
        };
        std::printf(
            "{\"side\": \"kiln\", \"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"runs\": "
            "%d, "
            "\"median_ms\": %.5f, \"p99_ms\": %.5f, \"min_ms\": %.5f, \"cpu\": \"%s\"}\n",
            c.name, static_cast<long long>(b), threads, runs, q(0.5), q(0.99), ms[0],
            kiln_bench::cpu_model().c_str());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
