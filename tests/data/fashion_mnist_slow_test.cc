// Loads the real Fashion-MNIST (Debian package dataset-fashion-mnist) when it is installed.
#include <algorithm>
#include <filesystem>
#include <vector>

#include "kiln/data.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

TEST(FashionMnistSlow, RealDataSet) {
  const std::string dir = default_fashion_mnist_dir();
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz") &&
      !std::filesystem::exists(dir + "/train-images-idx3-ubyte")) {
    GTEST_SKIP() << "Fashion-MNIST not installed in " << dir
                 << " (install the Debian package dataset-fashion-mnist)";
  }
  FashionMnist d = load_fashion_mnist();
  EXPECT_EQ(d.train_images.shape(), (Shape{60000, 28, 28, 1}));
  EXPECT_EQ(d.train_labels.shape(), (Shape{60000}));
  EXPECT_EQ(d.test_images.shape(), (Shape{10000, 28, 28, 1}));
  EXPECT_EQ(d.test_labels.shape(), (Shape{10000}));
  EXPECT_EQ(d.train_images.dtype(), float32);
  EXPECT_EQ(d.train_labels.dtype(), int32);

  // The set is balanced: 6000 train and 1000 test images per class.
  for (const auto& [labels, per_class] :
       {std::pair{d.train_labels, 6000}, std::pair{d.test_labels, 1000}}) {
    std::vector<int> count(10, 0);
    for (int v : labels.to_vector<int>()) {
      ASSERT_GE(v, 0);
      ASSERT_LE(v, 9);
      ++count[v];
    }
    for (int c = 0; c < 10; ++c) EXPECT_EQ(count[c], per_class) << "class " << c;
  }
  float lo = 1, hi = 0;
  const float* px = d.train_images.data<float>();
  for (int64_t i = 0; i < d.train_images.numel(); ++i) {
    lo = std::min(lo, px[i]);
    hi = std::max(hi, px[i]);
  }
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);

  // A full shuffled, prefetched epoch sees every example once.
  Dataset ds = Dataset(d.train_images, d.train_labels).shuffle(1).batch(256).prefetch(2);
  int64_t seen = 0;
  for (auto it = ds.begin_epoch(0); auto b = it.next();) seen += b->y.dim(0);
  EXPECT_EQ(seen, 60000);
}

}  // namespace
}  // namespace kiln
