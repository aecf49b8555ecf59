// Fuzzes load_safetensors. Seeds are written by kiln's own save_safetensors (every dtype, rank
// 0, empty tensors, metadata, tied tensors), plus a hand-made file laid out as in the spec.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "kiln/io.h"
#include "kiln/tensor.h"

namespace {

void write_seeds(const std::string& dir) {
  using kiln::from_vector;
  using kiln::Shape;
  kiln::save_safetensors(
      dir + "/every-dtype.safetensors",
      {{"f32", from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1e30f}, Shape{2, 3})},
       {"f64", from_vector<double>({3.14159, -1e-300}, Shape{2, 1})},
       {"i32", from_vector<int32_t>({-7, 2147483647, 0})},
       {"i64", from_vector<int64_t>({-1, 1}, Shape{1, 1, 2})},
       {"i8", from_vector<int8_t>({-128, 127})},
       {"u8", from_vector<uint8_t>({0, 255, 17})},
       {"bool", from_vector<bool>({true, false, true}, Shape{3, 1})},
       {"scalar", kiln::scalar(42.5)},
       {"empty", kiln::empty(Shape{2, 0, 3}, kiln::int32)}},
      {{"format", "kiln"}, {"epoch", "3"}});
  kiln::Tensor w = from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  kiln::save_safetensors(dir + "/tied.safetensors",
                         {{"enc.w", w}, {"dec.w", w}, {"b", from_vector<float>({0.5f})}},
                         {{"note", "tied"}});
  kiln::save_safetensors(dir + "/none.safetensors", {});
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}})";
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  kiln::fuzz::write_file(dir, "spec.safetensors", len + header + std::string(16, '\x01'));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzz::maybe_write_seeds(argc, argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  // The header text, its JSON tree (tens of bytes per byte of JSON at worst) and the tensors.
  const size_t bound = 64 * size + (2u << 20);
  kiln::fuzz::expect_only_kiln_errors(path, bound, [&] {
    kiln::SafetensorsFile f = kiln::load_safetensors(path);
    (void)f.all();  // resolves every alias: must not throw once loaded
    // What loaded is stored in the file: the tensors' bytes cannot exceed it.
    size_t stored = 0;
    for (const auto& entry : f.tensors) stored += entry.second.nbytes();
    if (stored > size) kiln::fuzz::fail("load_safetensors returned more bytes than the file holds");
  });
  return 0;
}
