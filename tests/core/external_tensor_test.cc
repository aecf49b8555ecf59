#include "kiln/external_tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <thread>
#include <vector>

#include "kiln/ops.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

void count_release(void* context) noexcept { ++*static_cast<int*>(context); }

TEST(ExternalTensor, SharesMemoryBothWays) {
  std::vector<float> buffer = {1, 2, 3, 4, 5, 6};
  int released = 0;
  {
    Tensor t = from_external(buffer.data(), {2, 3}, float32, &count_release, &released);
    EXPECT_EQ(t.raw_data(), buffer.data());
    EXPECT_EQ(t.to_vector<float>(), buffer);
    buffer[4] = 50;  // the owner writes: the tensor sees it
    EXPECT_EQ(t.data<float>()[4], 50.f);
    t.copy_from(full({2, 3}, 7));  // kiln writes: the owner sees it
    EXPECT_EQ(buffer, std::vector<float>(6, 7.f));
    EXPECT_EQ(released, 0);
  }
  EXPECT_EQ(released, 1);
}

TEST(ExternalTensor, ViewsAndResultsKeepItAlive) {
  std::vector<int64_t> buffer = {1, 2, 3, 4, 5, 6, 7, 8};
  int released = 0;
  Tensor row;
  {
    Tensor t = from_external(buffer.data(), {4, 2}, int64, &count_release, &released);
    row = t.rows(2, 3).reshape({2});  // a view: shares the external storage
  }
  EXPECT_EQ(released, 0);
  EXPECT_EQ(row.to_vector<int64_t>(), (std::vector<int64_t>{5, 6}));
  row = Tensor();
  EXPECT_EQ(released, 1);
}

TEST(ExternalTensor, ReleasedOnTheThreadDroppingTheLastTensor) {
  double value = 3;
  int released = 0;
  Tensor t = from_external(&value, {}, float64, &count_release, &released);
  std::thread([t = std::move(t)]() mutable { t = Tensor(); }).join();
  EXPECT_EQ(released, 1);
}

// kiln's own storage is 64-byte aligned; external memory need only be element-aligned. The
// kernels (oneDNN and ours) must give the same values as on a 64-byte-aligned copy.
TEST(ExternalTensor, ElementAlignedMemoryRunsEveryKernelKind) {
  alignas(64) float buffer[1 + 17 * 19 + 19 * 13];
  for (size_t i = 0; i < std::size(buffer); ++i) buffer[i] = static_cast<float>(i % 23) - 11.f;
  int released = 0;
  {
    float* a_data = buffer + 1;  // 4 bytes past a 64-byte boundary
    Tensor a = from_external(a_data, {17, 19}, float32, &count_release, &released);
    Tensor b = from_external(a_data + 17 * 19, {19, 13}, float32, &count_release, &released);
    ASSERT_NE(reinterpret_cast<uintptr_t>(a.raw_data()) % 64, 0u);
    const Tensor ac = a.clone(), bc = b.clone();
    EXPECT_EQ(matmul(a, b).to_vector<float>(), matmul(ac, bc).to_vector<float>());
    EXPECT_EQ(add(a, a).to_vector<float>(), add(ac, ac).to_vector<float>());
    EXPECT_EQ(relu(a).to_vector<float>(), relu(ac).to_vector<float>());
    EXPECT_EQ(sum(a, {1}).to_vector<float>(), sum(ac, {1}).to_vector<float>());
    // NHWC [1, 17, 19, 1] images and a [3, 3, 1, 13] filter viewed from the same memory.
    Tensor image = a.reshape({1, 17, 19, 1}), filter = b.rows(0, 9).reshape({3, 3, 1, 13});
    const Tensor image_copy = image.clone(), filter_copy = filter.clone();
    EXPECT_EQ(conv2d(image, filter).to_vector<float>(),
              conv2d(image_copy, filter_copy).to_vector<float>());
    EXPECT_EQ(max_pool2d(image).to_vector<float>(), max_pool2d(image_copy).to_vector<float>());
  }
  EXPECT_EQ(released, 2);
}

TEST(ExternalTensor, Errors) {
  int released = 0;
  alignas(8) unsigned char bytes[16] = {};
  expect_error<ValueError>([&] { from_external(nullptr, {2}, float32, &count_release, &released); },
                           {"from_external", "null", "8 bytes"});
  expect_error<ValueError>(
      [&] { from_external(bytes + 2, {2}, float32, &count_release, &released); },
      {"from_external", "not aligned to 4 bytes", "float32"});
  expect_error<ValueError>([&] { from_external(bytes, {2}, float32, nullptr, nullptr); },
                           {"from_external", "release callback is null"});
  EXPECT_EQ(released, 0);  // refused: the caller still owns the memory
  // Empty is fine with null data; int8 needs no alignment.
  EXPECT_EQ(from_external(nullptr, {0, 3}, float32, &count_release, &released).numel(), 0);
  EXPECT_EQ(from_external(bytes + 3, {2}, int8, &count_release, &released).numel(), 2);
  EXPECT_EQ(released, 2);
}

}  // namespace
}  // namespace kiln
