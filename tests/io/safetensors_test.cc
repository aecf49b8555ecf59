// safetensors: round trips of every dtype, interop with hand-made bytes per the spec, tied
// weights, every corruption refused with a clear FormatError, and atomic replacement.
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>
#include <string>

#include "io/atomic_file_testing.h"
#include "kiln/io.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::expect_error;
using testing::TempDir;
namespace fs = std::filesystem;

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return s;
}

// A file laid out by hand per the spec: length, JSON header, data buffer.
std::string st_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

template <typename T>
std::string raw(std::initializer_list<T> v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

TEST(Safetensors, RoundTripEveryDTypeRankZeroAndEmpty) {
  TempDir dir("kiln_st_");
  std::vector<std::pair<std::string, Tensor>> in = {
      {"z.f32", from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1e30f}, Shape{2, 3})},
      {"a.f64", from_vector<double>({std::numbers::pi, -1e-300}, Shape{2, 1})},
      {"m.i32", from_vector<int32_t>({-2147483647 - 1, 2147483647, 0})},
      {"i64", from_vector<int64_t>({INT64_MIN, INT64_MAX}, Shape{1, 1, 2})},
      {"i8", from_vector<int8_t>({-128, 127, 0, 5})},
      {"u8", from_vector<uint8_t>({0, 255, 17})},
      {"bool", from_vector<bool>({true, false, true}, Shape{3, 1})},
      {"scalar", scalar(42.5)},
      {"scalar_i64", scalar(-9, int64)},
      {"empty", empty(Shape{0}, float32)},
      {"empty3", empty(Shape{2, 0, 3}, int32)},
  };
  std::string p = dir.path("all.safetensors");
  save_safetensors(p, in, {{"format", "kiln"}, {"epoch", "3"}});
  SafetensorsFile f = load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(in[i].first);
    EXPECT_EQ(f.tensors[i].first, in[i].first);  // saved order is kept
    EXPECT_EQ(f.tensors[i].second.dtype(), in[i].second.dtype());
    EXPECT_EQ(f.tensors[i].second.shape(), in[i].second.shape());
    EXPECT_EQ(bytes_of(f.tensors[i].second), bytes_of(in[i].second));
  }
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"epoch", "3"}, {"format", "kiln"}}));
  EXPECT_TRUE(f.aliases.empty());
  // The data buffer starts 8-byte aligned (the header is padded with spaces).
  std::string bytes = testing::read_file(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, NoTensorsAtAll) {
  TempDir dir("kiln_st_");
  std::string p = dir.path("none");
  save_safetensors(p, {});
  EXPECT_TRUE(load_safetensors(p).tensors.empty());
  EXPECT_EQ(testing::read_file(p), st_bytes("{}      ", ""));
}

TEST(Safetensors, ReadsAHandMadeFile) {
  TempDir dir("kiln_st_");
  // Spec example layout: names out of order, metadata, data offsets relative to the buffer.
  std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}   )";
  std::string p =
      dir.write("hand", st_bytes(header, raw<float>({1.0f, -0.5f}) + raw<int32_t>({7, -9})));
  SafetensorsFile f = load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].first, "b");
  EXPECT_EQ(f.at("b").to_vector<int>(), (std::vector<int>{7, -9}));
  EXPECT_EQ(f.at("a").shape(), (Shape{1, 2}));
  EXPECT_EQ(f.at("a").to_vector<float>(), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ(f.metadata.at("format"), "pt");
}

TEST(Safetensors, WritesExactlyTheSpecLayout) {
  TempDir dir("kiln_st_");
  std::string p = dir.path("x");
  save_safetensors(p, {{"x", from_vector<float>({1.0f, 2.0f})}});
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  EXPECT_EQ(testing::read_file(p), st_bytes(header, raw<float>({1.0f, 2.0f})));
}

