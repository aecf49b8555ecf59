// End to end: the ready-made MLP on Fashion-MNIST, one epoch, must reach Keras-like accuracy.
// Skipped when the data set (Debian package dataset-fashion-mnist) is not installed.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "kiln/data.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/losses.h"
#include "kiln/nn/models.h"
#include "kiln/nn/optimizers.h"
#include "kiln/nn/training.h"

namespace kiln {
namespace {

TEST(TrainingSlow, MlpOnFashionMnistReaches84PercentInOneEpoch) {
  FashionMnist d;
  try {
    d = load_fashion_mnist();
  } catch (const FormatError& e) {
    GTEST_SKIP() << "Fashion-MNIST not available: " << e.what();
  }
  set_global_seed(0);
  auto model = make_mlp();
  Adam opt(1e-3);
  SparseCategoricalCrossentropy loss;
  FitOptions o;
  o.epochs = 1;
  o.verbose = 2;
  o.validation = Dataset(d.test_images, d.test_labels).batch(1000);
  Dataset train = Dataset(d.train_images, d.train_labels).shuffle(0).batch(64).prefetch(2);
  History h = fit(*model, opt, loss, train, o);
  std::printf("mlp epoch: %.3f s train, loss %.4f, accuracy %.4f, test accuracy %.4f\n",
              h["seconds"][0], h["loss"][0], h["accuracy"][0], h["val_accuracy"][0]);
  EXPECT_GE(h["val_accuracy"][0], 0.84);
  EXPECT_EQ(opt.iterations(), 938);  // ceil(60000 / 64)
}

}  // namespace
}  // namespace kiln
