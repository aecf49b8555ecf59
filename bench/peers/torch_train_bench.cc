// bench/peers/torch_train_bench.cc -- LibTorch peer for kiln's training benchmark.
//
// Trains on Fashion-MNIST (read here from the gzipped IDX files, pixels scaled to [0,1]) one of
//   mlp: Flatten, Linear 784->256 relu, Linear 256->128 relu, Linear 128->10
//   cnn: Conv2d 1->32 3x3 same relu, MaxPool 2, Conv2d 32->64 3x3 same relu, MaxPool 2, Flatten,
//        Linear 3136->128 relu, Linear 128->10
// with Adam (lr 1e-3), batch 64 (last partial batch kept), cross-entropy from logits, the training
// set shuffled every epoch by a fixed-seed generator. LibTorch's default initializers.
// Per epoch one JSON line on stdout:
//   {"model","epoch","loss","accuracy","val_accuracy","seconds","ms_per_step","threads",
//    "cpu_model","cpu_isa"}
// loss/accuracy are running means over the epoch's training batches; val_accuracy is on the 10k
// test set; seconds is the training time of the epoch only (evaluation excluded).
//
// Usage: torch_train_bench [--model mlp|cnn] [--epochs N] [--threads T] [--seed S] [--data DIR]
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "machine.h"

namespace {

std::vector<unsigned char> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      gzclose(f);
      throw std::runtime_error("gzip read error in " + path);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

// IDX images (magic 0x803: u8, 3 dims) -> float [N,1,28,28] in [0,1].
torch::Tensor read_images(const std::string& path) {
  auto raw = read_gz(path);
  if (raw.size() < 16 || be32(raw.data()) != 0x803)
    throw std::runtime_error(path + ": bad IDX image header");
  const std::int64_t n = be32(raw.data() + 4), h = be32(raw.data() + 8), w = be32(raw.data() + 12);
  if (raw.size() != static_cast<size_t>(16 + n * h * w))
    throw std::runtime_error(path + ": bad size");
  torch::Tensor t =
      torch::from_blob(raw.data() + 16, {n, 1, h, w}, torch::kUInt8).to(torch::kFloat32);
  return t.div_(255.0f).contiguous();
}

// IDX labels (magic 0x801: u8, 1 dim) -> int64 [N].
torch::Tensor read_labels(const std::string& path) {
  auto raw = read_gz(path);
  if (raw.size() < 8 || be32(raw.data()) != 0x801)
    throw std::runtime_error(path + ": bad IDX label header");
  const std::int64_t n = be32(raw.data() + 4);
  if (raw.size() != static_cast<size_t>(8 + n)) throw std::runtime_error(path + ": bad size");
  return torch::from_blob(raw.data() + 8, {n}, torch::kUInt8).to(torch::kInt64);
}

torch::nn::Sequential make_model(const std::string& name) {
  namespace nn = torch::nn;
  if (name == "mlp") {
    return nn::Sequential(nn::Flatten(), nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128),
                          nn::ReLU(), nn::Linear(128, 10));
  }
  if (name == "cnn") {
    return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)), nn::ReLU(),
                          nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                          nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)), nn::ReLU(),
                          nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                          nn::Linear(3136, 128), nn::ReLU(), nn::Linear(128, 10));
  }
  throw std::runtime_error("unknown --model " + name + " (mlp|cnn)");
}

double evaluate(torch::nn::Sequential& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  model->eval();
  const std::int64_t n = x.size(0), bs = 1000;
  std::int64_t correct = 0;
  for (std::int64_t s = 0; s < n; s += bs) {
    const std::int64_t e = std::min(n, s + bs);
    torch::Tensor logits = model->forward(x.slice(0, s, e));
    correct += logits.argmax(1).eq(y.slice(0, s, e)).sum().item<std::int64_t>();
  }
  model->train();
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "mlp", data = "/usr/share/datasets/fashion-mnist";
  int epochs = 1, threads = 2;
  unsigned seed = 42;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model")
      model_name = next();
    else if (a == "--epochs")
      epochs = std::stoi(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--seed")
      seed = static_cast<unsigned>(std::stoul(next()));
    else if (a == "--data")
      data = next();
    else {
      std::fprintf(
          stderr,
          "usage: %s [--model mlp|cnn] [--epochs N] [--threads T] [--seed S] [--data DIR]\n",
          argv[0]);
      return 2;
    }
  }

  try {
    torch::set_num_threads(threads);
    torch::manual_seed(seed);
    torch::Tensor train_x = read_images(data + "/train-images-idx3-ubyte.gz");
    torch::Tensor train_y = read_labels(data + "/train-labels-idx1-ubyte.gz");
    torch::Tensor test_x = read_images(data + "/t10k-images-idx3-ubyte.gz");
    torch::Tensor test_y = read_labels(data + "/t10k-labels-idx1-ubyte.gz");

    torch::nn::Sequential model = make_model(model_name);
    model->train();
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));

    const std::int64_t n = train_x.size(0), batch = 64;
    std::vector<std::int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed);

    for (int epoch = 1; epoch <= epochs; ++epoch) {
      std::shuffle(perm.begin(), perm.end(), rng);
      double loss_sum = 0.0;
      std::int64_t correct = 0, steps = 0;
      auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t s = 0; s < n; s += batch) {
        const std::int64_t bs = std::min(batch, n - s);
        torch::Tensor idx = torch::from_blob(perm.data() + s, {bs}, torch::kInt64);
        torch::Tensor xb = train_x.index_select(0, idx);
        torch::Tensor yb = train_y.index_select(0, idx);
        opt.zero_grad();
        torch::Tensor logits = model->forward(xb);
        torch::Tensor loss = torch::nn::functional::cross_entropy(logits, yb);
        loss.backward();
        opt.step();
        loss_sum += loss.item<double>() * static_cast<double>(bs);
        correct += logits.detach().argmax(1).eq(yb).sum().item<std::int64_t>();
        ++steps;
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double val_acc = evaluate(model, test_x, test_y);
      std::printf(
          "{\"model\":\"%s\",\"epoch\":%d,\"loss\":%.6f,\"accuracy\":%.6f,\"val_accuracy\":%.6f,"
          "\"seconds\":%.4f,\"ms_per_step\":%.4f,\"threads\":%d,\"cpu_model\":\"%s\","
          "\"cpu_isa\":\"%s\"}\n",
          model_name.c_str(), epoch, loss_sum / static_cast<double>(n),
          static_cast<double>(correct) / static_cast<double>(n), val_acc, seconds,
          1e3 * seconds / steps, threads, kiln_bench::cpu_model().c_str(), kiln_bench::cpu_isa());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_train_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
