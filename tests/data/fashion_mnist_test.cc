// load_fashion_mnist on small files made here: conversion, directory lookup and every error.
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/data.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::expect_error;
using testing::TempDir;
namespace fs = std::filesystem;

std::string idx_u8(const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s = {'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int b = 3; b >= 0; --b) s.push_back(static_cast<char>((d >> (8 * b)) & 0xFF));
  }
  return s + data;
}

void write(const std::string& path, const std::string& bytes, bool gz) {
  if (!gz) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
    return;
  }
  gzFile f = gzopen((path + ".gz").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// A fake data set: n_train/n_test images whose pixels are all 51 * (i % 6), labels i % 10.
void make_set(const std::string& dir, uint32_t n_train, uint32_t n_test, uint32_t n_train_labels,
              uint8_t bad_label = 0) {
  auto images = [](uint32_t n) {
    std::string px;
    for (uint32_t i = 0; i < n; ++i) px += std::string(28 * 28, static_cast<char>(51 * (i % 6)));
    return idx_u8({n, 28, 28}, px);
  };
  auto labels = [&](uint32_t n) {
    std::string l;
    for (uint32_t i = 0; i < n; ++i) l.push_back(static_cast<char>(i % 10));
    if (bad_label && n) l[n - 1] = static_cast<char>(bad_label);
    return idx_u8({n}, l);
  };
  write(dir + "/train-images-idx3-ubyte", images(n_train), true);
  write(dir + "/train-labels-idx1-ubyte", labels(n_train_labels), true);
  write(dir + "/t10k-images-idx3-ubyte", images(n_test), false);  // uncompressed also works
  write(dir + "/t10k-labels-idx1-ubyte", labels(n_test), false);
}

TEST(FashionMnist, LoadsScalesAndConverts) {
  TempDir dir("kiln_fmnist_");
  make_set(dir.path(), 7, 3, 7);
  FashionMnist d = load_fashion_mnist(dir.path());
  EXPECT_EQ(d.train_images.shape(), (Shape{7, 28, 28, 1}));
  EXPECT_EQ(d.train_images.dtype(), float32);
  EXPECT_EQ(d.train_labels.shape(), (Shape{7}));
  EXPECT_EQ(d.train_labels.dtype(), int32);
  EXPECT_EQ(d.test_images.shape(), (Shape{3, 28, 28, 1}));
  EXPECT_EQ(d.test_labels.to_vector<int>(), (std::vector<int>{0, 1, 2}));
  const float* px = d.train_images.data<float>();
  EXPECT_FLOAT_EQ(px[0], 0.0f);
  EXPECT_FLOAT_EQ(px[1 * 784 + 5], 0.2f);    // 51 / 255
  EXPECT_FLOAT_EQ(px[5 * 784 + 783], 1.0f);  // 255 / 255
  EXPECT_EQ(d.train_labels.to_vector<int>(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(FashionMnist, DefaultDirComesFromTheEnvironment) {
  const char* old = std::getenv("KILN_DATA_DIR");
  std::string saved = old ? old : "";
  TempDir dir("kiln_fmnist_");
  setenv("KILN_DATA_DIR", dir.path().c_str(), 1);
  EXPECT_EQ(default_fashion_mnist_dir(), dir.path());
  fs::create_directory(dir.path() + "/fashion-mnist");
  make_set(dir.path() + "/fashion-mnist", 2, 1, 2);
  EXPECT_EQ(default_fashion_mnist_dir(), dir.path() + "/fashion-mnist");
  EXPECT_EQ(load_fashion_mnist().train_images.dim(0), 2);
  unsetenv("KILN_DATA_DIR");
  EXPECT_EQ(default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) setenv("KILN_DATA_DIR", saved.c_str(), 1);
}

TEST(FashionMnistErrors, MissingDirectoryOrFileNamesTheDirAndTheFix) {
  TempDir dir("kiln_fmnist_");
  std::string missing = dir.path() + "/nowhere";
  expect_error<FormatError>(
      [&] { load_fashion_mnist(missing); },
      {missing, "install the Debian package dataset-fashion-mnist", "or pass --data DIR"});
  make_set(dir.path(), 2, 1, 2);
  fs::remove(dir.path() + "/t10k-labels-idx1-ubyte");
  expect_error<FormatError>(
      [&] { load_fashion_mnist(dir.path()); },
      {dir.path(), "t10k-labels-idx1-ubyte", "install the Debian package dataset-fashion-mnist"});
}

TEST(FashionMnistErrors, CountMismatch) {
  TempDir dir("kiln_fmnist_");
  make_set(dir.path(), 4, 1, 3);
  expect_error<FormatError>([&] { load_fashion_mnist(dir.path()); },
                            {"train-labels-idx1-ubyte", "expected 4 labels", "got 3"});
}

TEST(FashionMnistErrors, LabelOutOfRange) {
  TempDir dir("kiln_fmnist_");
  make_set(dir.path(), 4, 1, 4, /*bad_label=*/10);
  expect_error<FormatError>([&] { load_fashion_mnist(dir.path()); },
                            {"train-labels", "[0, 9]", "got 10", "index 3"});
}

TEST(FashionMnistErrors, WrongImageDims) {
  TempDir dir("kiln_fmnist_");
  make_set(dir.path(), 2, 1, 2);
  write(dir.path() + "/train-images-idx3-ubyte", idx_u8({2, 27, 28}, std::string(2 * 27 * 28, 'a')),
        true);
  expect_error<FormatError>([&] { load_fashion_mnist(dir.path()); },
                            {"train-images", "[N, 28, 28]", "[2, 27, 28]"});
}

TEST(FashionMnistErrors, MalformedFileIsReportedByReadIdx) {
  TempDir dir("kiln_fmnist_");
  make_set(dir.path(), 2, 1, 2);
  write(dir.path() + "/t10k-images-idx3-ubyte", idx_u8({1, 28, 28}, "short"), false);
  expect_error<FormatError>([&] { load_fashion_mnist(dir.path()); },
                            {"t10k-images-idx3-ubyte", "truncated"});
}

}  // namespace
}  // namespace kiln
