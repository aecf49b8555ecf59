// .npy: round trips of every dtype, files numpy wrote, numpy reading kiln's files, and every way
// a file can be wrong (one FormatError naming the file and what was wrong).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/io.h"
#include "kiln/ops.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::expect_error;
using testing::TempDir;

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(Npy, RoundTripsEveryDtypeAndShape) {
  TempDir dir;
  const std::string path = dir.path() + "/t.npy";
  for (DType t : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kInt8,
                  DType::kUInt8, DType::kBool}) {
    for (const Shape& s : {Shape{}, Shape{3}, Shape{0, 2}, Shape{2, 3, 4, 5}}) {
      Tensor x = cast(random_uniform(s, 0, 2, 1, DType::kFloat64), t);
      save_npy(path, x);
      Tensor y = load_npy(path);
      EXPECT_TRUE(same(x, y)) << dtype_name(t) << " " << to_string(s);
      EXPECT_EQ(std::filesystem::file_size(path) % 64, x.nbytes() % 64);  // data 64-aligned
    }
  }
}

// Bytes numpy 1.24 wrote: np.save of np.arange(6, dtype='<f4').reshape(2, 3) and of
// np.array(True) (numpy pads headers for growth; kiln must read them).
std::string numpy_file(const std::string& descr_shape, const std::string& data) {
  std::string header = "{" + descr_shape + ", }";
  header.append(117 - header.size(), ' ');
  header += '\n';
  return std::string("\x93NUMPY\x01\x00v\x00", 10) + header + data;
}

TEST(Npy, ReadsWhatNumpyWrites) {
  float f[6] = {0, 1, 2, 3, 4, 5};
  Tensor a = parse_npy(numpy_file("'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
                                  std::string(reinterpret_cast<char*>(f), sizeof f)),
                       "a.npy");
  ASSERT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.data<float>()[5], 5.0f);
  Tensor b = parse_npy(
      numpy_file("'descr': '|b1', 'fortran_order': False, 'shape': ()", std::string("\x01", 1)),
      "b.npy");
  EXPECT_EQ(b.dtype(), DType::kBool);
  EXPECT_EQ(b.rank(), 0);
  // Version 2.0 (4-byte header length) and a byte-order-free descr.
  std::string h = "{'descr': '=i4', 'fortran_order': False, 'shape': (1,), }\n";
  std::string v2 = std::string("\x93NUMPY\x02\x00", 8) + std::string(1, char(h.size())) +
                   std::string(3, '\0') + h + std::string("\x07\0\0\0", 4);
  EXPECT_EQ(parse_npy(v2, "v2.npy").data<int32_t>()[0], 7);
}

TEST(Npy, NumpyReadsWhatKilnWrites) {
  if (std::system("ASAN_OPTIONS=detect_leaks=0 /usr/bin/python3 -c 'import numpy' 2>/dev/null") !=
      0) {
    GTEST_SKIP() << "python3 with numpy is absent (apt-get install python3-numpy)";
  }
  TempDir dir;
  save_npy(dir.path() + "/k.npy", cast(random_uniform({2, 3}, 0, 9, 2), DType::kInt64));
  save_npy(dir.path() + "/b.npy", cast(random_uniform({4}, 0, 2, 3), DType::kBool));
  const std::string cmd =
      "ASAN_OPTIONS=detect_leaks=0 /usr/bin/python3 -c \"import numpy as np; a = np.load('" +
      dir.path() + "/k.npy'); b = np.load('" + dir.path() +
      "/b.npy'); assert a.dtype == np.int64 and a.shape == (2, 3); "
      "assert b.dtype == np.bool_ and b.shape == (4,)\"";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(Npy, BadFilesNameWhatIsWrong) {
  auto file = [](const std::string& header, const std::string& data = "") {
    std::string h = header + "\n";
    return std::string("\x93NUMPY\x01\x00", 8) + char(h.size() & 0xff) + char(h.size() >> 8) + h +
           data;
  };
  auto bad = [](const std::string& bytes, const std::vector<std::string>& parts) {
    std::vector<std::string> all = parts;
    all.push_back("x.npy");
    expect_error<FormatError>([&] { parse_npy(bytes, "x.npy"); }, all);
  };
  const std::string four(4, '\0');
  bad("PK\x03\x04 not numpy at all", {"not a .npy file"});
  bad(std::string("\x93NUMPY\x04\x00\x10\x00", 10), {"version 4.0"});
  bad(std::string("\x93NUMPY\x01\x00", 8), {"header length is cut off"});
  bad(std::string("\x93NUMPY\x01\x00\xff\x00{'descr'", 17), {"claims 255 bytes"});
  bad(std::string("\x93NUMPY\x03\x00\xff\xff\xff\x7f", 12), {"claims 2147483647 bytes"});
  bad(file("{'descr': '<f4', 'shape': (1,), }", four), {"'fortran_order' is missing"});
  bad(file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1, }", four),
      {"unexpected key 'x'"});
  bad(file("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", four),
      {"Fortran-order", "np.ascontiguousarray"});
  bad(file("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')),
      {"object arrays"});
  bad(file("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')),
      {"descr '<c8'", "not a kiln dtype"});
  bad(file("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", four), {"big-endian"});
  bad(file("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", four),
      {"non-negative integers"});
  bad(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", four),
      {"needs 8 data bytes", "holds 4"});
  bad(file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", four + four),
      {"needs 4 data bytes", "holds 8"});
  bad(file("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }"),
      {"too large"});
  bad(file("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", "\x01\x02"),
      {"bool element 1 is 2"});
  bad(file("['descr', '<f4']"), {"expected '{'"});
  bad(file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } extra", four),
      {"after the header's closing"});
  bad(file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", four),
      {"'descr' appears twice"});
  expect_error<FormatError>([] { load_npy("/nonexistent/x.npy"); }, {"/nonexistent/x.npy"});
}

TEST(Npy, AFailedSaveLeavesTheOldFile) {
  TempDir dir;
  const std::string path = dir.path() + "/keep.npy";
  save_npy(path, zeros({3}));
  expect_error<ValueError>([&] { save_npy(path, Tensor()); }, {"undefined"});
  EXPECT_EQ(load_npy(path).numel(), 3);
}

}  // namespace
}  // namespace kiln
