// Random creators as ops: random_uniform(key) and random_normal(key) draw a tensor named by a
// key (int64 [2] = {seed, counter}, e.g. from SeedGenerator::next()), so inside a traced
// function a new key per call draws new numbers per call. Counter 0 draws exactly what the
// seeded host creators random_uniform(shape, low, high, seed) draw.
//
// attrs = {ints: dtype, rank, dims...; floats: low, high (uniform) or mean, stddev (normal)}
#include <algorithm>
#include <string>

#include "core/random.h"
#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kiln/error.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using detail::ptr;

Shape shape_of(const Attrs& a) {
  Shape s;
  for (int k = 0; k < a.i(1); ++k) s.push_back(a.i(2 + k));
  return s;
}

void random_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  if (in[0].dtype != DType::kInt64 || in[0].shape != Shape{2}) {
    throw ShapeError("random: the key must be int64 [2] ({seed, counter}), got " +
                     to_string(in[0].shape) + " " + std::string(dtype_name(in[0].dtype)));
  }
  const DType dt = static_cast<DType>(a.i(0));
  require_floating("random", dt);
  out[0] = {shape_of(a), dt};
}

// Philox stream 0 is random_uniform's, 1 random_normal's (as in core/tensor.cc).
template <bool kNormal>
void random_reference(const KernelArgs& k) {
  const int64_t* key = ptr<int64_t>(k.in[0]);
  const uint64_t seed = detail::key_seed(key[0], key[1]);
  const Tensor& out = k.out[0];
  const int64_t n = out.numel();
  const double a = k.attrs.f(0), b = k.attrs.f(1);
  detail::visit_floating(out.dtype(), [&]<typename T>() {
    T* o = ptr<T>(out);
    constexpr int64_t kBlock = 256;
    double buf[kBlock];
    for (int64_t base = 0; base < n; base += kBlock) {
      const int64_t len = std::min(kBlock, n - base);
      // Blocks start at even offsets: each Philox counter gives two values.
      if constexpr (kNormal) {
        detail::philox_normal_at(seed, 1, base, len, buf);
        for (int64_t i = 0; i < len; ++i) o[base + i] = static_cast<T>(a + b * buf[i]);
      } else {
        detail::philox_uniform_at(seed, 0, base, len, buf);
        for (int64_t i = 0; i < len; ++i) o[base + i] = static_cast<T>(a + (b - a) * buf[i]);
      }
    }
  });
}

Attrs random_attrs(const Shape& shape, DType dtype, double a, double b) {
  Attrs attrs;
  attrs.add_int(static_cast<int64_t>(dtype)).add_int(shape.rank());
  for (int64_t d : shape) attrs.add_int(d);
  attrs.add_float(a).add_float(b);
  return attrs;
}

constexpr AttrField kUniformFields[] = {{"dtype", AttrType::kDType},
                                        {"rank", AttrType::kInt},
                                        {"shape", AttrType::kShape, kRest},
                                        {"low", AttrType::kFloat},
                                        {"high", AttrType::kFloat}};
constexpr AttrSchema kUniformAttrs{kUniformFields};
constexpr AttrField kNormalFields[] = {{"dtype", AttrType::kDType},
                                       {"rank", AttrType::kInt},
                                       {"shape", AttrType::kShape, kRest},
                                       {"mean", AttrType::kFloat},
                                       {"stddev", AttrType::kFloat}};
constexpr AttrSchema kNormalAttrs{kNormalFields};

}  // namespace

namespace ops {
const OpDef kRandomUniform{.name = "random_uniform",
                           .num_inputs = 1,
                           .num_outputs = 1,
                           .infer = random_infer,
                           .reference = random_reference<false>,
                           .flags = kRandom | kNotDifferentiable,
                           .attrs = &kUniformAttrs};
const OpDef kRandomNormal{.name = "random_normal",
                          .num_inputs = 1,
                          .num_outputs = 1,
                          .infer = random_infer,
                          .reference = random_reference<true>,
                          .flags = kRandom | kNotDifferentiable,
                          .attrs = &kNormalAttrs};
}  // namespace ops

Tensor random_uniform(const Shape& shape, double low, double high, const Tensor& key, DType dtype) {
  if (!(low <= high)) throw ValueError("random_uniform: low must be <= high");
  return run_op(ops::kRandomUniform, {key}, random_attrs(shape, dtype, low, high));
}

Tensor random_normal(const Shape& shape, double mean, double stddev, const Tensor& key,
                     DType dtype) {
  if (!(stddev >= 0)) throw ValueError("random_normal: stddev must be >= 0");
  return run_op(ops::kRandomNormal, {key}, random_attrs(shape, dtype, mean, stddev));
}

}  // namespace kiln