TEST(Safetensors, TiedWeightsAreWrittenOnceAndTiedAgain) {
  TempDir dir("kiln_st_");
  Tensor w = from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  Tensor copy = w.clone();               // equal values, own storage: stored separately
  Tensor flat = w.reshape(Shape{6});     // same storage, other shape: stored separately
  Tensor e1 = empty(Shape{0}), e2 = e1;  // nothing to share
  std::string p = dir.path("tied");
  save_safetensors(p,
                   {{"enc.w", w},
                    {"dec.w", w},
                    {"copy", copy},
                    {"flat", flat},
                    {"head.w", w},
                    {"e1", e1},
                    {"e2", e2}},
                   {{"note", "hi"}});
  SafetensorsFile f = load_safetensors(p);
  std::vector<std::string> stored;
  for (const auto& [name, t] : f.tensors) stored.push_back(name);
  EXPECT_EQ(stored, (std::vector<std::string>{"enc.w", "copy", "flat", "e1", "e2"}));
  EXPECT_EQ(f.aliases,
            (std::map<std::string, std::string>{{"dec.w", "enc.w"}, {"head.w", "enc.w"}}));
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"note", "hi"}}));
  EXPECT_EQ(f.at("dec.w").raw_data(), f.at("enc.w").raw_data());
  EXPECT_NE(f.at("copy").raw_data(), f.at("enc.w").raw_data());
  EXPECT_EQ(f.at("head.w").to_vector<float>(), w.to_vector<float>());
  EXPECT_TRUE(f.contains("dec.w"));
  EXPECT_FALSE(f.contains("nope"));
  expect_error<ValueError>([&] { f.at("nope"); }, {"nope"});
  auto all = f.all();
  ASSERT_EQ(all.size(), 7u);
  EXPECT_EQ(all[5].first, "dec.w");
  EXPECT_EQ(all[5].second.raw_data(), f.at("enc.w").raw_data());
  // The data buffer holds 24 bytes each for enc.w, copy and flat: tied names take no space.
  std::string bytes = testing::read_file(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(bytes.size() - 8 - n, 72u);
  EXPECT_NE(bytes.find(R"("kiln.aliases":"{\"dec.w\":\"enc.w\",\"head.w\":\"enc.w\"}")"),
            std::string::npos);
}

TEST(SafetensorsWriteErrors, BadNamesAndTensors) {
  TempDir dir("kiln_st_");
  std::string p = dir.path("w");
  Tensor t = scalar(1);
  expect_error<ValueError>(
      [&] {
        save_safetensors(p, {{"a", t}, {"a", t}});
      },
      {"save_safetensors", p, "'a'", "more than once"});
  expect_error<ValueError>([&] { save_safetensors(p, {{"", t}}); }, {"invalid tensor name"});
  expect_error<ValueError>(
      [&] {
        save_safetensors(p, {{"__metadata__", t}});
      },
      {"invalid tensor name '__metadata__'"});
  expect_error<ValueError>([&] { save_safetensors(p, {{"u", Tensor()}}); }, {"'u'", "undefined"});
  expect_error<ValueError>(
      [&] {
        save_safetensors(p, {{"a", t}}, {{"kiln.aliases", "{}"}});
      },
      {"kiln.aliases", "reserved"});
  EXPECT_FALSE(fs::exists(p));
}

TEST(SafetensorsWrite, FailedWriteKeepsTheOldFile) {
  TempDir dir("kiln_st_");
  std::string p = dir.path("model.safetensors");
  save_safetensors(p, {{"w", from_vector<float>({1, 2})}});
  std::string old = testing::read_file(p);
  {
    detail::set_atomic_write_fault(detail::AtomicWriteFault::kWrite);
    expect_error<Error>(
        [&] {
          save_safetensors(p, {{"w", from_vector<float>({3, 4, 5})}});
        },
        {p, "write failed"});
    detail::set_atomic_write_fault(detail::AtomicWriteFault::kNone);
  }
  EXPECT_EQ(testing::read_file(p), old);
  EXPECT_EQ(load_safetensors(p).at("w").to_vector<float>(), (std::vector<float>{1, 2}));
  int entries = 0;
  for (auto it = fs::directory_iterator(dir.path(".")); it != fs::directory_iterator(); ++it) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  std::string q = dir.path("missing/dir/m.safetensors");
  expect_error<Error>([&] { save_safetensors(q, {{"w", scalar(1)}}); }, {q, "temp file"});
}

// ---- reader validation -------------------------------------------------------------------

// A valid file with several tensors and metadata, for truncation and byte flips.
std::string valid_file() {
  std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[16,19]},)"
      R"("c":{"dtype":"BOOL","shape":[],"data_offsets":[19,20]}})";
  return st_bytes(header, raw<float>({1, 2, 3, 4}) + "xyz" + std::string(1, '\1'));
}

