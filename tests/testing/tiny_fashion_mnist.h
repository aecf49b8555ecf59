// Writes a tiny data set in Fashion-MNIST's raw IDX format, for CLI tests that must not need the
// real one: n 28x28 images whose bright horizontal band encodes the label, so a model learns it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace kiln::testing {

inline void write_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  f.write(b, 4);
}

// <dir>/<prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte ("train" or "t10k").
inline void write_tiny_fashion_mnist(const std::filesystem::path& dir, const std::string& prefix,
                                     int n) {
  std::ofstream img(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream lab(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  img.write("\0\0\x08\x03", 4);
  write_be32(img, n);
  write_be32(img, 28);
  write_be32(img, 28);
  lab.write("\0\0\x08\x01", 4);
  write_be32(lab, n);
  for (int i = 0; i < n; ++i) {
    const int label = i % 10;
    for (int p = 0; p < 28 * 28; ++p) {
      const bool on = (p / 28) / 3 == label;  // a horizontal band per class
      img.put(static_cast<char>(on ? 200 + (i * 7 + p) % 50 : (i + p) % 20));
    }
    lab.put(static_cast<char>(label));
  }
}

}  // namespace kiln::testing
