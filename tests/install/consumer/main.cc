// Uses only the installed headers and library: a tensor op, a tape and a layer.
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>

int main() {
  kiln::Tensor x = kiln::ones({2, 3});
  kiln::Dense dense(4);
  kiln::GradientTape tape;
  kiln::Tensor y = kiln::sum(dense(x));
  auto grads = tape.gradient(y, {dense.weights()[0].value()});
  std::cout << "consumer ok: " << kiln::to_string(y) << "\n";
  return grads[0].shape() == kiln::Shape{3, 4} ? 0 : 1;
}