TEST(SafetensorsReadErrors, EveryPrefixIsRefused) {
  TempDir dir("kiln_st_");
  std::string full = valid_file();
  ASSERT_EQ(load_safetensors(dir.write("full", full)).tensors.size(), 3u);
  for (size_t n = 0; n < full.size(); ++n) {
    std::string p = dir.write("prefix", full.substr(0, n));
    try {
      load_safetensors(p);
      ADD_FAILURE() << "prefix of " << n << " bytes was accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

TEST(SafetensorsReadErrors, FlippedHeaderBytesNeverCrash) {
  TempDir dir("kiln_st_");
  std::string full = valid_file();
  int refused = 0, accepted = 0;
  for (size_t i = 0; i < full.size() - 20; ++i) {
    for (unsigned char mask : {0x01, 0x20, 0x80, 0xFF}) {
      std::string bytes = full;
      bytes[i] = static_cast<char>(bytes[i] ^ mask);
      std::string p = dir.write("flip", bytes);
      try {
        SafetensorsFile f = load_safetensors(p);
        for (const auto& [name, t] : f.tensors) EXPECT_LE(t.nbytes(), 20u);
        ++accepted;  // e.g. a changed letter in a name
      } catch (const FormatError&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(accepted, 0);
}

struct BadCase {
  const char* header;
  std::string data;
  std::vector<std::string> parts;
};

TEST(SafetensorsReadErrors, HeaderValidation) {
  TempDir dir("kiln_st_");
  const std::string f8 = std::string(8, '\0');
  const BadCase cases[] = {
      {"{", "", {"header", "valid JSON"}},
      {"[1,2]", "", {"header", "JSON object", "array"}},
      {"", "", {"header", "valid JSON"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'),
       {"tensor 'b'", "overlap tensor 'a'", "expected begin 8"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       std::string(12, '\0'),
       {"tensor 'b'", "gap", "[4, 8)"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       std::string(12, '\0'),
       {"data buffer", "12 bytes", "cover only 8"}},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
       f8,
       {"tensor 'a'", "span 8 bytes", "expected 12", "3 x F32"}},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
       f8,
       {"tensor 'a'", "data_offsets", "end <= 8", "[0,16]"}},
      {R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", f8, {"begin <= end", "[8,0]"}},
      {R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})",
       f8,
       {"tensor 'a'", "dtype", "F32 F64 I32 I64 I8 U8 BOOL", "\"F16\""}},
      {R"({"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", f8, {"dtype", "string"}},
      {R"({"a":{"shape":[2],"data_offsets":[0,8]}})", f8, {"tensor 'a'", "dtype"}},
      {R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", f8, {"tensor 'a'", "shape"}},
      {R"({"a":{"dtype":"F32","shape":[2]}})", f8, {"tensor 'a'", "data_offsets"}},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
       f8,
       {"shape", "non-negative integers", "[-2]"}},
      {R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
       f8,
       {"shape", "non-negative integers"}},
      {R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", f8, {"shape", "array"}},
      {R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]}})",
       f8,
       {"shape", "at most 8 dims", "got 9"}},
      {R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
       f8,
       {"tensor 'a'", "overflows"}},
      {R"({"a":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
       f8,
       {"overflows"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})",
       f8,
       {"data_offsets", "[begin, end]"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", f8, {"data_offsets"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})",
       f8,
       {"tensor 'a'", "unexpected field 'extra'"}},
      {R"({"a":[1]})", f8, {"tensor 'a'", "JSON object"}},
      {R"({"__metadata__":{"k":1}})", "", {"__metadata__", "'k'", "expected a string"}},
      {R"({"__metadata__":[]})", "", {"__metadata__", "object"}},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
       "ab",
       {"tensor 'a'", "more than once"}},
      {R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})",
       std::string("\1\2", 2),
       {"tensor 'a'", "BOOL", "0 or 1", "got 2"}},
      {R"({"__metadata__":{"kiln.aliases":"{\"b\":\"zzz\"}"},)"
       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
       "a",
       {"kiln.aliases", "'b' -> 'zzz'"}},
      {R"({"__metadata__":{"kiln.aliases":"{\"a\":\"a\"}"},)"
       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
       "a",
       {"kiln.aliases", "'a' -> 'a'"}},
      {R"({"__metadata__":{"kiln.aliases":"not json"}})", "", {"kiln.aliases", "JSON object"}},
      {R"({"__metadata__":{"kiln.aliases":"{\"b\":1}"}})", "", {"kiln.aliases", "'b'"}},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.header);
    std::string p = dir.write("bad", st_bytes(c.header, c.data));
    std::vector<std::string> parts = c.parts;
    parts.push_back("load_safetensors: " + p);
    expect_error<FormatError>([&] { load_safetensors(p); }, parts);
  }
}

