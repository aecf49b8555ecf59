// Fuzzes load_npy. Seeds are .npy files kiln writes for every dtype and a few shapes (0-d,
// empty, 1-d, 4-d), plus a version 2.0 file. A file that loads must round-trip: npy_bytes of
// the tensor parses back to the same shape, dtype and bytes.
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_support.h"
#include "kiln/io.h"
#include "kiln/ops.h"

namespace {

void write_seeds(const std::string& dir) {
  int n = 0;
  for (kiln::DType t :
       {kiln::DType::kFloat32, kiln::DType::kFloat64, kiln::DType::kInt32, kiln::DType::kInt64,
        kiln::DType::kInt8, kiln::DType::kUInt8, kiln::DType::kBool}) {
    for (const kiln::Shape& s :
         {kiln::Shape{}, kiln::Shape{0, 3}, kiln::Shape{5}, kiln::Shape{2, 1, 3, 2}}) {
      kiln::save_npy(dir + "/seed" + std::to_string(n++) + ".npy",
                     kiln::cast(kiln::random_uniform(s, 0, 2, 1, kiln::DType::kFloat64), t));
    }
  }
  const std::string h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n";
  kiln::fuzz::write_file(dir, "v2.npy",
                         std::string("\x93NUMPY\x02\x00", 8) + char(h.size()) +
                             std::string(3, '\0') + h + std::string(8, '\x01'));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  // The file's bytes, read once, plus the tensor (at most the file's size) and a re-encoding.
  const size_t bound = 4 * size + (1u << 20);
  kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
    kiln::Tensor t = kiln::load_npy(path);
    kiln::Tensor back = kiln::parse_npy(kiln::npy_bytes(t), path);
    if (back.shape() != t.shape() || back.dtype() != t.dtype() ||
        std::memcmp(back.raw_data(), t.raw_data(), t.nbytes()) != 0) {
      kiln::fuzz::fail("a loaded .npy does not round-trip through npy_bytes");
    }
  });
  return 0;
}
