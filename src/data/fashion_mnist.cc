// Fashion-MNIST loader on top of read_idx: finds the files, checks shapes, counts and label
// range, and converts to the layout training wants (NHWC float32 in [0, 1], int32 labels).
#include <cstdlib>
#include <filesystem>

#include "kiln/data.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDebianDir = "/usr/share/datasets/fashion-mnist";
constexpr const char* kHint = "install the Debian package dataset-fashion-mnist or pass --data DIR";

bool has_files(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "train-images-idx3-ubyte.gz", ec) ||
         fs::exists(dir / "train-images-idx3-ubyte", ec);
}

// `dir`/`stem`.gz, or `dir`/`stem` uncompressed; FormatError with the install hint if neither.
std::string find_file(const std::string& dir, const std::string& stem) {
  std::error_code ec;
  fs::path gz = fs::path(dir) / (stem + ".gz");
  if (fs::is_regular_file(gz, ec)) return gz.string();
  fs::path raw = fs::path(dir) / stem;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  throw FormatError("load_fashion_mnist: Fashion-MNIST not found in directory '" + dir + "' (no " +
                    stem + ".gz or " + stem + "): " + kHint);
}

// uint8 [N, 28, 28] -> float32 [N, 28, 28, 1] / 255.
Tensor to_images(const Tensor& raw, const std::string& path) {
  const Shape& s = raw.shape();
  if (raw.dtype() != uint8 || s.rank() != 3 || s[1] != 28 || s[2] != 28) {
    throw FormatError("load_fashion_mnist: " + path +
                      ": images: expected uint8 (type 0x08) dims [N, 28, 28], got " +
                      std::string(dtype_name(raw.dtype())) + " " + to_string(s));
  }
  Tensor out = empty(Shape{s[0], 28, 28, 1}, float32);
  const uint8_t* src = raw.data<uint8_t>();
  float* dst = out.data<float>();
  const int64_t n = raw.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * (1.0f / 255.0f);
  return out;
}

// uint8 [N] with values < 10 -> int32 [N].
Tensor to_labels(const Tensor& raw, const std::string& path) {
  if (raw.dtype() != uint8 || raw.rank() != 1) {
    throw FormatError("load_fashion_mnist: " + path +
                      ": labels: expected uint8 (type 0x08) dims [N], got " +
                      std::string(dtype_name(raw.dtype())) + " " + to_string(raw.shape()));
  }
  Tensor out = empty(raw.shape(), int32);
  const uint8_t* src = raw.data<uint8_t>();
  int32_t* dst = out.data<int32_t>();
  for (int64_t i = 0; i < raw.numel(); ++i) {
    if (src[i] > 9) {
      throw FormatError("load_fashion_mnist: " + path +
                        ": labels: expected values in [0, 9], got " + std::to_string(src[i]) +
                        " at index " + std::to_string(i));
    }
    dst[i] = src[i];
  }
  return out;
}

void load_split(const std::string& dir, const std::string& prefix, Tensor* images, Tensor* labels) {
  std::string ipath = find_file(dir, prefix + "-images-idx3-ubyte");
  std::string lpath = find_file(dir, prefix + "-labels-idx1-ubyte");
  Tensor x = to_images(read_idx(ipath), ipath);
  Tensor y = to_labels(read_idx(lpath), lpath);
  if (x.dim(0) != y.dim(0)) {
    throw FormatError("load_fashion_mnist: " + lpath + ": labels: expected " +
                      std::to_string(x.dim(0)) + " labels to match " + ipath + ", got " +
                      std::to_string(y.dim(0)));
  }
  *images = std::move(x);
  *labels = std::move(y);
}

}  // namespace

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("KILN_DATA_DIR");
  if (env && *env) {
    fs::path sub = fs::path(env) / "fashion-mnist";
    if (!has_files(env) && has_files(sub)) return sub.string();
    return env;
  }
  return kDebianDir;
}

FashionMnist load_fashion_mnist(const std::string& dir_in) {
  const std::string dir = dir_in.empty() ? default_fashion_mnist_dir() : dir_in;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw FormatError("load_fashion_mnist: Fashion-MNIST directory '" + dir +
                      "' does not exist: " + kHint);
  }
  FashionMnist d;
  load_split(dir, "train", &d.train_images, &d.train_labels);
  load_split(dir, "t10k", &d.test_images, &d.test_labels);
  return d;
}

}  // namespace kiln
