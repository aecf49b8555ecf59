// A subclassed model of two Dense layers, like `class Mlp(keras.Model)` in Keras.
//
// The constructor creates and tracks the layers (add_layer); call() says how data flows.
// Weights are created on the first call, from the input's shape, exactly as in Keras.
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>

class Mlp : public kiln::Model {
 public:
  Mlp() : Model("mlp") {
    hidden_ = &add_layer<kiln::Dense>(16, "relu");  // constructed, owned and tracked
    out_ = &add_layer<kiln::Dense>(1);
  }
  std::string type_name() const override { return "Mlp"; }

 protected:
  kiln::Tensor call(const kiln::Tensor& x, bool training) override {
    return (*out_)((*hidden_)(x, training), training);
  }

 private:
  kiln::Dense* hidden_;
  kiln::Dense* out_;
};

int main() {
  Mlp model;
  // Before any data: shapes and parameter counts from the input shape alone.
  std::cout << model.summary(kiln::Shape{3});

  // Learn y = x0 - 2 x1 + 0.5 x2 with a few Adam steps.
  kiln::Tensor x = kiln::random_normal({64, 3}, 0, 1, 1);
  kiln::Tensor y = kiln::matmul(x, kiln::from_vector<float>({1, -2, 0.5}, {3, 1}));
  kiln::Adam opt(1e-2);
  kiln::MeanSquaredError mse;
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    kiln::GradientTape tape;  // trainable weights are watched automatically
    kiln::Tensor loss = mse(y, model(x, /*training=*/true));
    std::vector<kiln::Variable> weights = model.trainable_weights();
    std::vector<kiln::Tensor> values;
    for (const kiln::Variable& w : weights) values.push_back(w.value());
    opt.apply_gradients(weights, tape.gradient(loss, values));
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::cout << "weights: " << model.trainable_weights().size() << " (two kernels, two biases)\n";
  std::cout << "mse after 1 step " << first << ", after 200 steps " << last << "\n";
  return last < first / 10 ? 0 : 1;
}
