// Sharing weights between layers, Keras style, and counting what exists.
//
// In Keras two Dense layers never share weights unless you arrange it; kiln is the same, and
// says so: a shared variable is one tensor, so it is counted once, saved once, and a training
// step updates it once with the sum of both layers' gradients.
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>
#include <set>

// Distinct kernels among some Dense layers (a kernel is a Variable; id() tells them apart).
int count_kernels(std::initializer_list<const kiln::Dense*> layers) {
  std::set<const void*> ids;
  for (const kiln::Dense* d : layers) ids.insert(d->kernel().id());
  return static_cast<int>(ids.size());
}

int main() {
  kiln::Tensor x = kiln::random_normal({2, 4}, 0, 1, 1);

  // 1. Two independent layers: each builds its own kernel on its first call.
  kiln::Dense a(3), b(3);
  a(x);
  b(x);
  std::cout << "independent layers a, b: " << count_kernels({&a, &b}) << " kernels\n";

  // 2. Two layers sharing one kernel explicitly: `c` takes `d`'s weights before it is built
  //    (DenseOptions::share_weights_with does the same in one line).
  kiln::Dense c(3), d(3);
  c.share_weights_from(d);
  c(x);
  std::cout << "c.share_weights_from(d): " << count_kernels({&c, &d}) << " kernel ("
            << c.kernel().name() << ")\n";

  // The same input gives the same output through either layer: it is the same kernel.
  const bool same = c(x).to_vector<float>() == d(x).to_vector<float>();
  std::cout << "c(x) == d(x): " << (same ? "yes" : "no") << "\n";

  // One model holding both shows the shared kernel once in its weights.
  kiln::Sequential seq;
  auto first = std::make_shared<kiln::Dense>(4);
  auto second =
      std::make_shared<kiln::Dense>(4, kiln::DenseOptions{.share_weights_with = first.get()});
  seq.add(first);
  seq.add(second);
  seq(x);
  std::cout << "a Sequential of two sharing Dense(4) layers has " << seq.weights().size()
            << " weights (one kernel, one bias) and " << seq.count_params() << " params\n";
  return count_kernels({&a, &b}) == 2 && count_kernels({&c, &d}) == 1 && same &&
                 seq.weights().size() == 2
             ? 0
             : 1;
}
