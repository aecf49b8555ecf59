// A Keras-style layer written from scratch, shared weights, and one training step.
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>

// build() creates weights once, on the first call; call() computes.
class Scale : public kiln::Layer {
 public:
  Scale() : Layer("", "scale") {}
  std::string type_name() const override { return "Scale"; }

 protected:
  void build(const kiln::Shape& in) override {
    gain_ = add_weight("gain", {in.dim(-1)}, kiln::initializers::ones());
  }
  kiln::Tensor call(const kiln::Tensor& x, bool) override { return x * gain_.value(); }
  kiln::Shape compute_output_shape(const kiln::Shape& in) override { return in; }

 private:
  kiln::Variable gain_;
};

// A model whose two branches use the same Dense layer: its weights exist once.
class TwoTower : public kiln::Model {
 public:
  TwoTower() : Model("", "two_tower") {
    shared_ = &add_layer<kiln::Dense>(8, "relu");
    scale_ = &add_layer<Scale>();
    head_ = &add_layer<kiln::Dense>(1);
  }
  std::string type_name() const override { return "TwoTower"; }

 protected:
  kiln::Tensor call(const kiln::Tensor& x, bool training) override {
    kiln::Tensor a = (*shared_)(x, training);
    kiln::Tensor b = (*shared_)(x * 2.0, training);  // same weights, second input
    return (*head_)((*scale_)(a + b, training), training);
  }

 private:
  kiln::Dense* shared_;
  Scale* scale_;
  kiln::Dense* head_;
};

int main() {
  TwoTower model;
  std::cout << model.summary(kiln::Shape{4});  // shapes and counts before any data

  kiln::Tensor x = kiln::random_normal({16, 4}, 0, 1, 1);
  kiln::Tensor y = kiln::random_normal({16, 1}, 0, 1, 2);
  kiln::Adam opt(1e-2);
  kiln::MeanSquaredError mse;
  double first = 0, last = 0;
  for (int step = 0; step < 50; ++step) {
    kiln::GradientTape tape;  // trainable weights are watched automatically
    kiln::Tensor loss = mse(y, model(x, true));
    auto weights = model.trainable_weights();
    std::vector<kiln::Tensor> values;
    for (auto& w : weights) values.push_back(w.value());
    opt.apply_gradients(weights, tape.gradient(loss, values));
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::cout << "loss " << first << " -> " << last << "\n";
  return last < first ? 0 : 1;
}
