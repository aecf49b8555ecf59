// Tensors, ops and a gradient tape: the core of kiln in thirty lines.
#include <kiln/kiln.h>

#include <iostream>

int main() {
  using namespace kiln;
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = random_normal({3, 2}, 0, 0.1, /*seed=*/42);
  std::cout << "x =\n" << to_string(x) << "\n";

  GradientTape tape;
  tape.watch(w);
  Tensor y = relu(matmul(x, w)) * 2.0 + 1.0;  // operators read naturally
  Tensor loss = mean(square(y));
  Tensor dw = tape.gradient(loss, {w})[0];
  std::cout << "loss = " << loss.item<float>() << "\ndloss/dw =\n" << to_string(dw) << "\n";

  try {
    matmul(x, x);  // [2, 3] x [2, 3] does not fit
  } catch (const ShapeError& e) {
    std::cout << "as expected: " << e.what() << "\n";
  }
  return dw.shape() == w.shape() ? 0 : 1;
}
