// read_idx: values for every IDX type, raw and gzipped, and every error path with its message.
#include <sys/stat.h>  // mkfifo
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <string>
#include <thread>
#include <vector>

#include "kiln/data.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::expect_error;
using testing::TempDir;
namespace fs = std::filesystem;

// 0x00 0x00 type ndims, big-endian dims, then `data` as given.
std::string idx(uint8_t type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int b = 3; b >= 0; --b) s.push_back(static_cast<char>((d >> (8 * b)) & 0xFF));
  }
  return s + data;
}

std::string gzip(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Big-endian bytes of a value.
template <typename T>
std::string be(T v) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  std::string s;
  for (int i = sizeof(T) - 1; i >= 0; --i) s.push_back(static_cast<char>(b[i]));
  return s;
}

const std::string kSix = std::string("\x00\x01\x02\x03\xFE\xFF", 6);

TEST(ReadIdx, RawUint8) {
  TempDir dir("kiln_idx_");
  Tensor t = read_idx(dir.write("a", idx(0x08, {2, 3}, kSix)));
  EXPECT_EQ(t.dtype(), uint8);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<int>(), (std::vector<int>{0, 1, 2, 3, 254, 255}));
}

TEST(ReadIdx, GzippedMatchesRawWhateverTheName) {
  TempDir dir("kiln_idx_");
  // Detection is by magic: a gzipped file without .gz and a raw file named .gz both work.
  Tensor a = read_idx(dir.write("a", gzip(idx(0x08, {2, 3}, kSix))));
  Tensor b = read_idx(dir.write("b.gz", idx(0x08, {2, 3}, kSix)));
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.to_vector<int>(), b.to_vector<int>());
}

TEST(ReadIdx, ConcatenatedGzipMembersReadAsOneStream) {
  TempDir dir("kiln_idx_");
  std::string raw = idx(0x08, {6}, kSix);
  Tensor t = read_idx(dir.write("a", gzip(raw.substr(0, 7)) + gzip(raw.substr(7))));
  EXPECT_EQ(t.to_vector<int>(), (std::vector<int>{0, 1, 2, 3, 254, 255}));
}

TEST(ReadIdx, EveryTypeIsBigEndianAndWidenedAsDocumented) {
  TempDir dir("kiln_idx_");
  Tensor i8 = read_idx(dir.write("i8", idx(0x09, {2}, std::string("\xFF\x7F", 2))));
  EXPECT_EQ(i8.dtype(), int8);
  EXPECT_EQ(i8.to_vector<int>(), (std::vector<int>{-1, 127}));

  Tensor i16 = read_idx(dir.write("i16", idx(0x0B, {2}, be<int16_t>(-2) + be<int16_t>(300))));
  EXPECT_EQ(i16.dtype(), int32);
  EXPECT_EQ(i16.to_vector<int>(), (std::vector<int>{-2, 300}));

  Tensor i32 = read_idx(dir.write("i32", idx(0x0C, {1, 2}, be<int32_t>(-70000) + be<int32_t>(1))));
  EXPECT_EQ(i32.dtype(), int32);
  EXPECT_EQ(i32.shape(), (Shape{1, 2}));
  EXPECT_EQ(i32.to_vector<int>(), (std::vector<int>{-70000, 1}));

  Tensor f32 = read_idx(dir.write("f32", gzip(idx(0x0D, {2}, be(1.5f) + be(-2.25f)))));
  EXPECT_EQ(f32.dtype(), float32);
  EXPECT_EQ(f32.to_vector<float>(), (std::vector<float>{1.5f, -2.25f}));

  Tensor f64 = read_idx(dir.write("f64", idx(0x0E, {1}, be(std::numbers::pi))));
  EXPECT_EQ(f64.dtype(), float64);
  EXPECT_EQ(f64.to_vector<double>(), (std::vector<double>{std::numbers::pi}));
}

TEST(ReadIdx, RankZeroAndEmpty) {
  TempDir dir("kiln_idx_");
  Tensor s = read_idx(dir.write("s", idx(0x08, {}, "\x07")));
  EXPECT_EQ(s.rank(), 0);
  EXPECT_EQ(s.item<int>(), 7);
  Tensor e = read_idx(dir.write("e", gzip(idx(0x0D, {0, 28}, ""))));
  EXPECT_EQ(e.shape(), (Shape{0, 28}));
  EXPECT_EQ(e.dtype(), float32);
}

TEST(ReadIdxErrors, MissingFile) {
  TempDir dir("kiln_idx_");
  std::string p = dir.path() + "/nope.gz";
  expect_error<FormatError>([&] { read_idx(p); }, {"read_idx", p, "cannot open"});
}

TEST(ReadIdxErrors, ShortHeader) {
  TempDir dir("kiln_idx_");
  for (std::string bytes : {std::string(), std::string("\0", 1), std::string("\0\0\x08", 3)}) {
    std::string p = dir.write("h", bytes);
    expect_error<FormatError>([&] { read_idx(p); }, {p, "magic", "4 header bytes"});
  }
}

TEST(ReadIdxErrors, BadMagic) {
  TempDir dir("kiln_idx_");
  std::string bytes = idx(0x08, {2}, "ab");
  bytes[1] = 0x03;
  std::string p = dir.write("m", bytes);
  expect_error<FormatError>([&] { read_idx(p); }, {p, "magic", "0x00 0x00", "0x03"});
  std::string q = dir.write("text", "hello world");
  expect_error<FormatError>([&] { read_idx(q); }, {q, "magic", "not an IDX file"});
}

