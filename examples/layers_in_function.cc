// Layers created inside a kiln::function (kiln's tf.function), called many times.
//
// TensorFlow refuses this ("tf.function only supports singleton tf.Variables created on the
// first call"). kiln's rule: the first trace creates the layers' variables, named from the
// function's name and creation order ("mlp/dense/kernel"); every later call and every retrace
// (a new input shape) gets the same variables back. In eager code the same lambda would make
// new layers, with new variables, on every call.
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include <iostream>

int main() {
  kiln::Function mlp = kiln::function(
      [](const kiln::Tensor& x) {
        kiln::Dense hidden(32, "relu");  // created while tracing: variables made once
        kiln::Dense out(10);
        return out(hidden(x));
      },
      {.name = "mlp"});

  kiln::Tensor batch64 = kiln::random_normal({64, 20}, 0, 1, 1);
  kiln::Tensor batch8 = kiln::random_normal({8, 20}, 0, 1, 2);
  for (int i = 0; i < 1000; ++i) mlp(i % 2 ? batch64 : batch8);  // two input shapes

  kiln::FunctionCacheInfo info = mlp.cache_info();
  std::cout << "1000 calls with 2 input shapes: " << info.traces << " traces, " << info.hits
            << " hits, " << info.variables << " variables (2 kernels, 2 biases)\n";
  std::cout << "why the second trace happened: " << info.last_retrace_reason << "\n";
  for (const kiln::Signature& s : info.signatures)
    std::cout << "  cached " << s.to_string() << "\n";
  std::cout << "variable created by the first trace: "
            << (kiln::VariableStore::default_store().contains("mlp/dense/kernel")
                    ? "mlp/dense/kernel"
                    : "missing")
            << "\n";
  return info.traces == 2 && info.hits == 998 && info.variables == 4 ? 0 : 1;
}
