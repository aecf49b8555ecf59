// Train the mlp on Fashion-MNIST for one epoch with fit(), then save and reload its weights.
#include <kiln/data.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>

int main() {
  kiln::FashionMnist data;
  try {
    data = kiln::load_fashion_mnist();
  } catch (const kiln::Error& e) {
    std::cerr << e.what() << "\n";
    return 77;  // skipped: the data set is not installed
  }
  auto model = kiln::make_mlp();
  kiln::Adam opt(1e-3);
  kiln::SparseCategoricalCrossentropy loss;
  kiln::FitOptions options;
  options.epochs = 1;
  options.validation = kiln::Dataset(data.test_images, data.test_labels).batch(500);
  kiln::Dataset train =
      kiln::Dataset(data.train_images, data.train_labels).shuffle(0).batch(64).prefetch(2);
  kiln::History h = kiln::fit(*model, opt, loss, train, options);

  kiln::save_weights(*model, "example_mlp.safetensors");
  auto again = kiln::make_mlp();
  kiln::load_weights(*again, "example_mlp.safetensors");
  kiln::Logs logs = kiln::evaluate(*again, loss, *options.validation);
  std::cout << "reloaded model: test accuracy " << logs["accuracy"] << "\n";
  return logs["accuracy"] > 0.8 ? 0 : 1;
}
