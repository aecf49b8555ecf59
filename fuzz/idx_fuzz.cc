// Fuzzes read_idx (raw and gzip). Seeds: Fashion-MNIST's t10k files from Debian's
// dataset-fashion-mnist (labels whole, images re-headed to a few images), raw and gzipped,
// plus tiny hand-made files of every IDX type, rank 0, empty dims and two gzip members.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "kiln/data.h"

namespace {

using kiln::fuzz::gzip;
using kiln::fuzz::write_file;

const char* data_dir() {
  const char* d = std::getenv("KILN_FUZZ_DATA_DIR");
  return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string idx(uint8_t type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s + data;
}

void write_seeds(const std::string& dir) {
  const std::string d = data_dir();
  const std::string labels_gz = kiln::fuzz::read_file(d + "/t10k-labels-idx1-ubyte.gz");
  const std::string labels = kiln::fuzz::gunzip(labels_gz);
  write_file(dir, "t10k-labels.gz", labels_gz);  // the real file, as installed
  write_file(dir, "t10k-labels", labels);
  write_file(dir, "t10k-labels-100", idx(0x08, {100}, labels.substr(8, 100)));

  const std::string images_gz = kiln::fuzz::read_file(d + "/t10k-images-idx3-ubyte.gz");
  const std::string images = kiln::fuzz::gunzip(images_gz);
  const std::string two = images.substr(16, 2 * 784);
  write_file(dir, "t10k-images-2", idx(0x08, {2, 28, 28}, two));
  write_file(dir, "t10k-images-2.gz", gzip(idx(0x08, {2, 28, 28}, two)));
  write_file(dir, "t10k-images-1-nhwc", idx(0x08, {1, 28, 28, 1}, two.substr(0, 784)));
  // Prefixes of the real images file: truncated data, raw and gzipped, and a cut gzip stream.
  write_file(dir, "t10k-images-cut", images.substr(0, 16 + 1000));
  write_file(dir, "t10k-images-cut.gz", gzip(images.substr(0, 16 + 1000)));
  write_file(dir, "t10k-images.gz-prefix", images_gz.substr(0, 2000));

  // Every type, big-endian, from the first image's pixels.
  std::string i16, i32, f32, f64;
  for (int i = 0; i < 16; ++i) {
    const uint8_t px = static_cast<uint8_t>(two[300 + i]);
    i16 += std::string{static_cast<char>(0xFF * (i & 1)), static_cast<char>(px)};
    i32 += be32(px * 70000u);
    float f = px / 255.0f;
    uint32_t fb;
    std::memcpy(&fb, &f, 4);
    f32 += be32(fb);
    double g = -px / 3.0;
    uint64_t gb;
    std::memcpy(&gb, &g, 8);
    f64 += be32(static_cast<uint32_t>(gb >> 32)) + be32(static_cast<uint32_t>(gb));
  }
  write_file(dir, "int8", idx(0x09, {4, 4}, two.substr(300, 16)));
  write_file(dir, "int16", idx(0x0B, {16}, i16));
  write_file(dir, "int32", idx(0x0C, {2, 8}, i32));
  write_file(dir, "float32.gz", gzip(idx(0x0D, {4, 2, 2}, f32)));
  write_file(dir, "float64", idx(0x0E, {16}, f64));
  write_file(dir, "rank0", idx(0x08, {}, "\x07"));
  write_file(dir, "empty.gz", gzip(idx(0x0D, {0, 28}, "")));
  const std::string six = idx(0x08, {2, 3}, two.substr(400, 6));
  write_file(dir, "two-members.gz", gzip(six.substr(0, 7)) + gzip(six.substr(7)));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  // Raw: the buffer and the tensor (int16 widens to int32) are bounded by the file; gzip by
  // deflate's maximum ratio (1032:1). Plus one 1 MB read chunk and small fixed costs.
  const size_t bound = (gz ? 1032 : 1) * size * 6 + (2u << 20);
  kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
    kiln::Tensor t = kiln::read_idx(path);
    // A raw file that loads holds exactly its header and prod(dims) elements.
    if (!gz) {
      const size_t item = data[2] == 0x0B ? 2 : kiln::size_of(t.dtype());
      const size_t want =
          4 + 4 * static_cast<size_t>(t.rank()) + static_cast<size_t>(t.numel()) * item;
      if (want != size)
        kiln::fuzz::fail("read_idx accepted a raw file whose size does not match its dims");
    }
  });
  return 0;
}
