// The ops. Each is defined once (src/ops/<family>.cc) and serves eager execution, tapes and,
// later, tracing. Binary elementwise ops broadcast like NumPy and require equal dtypes; shape
// errors are kiln::ShapeError naming the op and every shape. Images are NHWC, conv filters HWIO.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {

// ---- elementwise (src/ops/elementwise.cc) ----------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
// Comparisons return bool tensors and carry no gradient.
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
// cond (bool) ? a : b, all three broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Converts elements to `dtype` (float->int truncates toward zero, like C++).
Tensor cast(const Tensor& x, DType dtype);
// Repeats x to `shape` (NumPy broadcast rules) / sums x down to `shape` (its inverse).
Tensor broadcast_to(const Tensor& x, const Shape& shape);
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- activations (src/ops/activation.cc) -----------------------------------------------
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double alpha = 0.2);  // tf.nn.leaky_relu's default
Tensor gelu(const Tensor& x, bool approximate = false);  // exact erf form unless approximate
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor softmax(const Tensor& x, int axis = -1);
Tensor log_softmax(const Tensor& x, int axis = -1);

// ---- reductions (src/ops/reduce.cc); empty axes means all axes --------------------------
Tensor sum(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false);
Tensor argmax(const Tensor& x, int axis = -1, bool keepdims = false);  // int64

// ---- linear algebra (src/ops/matmul.cc) ------------------------------------------------
// [..., M, K] x [..., K, N] -> [..., M, N]; batch dims broadcast; 1-D operands as in NumPy
// are not accepted (reshape them). transpose_a/b transpose the last two dims first.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// ---- shape (src/ops/shape.cc) ----------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1
// Permutes dims (empty perm reverses them, like numpy.transpose).
Tensor transpose(const Tensor& x, std::vector<int> perm = {});
Tensor concat(const std::vector<Tensor>& xs, int axis = 0);
// Python-style slicing per dim: begin/end may be negative and are clamped, step >= 1.
// Dims past begins.size() are taken whole.
Tensor slice(const Tensor& x, std::vector<int64_t> begins, std::vector<int64_t> ends,
             std::vector<int64_t> steps = {});
// tf.gather: picks entries of x along `axis` by integer indices (int32 or int64);
// out shape = x.shape[:axis] + indices.shape + x.shape[axis+1:]. Out-of-range -> ValueError.
Tensor gather(const Tensor& x, const Tensor& indices, int axis = 0);
// indices (int32/int64) -> indices.shape + [depth], 1 at each index; out-of-range rows are 0.
Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype = float32);
// pads[i] = {before, after} for dim i (fewer pairs than dims pad the leading dims only).
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value = 0);

// ---- convolution and pooling (src/ops/conv.cc, src/ops/pool.cc), NHWC ---------------------
enum class Padding { kValid, kSame };
struct Conv2DOptions {
  std::array<int64_t, 2> strides{1, 1};
  Padding padding = Padding::kValid;
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
// x [N, H, W, C], filter [KH, KW, C / groups, O] -> [N, OH, OW, O].
Tensor conv2d(const Tensor& x, const Tensor& filter, const Conv2DOptions& options = {});
struct Pool2DOptions {
  std::array<int64_t, 2> pool_size{2, 2};
  std::array<int64_t, 2> strides{0, 0};  // 0: same as pool_size (Keras' default)
  Padding padding = Padding::kValid;
};
Tensor max_pool2d(const Tensor& x, const Pool2DOptions& options = {});
// Averages over the window's in-bounds elements only (Keras' "same" behaviour).
Tensor avg_pool2d(const Tensor& x, const Pool2DOptions& options = {});

// ---- nn (src/ops/nn.cc) ------------------------------------------------------------------
// Zeroes each element with probability `rate` and scales the rest by 1/(1-rate); the mask
// depends only on (seed, element index). Identity when !training or rate == 0.
Tensor dropout(const Tensor& x, double rate, uint64_t seed, bool training = true);
// The same with the mask named by a key (int64 [2] = {seed, counter}, e.g. from
// SeedGenerator::next()): mask element i depends only on (key, i), so a traced function that
// takes a new key per call draws a new mask per call, and the gradient reuses the call's mask.
Tensor dropout(const Tensor& x, double rate, const Tensor& key, bool training = true);
// Per-example loss -log softmax(logits)[label]: logits [N, C] float, labels [N] int32/int64
// in [0, C) (else ValueError) -> [N].
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);

// ---- int8 (src/ops/quantized.cc) -----------------------------------------------------------
// Per-tensor affine quantization: scale is a float32 scalar > 0, zero_point a uint8 or int8
// scalar whose dtype is the result's. q = clamp(round_half_even(x / scale) + zero_point) to the
// dtype's range (ONNX QuantizeLinear); dequantize gives (q - zero_point) * scale in float32.
// DTypeError/ShapeError for wrong dtypes or non-scalar parameters; ValueError for a scale that
// is not positive and finite. Neither carries a gradient.
Tensor quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point);
Tensor dequantize(const Tensor& q, const Tensor& scale, const Tensor& zero_point);