TEST(ReadIdxErrors, BadType) {
  TempDir dir("kiln_idx_");
  std::string p = dir.write("t", idx(0x0A, {2}, "ab"));
  expect_error<FormatError>([&] { read_idx(p); }, {p, "type", "0x08", "0x0E", "got 0x0A"});
}

TEST(ReadIdxErrors, TooManyDims) {
  TempDir dir("kiln_idx_");
  std::string p = dir.write("d", idx(0x08, std::vector<uint32_t>(9, 1), "a"));
  expect_error<FormatError>([&] { read_idx(p); }, {p, "ndims", "at most 8", "got 9"});
}

TEST(ReadIdxErrors, TruncatedDims) {
  TempDir dir("kiln_idx_");
  std::string p = dir.write("d", idx(0x08, {2, 3}, "").substr(0, 9));
  expect_error<FormatError>([&] { read_idx(p); }, {p, "dims", "2 big-endian uint32", "after 5"});
}

TEST(ReadIdxErrors, TruncatedData) {
  TempDir dir("kiln_idx_");
  std::string raw = idx(0x08, {2, 3}, kSix.substr(0, 5));
  for (std::string bytes : {raw, gzip(raw)}) {
    std::string p = dir.write("d", bytes);
    expect_error<FormatError>([&] { read_idx(p); },
                              {p, "data", "truncated", "[2, 3]", "need 6 bytes", "has 5"});
  }
  std::string p = dir.write("f", idx(0x0D, {3}, be(1.0f) + be(2.0f)));
  expect_error<FormatError>([&] { read_idx(p); }, {"float32", "need 12 bytes", "has 8"});
}

TEST(ReadIdxErrors, TrailingBytes) {
  TempDir dir("kiln_idx_");
  std::string raw = idx(0x08, {2, 3}, kSix + "x");
  for (std::string bytes : {raw, gzip(raw)}) {
    std::string p = dir.write("d", bytes);
    expect_error<FormatError>([&] { read_idx(p); }, {p, "trailing bytes", "6 bytes", "[2, 3]"});
  }
}

TEST(ReadIdxErrors, DimsProductOverflow) {
  TempDir dir("kiln_idx_");
  std::string p = dir.write("o", idx(0x0E, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, ""));
  expect_error<FormatError>([&] { read_idx(p); },
                            {p, "dims", "4294967295, 4294967295, 4294967295", "overflows"});
  // The element count fits but times 8 bytes does not.
  std::string q = dir.write("o8", idx(0x0E, {0x80000000u, 0x80000000u, 2}, ""));
  expect_error<FormatError>([&] { read_idx(q); }, {q, "overflows"});
}

TEST(ReadIdxErrors, HugeClaimIsRefusedWithoutAllocatingIt) {
  TempDir dir("kiln_idx_");
  // 10^12 bytes claimed, 3 present: must fail as truncated, not try to allocate a terabyte.
  std::string raw = idx(0x08, {1000000, 1000000}, "abc");
  for (std::string bytes : {raw, gzip(raw)}) {
    std::string p = dir.write("h", bytes);
    expect_error<FormatError>([&] { read_idx(p); },
                              {p, "truncated", "need 1000000000000 bytes", "has 3"});
  }
}

TEST(ReadIdxErrors, CorruptGzip) {
  TempDir dir("kiln_idx_");
  std::string good = gzip(idx(0x08, {2, 3}, kSix));
  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 6] ^= 0x55;  // inside the CRC32 trailer
  std::string p = dir.write("crc", bad_crc);
  expect_error<FormatError>([&] { read_idx(p); }, {p, "gzip", "corrupt", "incorrect data check"});

  std::string bad_method = good;
  bad_method[2] = 0x07;  // compression method must be 8 (deflate)
  p = dir.write("method", bad_method);
  expect_error<FormatError>([&] { read_idx(p); }, {p, "gzip", "corrupt"});

  p = dir.write("cut", good.substr(0, good.size() - 4));
  expect_error<FormatError>([&] { read_idx(p); }, {p, "gzip", "unexpected end of file"});

  p = dir.write("junk", good + "junk");
  expect_error<FormatError>([&] { read_idx(p); }, {p, "gzip", "trailing garbage"});
}

// A raw regular file's claim is checked against its size before allocating; a pipe has no
// size and takes the path that grows with the data, as gzip does.
TEST(ReadIdx, PipeIsReadAsItArrives) {
  TempDir dir("kiln_idx_");
  const std::string p = dir.path("fifo");
  ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
  for (const std::string& bytes :
       {idx(0x0B, {2}, be<int16_t>(-2) + be<int16_t>(300)), idx(0x08, {1000000, 1000000}, "abc")}) {
    std::thread writer([&] { std::ofstream(p, std::ios::binary) << bytes; });
    if (bytes[2] == 0x08) {
      expect_error<FormatError>([&] { read_idx(p); },
                                {p, "truncated", "need 1000000000000 bytes", "has 3"});
    } else {
      EXPECT_EQ(read_idx(p).to_vector<int>(), (std::vector<int>{-2, 300}));
    }
    writer.join();
  }
}

TEST(ReadIdxErrors, EveryPrefixOfAValidFileIsRefused) {
  TempDir dir("kiln_idx_");
  std::string raw = idx(0x0C, {2, 2}, be(1) + be(2) + be(3) + be(4));
  for (const std::string& full : {raw, gzip(raw)}) {
    ASSERT_EQ(read_idx(dir.write("full", full)).to_vector<int>(), (std::vector<int>{1, 2, 3, 4}));
    for (size_t n = 0; n < full.size(); ++n) {
      std::string p = dir.write("prefix", full.substr(0, n));
      EXPECT_THROW(read_idx(p), FormatError) << "prefix of " << n << " bytes was accepted";
    }
  }
}

}  // namespace
}  // namespace kiln