// Found by reviewing what the fuzz target (fuzz/safetensors_fuzz.cc) cannot reach at its input
// sizes: a 2 MB header of nested arrays overflowed the stack in nlohmann's recursive copy/dump.
TEST(SafetensorsReadErrors, DeepNestingIsRefusedWhileParsing) {
  TempDir dir("kiln_st_");
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  const std::string headers[] = {
      R"({"__metadata__":{"k":)" + deep + "}}",
      R"({"a":{"dtype":"F32","shape":[)" + deep + R"(],"data_offsets":[0,0]}})",
      R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0],"x":{"y":[]}}})",
  };
  for (const std::string& h : headers) {
    std::string p = dir.write("deep", st_bytes(h, ""));
    expect_error<FormatError>([&] { load_safetensors(p); },
                              {"load_safetensors: " + p, "header", "nested deeper"});
  }
  std::string aliases = R"({"__metadata__":{"kiln.aliases":"{\"b\":)" + deep + R"(}"}})";
  std::string p = dir.write("deep_aliases", st_bytes(aliases, ""));
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "kiln.aliases", "nested JSON"});
}

// 50k tensors and 50k aliases (a 4 MB header) took 45 s: the callback parser rescanned the
// header at every tensor, and each alias scanned every tensor. Now linear: well under a second.
TEST(Safetensors, ManyTensorsAndAliasesLoadInLinearTime) {
  TempDir dir("kiln_st_");
  const int n = 50000;
  std::string aliases = "{", header = "{";
  for (int i = 0; i < n; ++i) {
    const std::string qt = "\\\"";  // an escaped quote: the aliases are a JSON string value
    aliases += (i ? "," : "") + qt + "a" + std::to_string(i) + qt + ":" + qt + "t" +
               std::to_string(i) + qt;
    header += "\"t" + std::to_string(i) + R"(":{"dtype":"U8","shape":[1],"data_offsets":[)" +
              std::to_string(i) + "," + std::to_string(i + 1) + "]},";
  }
  header += R"("__metadata__":{"kiln.aliases":")" + aliases + "}\"}}";
  std::string p = dir.write("many", st_bytes(header, std::string(n, '\1')));
  const auto start = std::chrono::steady_clock::now();
  SafetensorsFile f = load_safetensors(p);
  EXPECT_EQ(f.all().size(), 2u * n);
  EXPECT_EQ(f.tensors[n - 1].first, "t" + std::to_string(n - 1));  // header order kept
  EXPECT_EQ(f.at("a123").raw_data(), f.at("t123").raw_data());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

TEST(SafetensorsReadErrors, MessagesQuoteLongNamesAndValuesCut) {
  TempDir dir("kiln_st_");
  const std::string name(100000, 'n');
  std::string p = dir.write(
      "long",
      st_bytes(R"({")" + name + R"(":{"dtype":"F16","shape":[],"data_offsets":[0,2]}})", "ab"));
  expect_error<FormatError>([&] { load_safetensors(p); },
                            {p, "tensor 'nnnnnnnn", "...': dtype", "F32 F64"});
  try {
    load_safetensors(p);
  } catch (const FormatError& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u) << e.what();
  }
  // Cut at a character boundary: 'a' then 2-byte characters, so byte 80 is inside one.
  std::string accents = "a";
  for (int i = 0; i < 50000; ++i) accents += "\u00e9";
  p = dir.write("utf8", st_bytes(R"({")" + accents + R"(":[]})", ""));
  std::string cut = "a";
  for (int i = 0; i < 39; ++i) cut += "\u00e9";
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "tensor '" + cut + "...': "});
  std::string ones = "1";
  for (int i = 0; i < 50000; ++i) ones += ",1";
  p = dir.write("value", st_bytes(R"({"__metadata__":{"k":[)" + ones + "]}}", ""));
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "value of 'k'", "[1,1,1,", "..."});
  try {
    load_safetensors(p);
  } catch (const FormatError& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u);
  }
}

TEST(SafetensorsReadErrors, LengthFieldValidation) {
  TempDir dir("kiln_st_");
  std::string p = dir.write("short", "abc");
  expect_error<FormatError>([&] { load_safetensors(p); },
                            {p, "file length", "at least 8 bytes", "got 3"});
  p = dir.write("long", le64(1000) + "{}");
  expect_error<FormatError>([&] { load_safetensors(p); },
                            {p, "header length", "1000", "exceeds the 2 bytes"});
  p = dir.write("huge", le64(UINT64_MAX) + "{}");
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "header length", "exceeds"});
  // A header length within the file but over the 100 MB cap (a sparse file: no disk used).
  p = dir.write("cap", le64((100ull << 20) + 1) + "{}");
  ASSERT_EQ(truncate(p.c_str(), (100ll << 20) + 64), 0);
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "header length", "100 MB limit"});
  p = dir.path("missing");
  expect_error<FormatError>([&] { load_safetensors(p); }, {p, "cannot open"});
  expect_error<FormatError>([&] { load_safetensors(dir.path(".")); }, {"not a regular file"});
}

}  // namespace
}  // namespace kiln