// A quantized Dense or Conv2D: uint8 activations (x_scale, x_zero_point: float32 and uint8
// scalars), int8 weights symmetric per output channel (weight_scales float32 [O]), float32
// bias [O] and an optional fused ReLU. Its output is
//   v = sum((x - x_zero_point) * weights) * x_scale * weight_scales[o] + bias[o]  (ReLU'd),
// float32 when y_scale and y_zero_point are undefined, else uint8
//   clamp(round_half_even(v * (1 / y_scale)) + y_zero_point, 0, 255).
// Accumulation is int32 and exact; the fast (oneDNN) and reference kernels agree bit for bit.
// On CPUs without VNNI, weights outside [-64, 63] run on the reference kernel (see
// src/ops/quantized.cc). Tensors are shared, not copied.
struct QuantizedLinear {
  Tensor x_scale, x_zero_point;
  Tensor weights;  // int8: [K, N] for quantized_matmul, HWIO [KH, KW, C/groups, O] for conv
  Tensor weight_scales, bias;
  bool relu = false;
  Tensor y_scale, y_zero_point;  // both or neither (ValueError otherwise)
};
// x uint8 [M, K] -> [M, N].
Tensor quantized_matmul(const Tensor& x, const QuantizedLinear& params);
// Whether this CPU's int8 kernels use VNNI (oneDNN's effective ISA, read once at run time).
bool int8_has_vnni();
// x uint8 NHWC -> NHWC, with conv2d's options and shape rules.
Tensor quantized_conv2d(const Tensor& x, const QuantizedLinear& params,
                        const Conv2DOptions& options = {});

// Dynamic-range quantized Dense (src/ops/quantized_dynamic.cc): x float32 [M, K] is quantized
// to uint8 per call from its own range [min(min(x), 0), max(max(x), 0)] (asymmetric, scale
// range / 255), then multiplied by int8 weights [K, N] (symmetric per output channel, scales
// float32 [N]) with int32 accumulation: float32 [M, N] = acc * x_scale * weight_scales[n] +
// bias[n], ReLU'd if relu. Fast (oneDNN) and reference kernels agree bit for bit. ValueError for
// a non-finite input or weight scale; DTypeError / ShapeError as quantized_matmul. Not
// differentiable.
Tensor dynamic_quantized_matmul(const Tensor& x, const Tensor& weights, const Tensor& weight_scales,
                                const Tensor& bias, bool relu = false);

// ---- fake quantization (src/ops/fake_quant.cc) ----------------------------------------------
// Rounds x (float32/float64) to the integer grid [qmin, qmax] of the range [lo, hi] (widened to
// contain 0 and nudged so that 0 is on the grid) and back to x's dtype. lo and hi have x's
// dtype and are scalars (per tensor) or [C] with C = x's last dim (per channel). {0, 255}: the
// uint8 activation grid of quantize_model; {-127, 127} with lo = -hi: symmetric int8 weights.
// Gradient (straight-through): dy where x lies in the nudged range, 0 outside; lo and hi get
// the sums of dy below / above it. ShapeError for other bound shapes, ValueError for qmin >=
// qmax, lo > hi or non-finite bounds.
Tensor fake_quant(const Tensor& x, const Tensor& lo, const Tensor& hi, int64_t qmin = 0,
                  int64_t qmax = 255);

// ---- random (src/ops/random.cc) -----------------------------------------------------------
// Random tensors named by a key (int64 [2], e.g. SeedGenerator::next()): ops, so a traced
// function drawing with a fresh key per call draws new numbers per call. Key {seed, 0} draws
// what random_uniform/random_normal(shape, ..., seed) in kiln/tensor.h draw; those seeded
// creators run on the host, so inside a trace they become constants (the same every call).
Tensor random_uniform(const Shape& shape, double low, double high, const Tensor& key,
                      DType dtype = float32);
Tensor random_normal(const Shape& shape, double mean, double stddev, const Tensor& key,
                     DType dtype = float32);

// ---- state (src/ops/state.cc) -------------------------------------------------------------
// The only ways to write a tensor in place: ops marked stateful, so tapes and traces see them
// and no graph pass removes, merges or folds them. Each bumps the target's version. Throws
// ShapeError naming both shapes and dtypes unless target and value match exactly.
void assign(const Tensor& target, const Tensor& value);
void assign_add(const Tensor& target, const Tensor& delta);
// A copy of `initial` that traces capture by reference (like a variable's value) instead of as
// a constant: state read and written by ops (optimizer step counts, generator states).
Tensor make_state(const Tensor& initial);

// A stream of random keys, Keras' SeedGenerator: next() returns {seed, counter} and advances
// the counter, as a stateful op, so a traced function draws new numbers on every call and the
// same numbers as eager code from the same seed. Not thread-safe: one generator per thread.
class SeedGenerator {
 public:
  explicit SeedGenerator(uint64_t seed = 0);
  Tensor next();
  uint64_t seed() const;
  int64_t counter() const;                        // keys handed out so far
  const Tensor& state() const { return state_; }  // int64 [2]

 private:
  Tensor state_;
};

// ---- operators -----------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
// A C++ number beside a tensor becomes a rank-0 tensor of the tensor's dtype.
Tensor scalar_like(double value, const Tensor& like);
inline Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
inline Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
inline Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
inline Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
inline Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

}  // namespace kiln
