// int8 ops: per-tensor affine quantization of activations (uint8 or int8 with a scale and a
// zero point), symmetric per-output-channel int8 weights, int32 accumulation.
//
//   quantize          (x f32, scale f32 [], zero_point u8|s8 [])      -> u8|s8, x's shape
//   dequantize        (q u8|s8, scale f32 [], zero_point q's dtype []) -> f32
//   quantized_matmul  (a u8 [M, K], a_scale, a_zero_point, w s8 [K, N], w_scale f32 [N],
//                      bias f32 [N] [, y_scale f32 [], y_zero_point u8 []]) -> [M, N]
//                      attrs = {relu}
//   quantized_conv2d  (x u8 [N, H, W, C], x_scale, x_zero_point, w s8 [KH, KW, C/groups, O],
//                      w_scale f32 [O], bias f32 [O] [, y_scale, y_zero_point])
//                      attrs = {6 conv2d attrs (ops/conv.cc), relu}
//
// quantize: q = clamp(round_half_even(x / scale) + zero_point) to the dtype's range (ONNX
// QuantizeLinear). dequantize: (q - zero_point) * scale. The two linear ops compute
//   acc[i, n] = sum_k (a[i, k] - a_zero_point) * w[k, n]                (int32, exact)
//   v = float(acc) * (a_scale * w_scale[n]) + bias[n], then max(v, 0) if relu
// and return v (float32) with 6 inputs, or with 8 the uint8
//   clamp(round_half_even(v * (1 / y_scale)) + y_zero_point, 0, 255).
// Convolution padding is real zero (the zero point in the quantized domain), as in ONNX.
//
// Reference kernels are integer loops; fast kernels let oneDNN compute the int32 accumulators
// (u8 x s8 with the source zero point) and both paths then run the one epilogue function below,
// so fast and reference agree bit for bit. On a CPU without VNNI oneDNN multiplies with
// vpmaddubsw, which saturates a pair of u8*s8 products at int16: weights in [-64, 63] (7 bits,
// what compress::quantize_model chooses there) cannot saturate, so the fast kernels run only
// when every weight is in that range on such a CPU (read by oneDNN's effective ISA at run
// time) and leave other weights to the reference.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "kernels/onednn/primitive_cache.h"
#include "kiln/cache.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

std::string dtype_str(DType t) { return std::string(dtype_name(t)); }

void require_dtype(const char* op, const char* what, DType got, DType want) {
  if (got != want) {
    throw DTypeError(std::string(op) + ": " + what + " must be " + dtype_str(want) + ", got " +
                     dtype_str(got));
  }
}

void require_scalar(const char* op, const char* what, const Meta& m) {
  if (m.shape.rank() != 0) {
    throw ShapeError(std::string(op) + ": " + what + " must be a scalar (shape []), got " +
                     to_string(m.shape));
  }
}

bool is_int8(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

// Throws ValueError unless the scale is positive and finite (a zero scale divides by zero).
float checked_scale(const char* op, const char* what, const Tensor& s) {
  const float v = *detail::ptr<float>(s);
  if (!(v > 0.f) || !std::isfinite(v)) {
    throw ValueError(std::string(op) + ": " + what + " must be positive and finite, got " +
                     std::to_string(v));
  }
  return v;
}

// Round half to even of v, for |v| < 2^22: adding 1.5 * 2^23 leaves no fraction bits, so the
// FPU's default rounding does it (vectorizes on every x86, unlike nearbyint without SSE4.1).
inline float round_even(float v) {
  constexpr float kMagic = 12582912.f;
  return (v + kMagic) - kMagic;
}

// v -> clamp(round_half_even(v) + zp, lo, hi); v is clamped first so the rounding trick holds.
inline int32_t to_int(float v, int32_t zp, int32_t lo, int32_t hi) {
  v = std::min(std::max(v, -1024.f), 1024.f);
  const int32_t q = static_cast<int32_t>(round_even(v)) + zp;
  return std::min(std::max(q, lo), hi);
}

// ---- quantize ------------------------------------------------------------------------------

void quantize_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  const char* op = "quantize";
  require_dtype(op, "x", in[0].dtype, DType::kFloat32);
  require_dtype(op, "scale", in[1].dtype, DType::kFloat32);
  require_scalar(op, "scale", in[1]);
  require_scalar(op, "zero_point", in[2]);
  if (!is_int8(in[2].dtype)) {
    throw DTypeError(std::string(op) + ": zero_point must be uint8 or int8, got " +
                     dtype_str(in[2].dtype));
  }
  out[0] = {in[0].shape, in[2].dtype};
}

void quantize_reference(const KernelArgs& k) {
  const float inv = 1.f / checked_scale("quantize", "scale", k.in[1]);
  const float* x = detail::ptr<float>(k.in[0]);
  const int64_t n = k.in[0].numel();
  if (k.out[0].dtype() == DType::kUInt8) {
    const int32_t zp = *detail::ptr<uint8_t>(k.in[2]);
    uint8_t* q = detail::ptr<uint8_t>(k.out[0]);
    for (int64_t i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(to_int(x[i] * inv, zp, 0, 255));
  } else {
    const int32_t zp = *detail::ptr<int8_t>(k.in[2]);
    int8_t* q = detail::ptr<int8_t>(k.out[0]);
    for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(to_int(x[i] * inv, zp, -128, 127));
  }
}

// ---- dequantize ----------------------------------------------------------------------------

void dequantize_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  const char* op = "dequantize";
  if (!is_int8(in[0].dtype)) {
    throw DTypeError(std::string(op) + ": q must be uint8 or int8, got " + dtype_str(in[0].dtype));
  }
  require_dtype(op, "scale", in[1].dtype, DType::kFloat32);
  require_scalar(op, "scale", in[1]);
  require_dtype(op, "zero_point", in[2].dtype, in[0].dtype);
  require_scalar(op, "zero_point", in[2]);
  out[0] = {in[0].shape, DType::kFloat32};
}

void dequantize_reference(const KernelArgs& k) {
  const float s = checked_scale("dequantize", "scale", k.in[1]);
  float* y = detail::ptr<float>(k.out[0]);
  const int64_t n = k.in[0].numel();
  auto run = [&]<typename T>() {
    const T* q = detail::ptr<T>(k.in[0]);
    const int32_t zp = *detail::ptr<T>(k.in[2]);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(int32_t(q[i]) - zp) * s;
  };
  if (k.in[0].dtype() == DType::kUInt8) {
    run.operator()<uint8_t>();
  } else {
    run.operator()<int8_t>();
  }
}

// ---- shared by quantized_matmul and quantized_conv2d ----------------------------------------

// Inputs 1, 2 (activation scale, zero point) and 4..7 of both linear ops, checked against the
// output channel count `n`. Returns whether the output is uint8 (8 inputs) or float32 (6).
bool check_linear_params(const char* op, std::span<const Meta> in, int64_t n) {
  if (in.size() != 6 && in.size() != 8) {
    throw ValueError(std::string(op) + ": takes 6 inputs (float32 output) or 8 (uint8 output, " +
                     "with y_scale and y_zero_point), got " + std::to_string(in.size()));
  }
  require_dtype(op, "the input", in[0].dtype, DType::kUInt8);
  require_dtype(op, "the input scale", in[1].dtype, DType::kFloat32);
  require_scalar(op, "the input scale", in[1]);
  require_dtype(op, "the input zero point", in[2].dtype, DType::kUInt8);
  require_scalar(op, "the input zero point", in[2]);
  require_dtype(op, "the weights", in[3].dtype, DType::kInt8);
  require_dtype(op, "the weight scales", in[4].dtype, DType::kFloat32);
  require_dtype(op, "the bias", in[5].dtype, DType::kFloat32);
  for (int i : {4, 5}) {
    if (in[i].shape != Shape{n}) {
      throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) + ": the " +
                       (i == 4 ? "weight scales" : "bias") + " must be [" + std::to_string(n) +
                       "], one per output channel");
    }
  }
  if (in.size() == 6) return false;
  require_dtype(op, "y_scale", in[6].dtype, DType::kFloat32);
  require_scalar(op, "y_scale", in[6]);
  require_dtype(op, "y_zero_point", in[7].dtype, DType::kUInt8);
  require_scalar(op, "y_zero_point", in[7]);
  return true;
}

// What turns int32 accumulators into the op's output, resolved once per call.
struct Epilogue {
  std::vector<float> mult;  // a_scale * w_scale[n]
  const float* bias = nullptr;
  bool relu = false;
  bool to_u8 = false;
  float inv_y = 1.f;
  int32_t y_zp = 0;
};

Epilogue make_epilogue(const char* op, const KernelArgs& k, bool relu) {
  Epilogue e;
  const float a_scale = checked_scale(op, "the input scale", k.in[1]);
  const int64_t n = k.in[4].numel();
  const float* ws = detail::ptr<float>(k.in[4]);
  e.mult.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    if (!(ws[j] > 0.f) || !std::isfinite(ws[j])) {
      throw ValueError(std::string(op) + ": weight scale " + std::to_string(j) +
                       " must be positive and finite, got " + std::to_string(ws[j]));
    }
    e.mult[j] = a_scale * ws[j];
  }
  e.bias = detail::ptr<float>(k.in[5]);
  e.relu = relu;
  if (k.in.size() == 8) {
    e.to_u8 = true;
    e.inv_y = 1.f / checked_scale(op, "y_scale", k.in[6]);
    e.y_zp = *detail::ptr<uint8_t>(k.in[7]);
  }
  return e;
}

// One row of accumulators into uint8 / float32: loops the compiler vectorizes (restrict
// pointers, the relu choice outside the loop).
// The uint8 clamp is done on the float, to [-zp, 255 - zp]: rounding commutes with a clamp to
// integer bounds, so this is to_int's result (NaN included: it goes to the low bound) with no
// integer clamps, which vectorizes 2.3x faster.
template <bool kRelu>
void row_u8(const int32_t* __restrict a, const float* __restrict mult, const float* __restrict bias,
            int64_t n, float inv_y, int32_t zp, uint8_t* __restrict y) {
  const float lo = static_cast<float>(-zp), hi = static_cast<float>(255 - zp);
  for (int64_t j = 0; j < n; ++j) {
    float v = static_cast<float>(a[j]) * mult[j] + bias[j];
    if (kRelu) v = std::max(v, 0.f);
    const float w = std::min(hi, std::max(lo, v * inv_y));
    y[j] = static_cast<uint8_t>(static_cast<int32_t>(round_even(w)) + zp);
  }
}
template <bool kRelu>
void row_f32(const int32_t* __restrict a, const float* __restrict mult,
             const float* __restrict bias, int64_t n, float* __restrict y) {
  for (int64_t j = 0; j < n; ++j) {
    const float v = static_cast<float>(a[j]) * mult[j] + bias[j];
    y[j] = kRelu ? std::max(v, 0.f) : v;
  }
}

// Rows [r0, r1) of the output from their accumulators (`acc`: row r0 first, n per row). The one
// epilogue both kernels run (never inlined into either), so they agree bit for bit.
__attribute__((noinline)) void run_epilogue(const Epilogue& e, const int32_t* acc, int64_t r0,
                                            int64_t r1, int64_t n, const Tensor& out) {
  const float* mult = e.mult.data();
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t* a = acc + (r - r0) * n;
    if (e.to_u8) {
      uint8_t* y = detail::ptr<uint8_t>(out) + r * n;
      (e.relu ? row_u8<true> : row_u8<false>)(a, mult, e.bias, n, e.inv_y, e.y_zp, y);
    } else {
      float* y = detail::ptr<float>(out) + r * n;
      (e.relu ? row_f32<true> : row_f32<false>)(a, mult, e.bias, n, y);
    }
  }
}

}  // namespace

bool int8_has_vnni() {
  static const bool vnni = [] {
    using isa = dnnl::cpu_isa;
    switch (dnnl::get_effective_cpu_isa()) {
      case isa::avx2_vnni:
      case isa::avx512_core_vnni:
      case isa::avx512_core_bf16:
      case isa::avx512_core_amx:
        return true;
      default:
        return false;
    }
  }();
  return vnni;
}

namespace {

// Whether oneDNN may run these weights: always with VNNI, else only 7-bit ones (see the top).
// The answer is cached per tensor and version, as the blocked weights are (below).
bool weights_safe(const Tensor& w) {
  if (int8_has_vnni()) return true;
  static CachedPerInstance<bool> cache("int8 weights within 7 bits (no VNNI)");
  const detail::TensorImpl* wi = w.impl();
  return cache.get(
      wi->token,
      [&] {
        const int8_t* p = detail::ptr<int8_t>(w);
        int8_t lo = 0, hi = 0;
        for (int64_t i = 0, n = w.numel(); i < n; ++i) {
          lo = std::min(lo, p[i]);
          hi = std::max(hi, p[i]);
        }
        return lo >= -64 && hi <= 63;
      },
      wi->version.load(std::memory_order_acquire));
}

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
constexpr double kSingleThreadMacs = 5.0e5;    // as matmul.cc: small problems stay on one thread
constexpr int64_t kAccChunkBytes = 512 << 10;  // per thread, of a conv's int32 accumulators

// oneDNN's blocked copy of an int8 weight tensor, cached per tensor (its identity and version,
// as conv2d caches filters): a frozen graph's constant weights are reordered on their first
// call only, and two layers of the same shape keep one copy each. Writes through kiln ops bump
// the version; a write through Tensor::data() into weights already used is not seen (give the
// op a new tensor instead).
struct BlockedWeights {
  dnnl::memory mem;
  uint64_t cache_bytes() const { return mem.get_desc().get_size(); }
};
using WeightCache = CachedPerInstance<std::shared_ptr<const BlockedWeights>>;

WeightCache& weight_cache() {
  static WeightCache cache("int8 weights in oneDNN layout");
  return cache;
}

// An int8 primitive producing int32 accumulators, with its memories; `ok` false when oneDNN
// refused the case (cached too, so it is asked once).
struct QuantizedEntry : onednn::Entry {
  bool ok = false;
  dnnl::primitive prim, reorder;
  dnnl::memory src, user_w, w, dst, zp;
  bool needs_reorder = false;
  onednn::ExecArgs args;

  void run(const void* s, const Tensor& weights, void* d, int32_t src_zp) {
    std::lock_guard<std::mutex> lock(mu);
    src.set_data_handle(const_cast<void*>(s));
    dst.set_data_handle(d);
    if (zp) *static_cast<int32_t*>(zp.get_data_handle()) = src_zp;
    const detail::TensorImpl* wi = weights.impl();
    if (!needs_reorder) {
      user_w.set_data_handle(wi->bytes());
      onednn::execute(prim, args);
      return;
    }
    auto reorder_now = [&] {
      auto r = std::make_shared<BlockedWeights>();
      r->mem = dnnl::memory(w.get_desc(), onednn::engine());  // owned by the cached value
      user_w.set_data_handle(wi->bytes());
      onednn::ExecArgs ra;
      ra.add(DNNL_ARG_FROM, user_w);
      ra.add(DNNL_ARG_TO, r->mem);
      onednn::execute(reorder, ra);
      return std::shared_ptr<const BlockedWeights>(std::move(r));
    };
    WeightCache& cache = weight_cache();
    const uint64_t version = wi->version.load(std::memory_order_acquire);
    std::shared_ptr<const BlockedWeights> r = cache.get(wi->token, reorder_now, version);
    if (r->mem.get_desc() != w.get_desc()) {  // cached for a primitive with another layout
      cache.invalidate(wi->token);
      r = cache.get(wi->token, reorder_now, version);
    }
    onednn::ExecArgs a = args;
    for (int i = 0; i < a.n; ++i) {
      if (a.args[i].arg == DNNL_ARG_WEIGHTS) a.args[i].memory = r->mem.get();
    }
    onednn::execute(prim, a);
  }
};

// The runtime source zero point (when nonzero) for a primitive's attrs.
dnnl::primitive_attr zp_attr(bool has_zp) {
  dnnl::primitive_attr attr;
  if (has_zp) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  return attr;
}

void bind_common(QuantizedEntry& e, const dnnl::memory::desc& src, const dnnl::memory::desc& user_w,
                 const dnnl::memory::desc& prim_w, const dnnl::memory::desc& dst, bool has_zp) {
  const auto& eng = onednn::engine();
  e.src = dnnl::memory(src, eng, DNNL_MEMORY_NONE);
  e.dst = dnnl::memory(dst, eng, DNNL_MEMORY_NONE);
  e.user_w = dnnl::memory(user_w, eng, DNNL_MEMORY_NONE);
  e.needs_reorder = prim_w != user_w;
  if (e.needs_reorder) {
    e.w = dnnl::memory(prim_w, eng, DNNL_MEMORY_NONE);  // the cached copy's, per call
    e.reorder = dnnl::reorder(e.user_w, dnnl::memory(prim_w, eng, DNNL_MEMORY_NONE));
  } else {
    e.w = e.user_w;
  }
  e.args.add(DNNL_ARG_SRC, e.src);
  e.args.add(DNNL_ARG_WEIGHTS, e.w);
  e.args.add(DNNL_ARG_DST, e.dst);
  if (has_zp) {
    e.zp = dnnl::memory({{1}, dt::s32, tag::x}, eng);
    e.args.add(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, e.zp);
  }
}

// ---- quantized_matmul ----------------------------------------------------------------------

void qmatmul_infer(std::span<const Meta> in, const Attrs&, std::span<Meta> out) {
  const char* op = "quantized_matmul";
  if (in.size() < 6) check_linear_params(op, in, 0);  // the arity message
  const Shape &a = in[0].shape, &w = in[3].shape;
  if (a.rank() != 2 || w.rank() != 2 || a[1] != w[0]) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                     ": the input must be [M, K] and the weights [K, N]");
  }
  const bool u8 = check_linear_params(op, in, w[1]);
  out[0] = {Shape{a[0], w[1]}, u8 ? DType::kUInt8 : DType::kFloat32};
}

void qmatmul_reference(const KernelArgs& k) {
  const Epilogue e = make_epilogue("quantized_matmul", k, k.attrs.i(0) != 0);
  const int64_t m = k.in[0].shape()[0], kk = k.in[0].shape()[1], n = k.in[3].shape()[1];
  const uint8_t* a = detail::ptr<uint8_t>(k.in[0]);
  const int32_t zp = *detail::ptr<uint8_t>(k.in[2]);
  const int8_t* w = detail::ptr<int8_t>(k.in[3]);
  std::vector<int32_t> acc(m * n, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < kk; ++p) {
      const int32_t av = int32_t(a[i * kk + p]) - zp;
      for (int64_t j = 0; j < n; ++j) acc[i * n + j] += av * int32_t(w[p * n + j]);
    }
  run_epilogue(e, acc.data(), 0, m, n, k.out[0]);
}

bool qmatmul_fast(const KernelArgs& k) {
  const int64_t m = k.in[0].shape()[0], kk = k.in[0].shape()[1], n = k.in[3].shape()[1];
  if (m == 0 || n == 0 || kk == 0 || !weights_safe(k.in[3])) return false;
  const Epilogue e = make_epilogue("quantized_matmul", k, k.attrs.i(0) != 0);
  const int32_t zp = *detail::ptr<uint8_t>(k.in[2]);
  const int threads = double(m) * n * kk < kSingleThreadMacs ? 1 : omp_get_max_threads();
  onednn::ScopedThreads scoped(threads);
  onednn::Key key(onednn::Kind::kQuantizedMatmul);
  key.add(m).add(kk).add(n).add(zp != 0).add(threads);
  auto entry = onednn::get_or_create<QuantizedEntry>(key, [&] {
    auto en = std::make_shared<QuantizedEntry>();
    try {
      const dnnl::memory::desc src({m, kk}, dt::u8, tag::ab), w({kk, n}, dt::s8, tag::ab),
          any_w({kk, n}, dt::s8, tag::any), dst({m, n}, dt::s32, tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any_w, dst), zp_attr(zp != 0),
                                      onednn::engine());
      en->prim = dnnl::matmul(pd);
      bind_common(*en, src, w, pd.weights_desc(), dst, zp != 0);
      en->ok = true;
    } catch (const dnnl::error&) {
      en->ok = false;  // this oneDNN build has no such kernel: the reference runs
    }
    return en;
  });
  if (!entry->ok) return false;
  Tensor acc = empty(Shape{m, n}, DType::kInt32);
  entry->run(k.in[0].impl()->bytes(), k.in[3], acc.impl()->bytes(), zp);
  run_epilogue(e, detail::ptr<int32_t>(acc), 0, m, n, k.out[0]);
  return true;
}

// ---- quantized_conv2d ----------------------------------------------------------------------

constexpr int kConvAttrs = 6;  // {stride_h, stride_w, padding, dilation_h, dilation_w, groups}

struct Geom {
  int64_t n, h, w, c, kh, kw, cg, o, oh, ow, sh, sw, dh, dw, pt, pl, pb, pr, groups;
};

// TensorFlow's "same" (ops/conv.cc): the padding before is half the total, the odd pixel after.
void pads(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, bool same, int64_t& before,
          int64_t& after) {
  const int64_t total = same ? std::max<int64_t>((out - 1) * s + (k - 1) * d + 1 - in, 0) : 0;
  before = total / 2;
  after = total - before;
}

// conv2d's own shape rules and messages (through its infer), renamed to this op.
Shape conv_out_shape(std::span<const Meta> in, const Attrs& a) {
  const char* op = "quantized_conv2d";
  Attrs conv;
  for (int i = 0; i < kConvAttrs; ++i) conv.add_int(a.i(i));
  const Meta metas[2] = {{in[0].shape, DType::kFloat32}, {in[3].shape, DType::kFloat32}};
  Meta out[1];
  try {
    ops::kConv2D.infer(std::span<const Meta>(metas, 2), conv, std::span<Meta>(out, 1));
  } catch (const ShapeError& e) {
    throw ShapeError(std::string(op) + " (as " + e.what() + ")");
  } catch (const ValueError& e) {
    throw ValueError(std::string(op) + " (as " + e.what() + ")");
  }
  return out[0].shape;
}

Geom conv_geom(const Shape& x, const Shape& f, const Shape& y, const Attrs& a) {
  Geom g{x[0],   x[1],   x[2],   x[3],   f[0], f[1], f[2], f[3], y[1],  y[2],
         a.i(0), a.i(1), a.i(3), a.i(4), 0,    0,    0,    0,    a.i(5)};
  pads(g.h, g.oh, g.kh, g.sh, g.dh, a.i(2) == 1, g.pt, g.pb);
  pads(g.w, g.ow, g.kw, g.sw, g.dw, a.i(2) == 1, g.pl, g.pr);
  return g;
}

void qconv_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "quantized_conv2d";
  if (in.size() < 6) check_linear_params(op, in, 0);  // the arity message
  const Shape y = conv_out_shape(in, a);
  const bool u8 = check_linear_params(op, in, y[3]);
  out[0] = {y, u8 ? DType::kUInt8 : DType::kFloat32};
}

void qconv_reference(const KernelArgs& k) {
  const Geom g = conv_geom(k.in[0].shape(), k.in[3].shape(), k.out[0].shape(), k.attrs);
  const Epilogue e = make_epilogue("quantized_conv2d", k, k.attrs.i(kConvAttrs) != 0);
  const uint8_t* x = detail::ptr<uint8_t>(k.in[0]);
  const int32_t zp = *detail::ptr<uint8_t>(k.in[2]);
  const int8_t* f = detail::ptr<int8_t>(k.in[3]);
  const int64_t og = g.o / g.groups, rows = g.n * g.oh * g.ow;
  std::vector<int32_t> acc(rows * g.o, 0);
  for (int64_t b = 0; b < g.n; ++b)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t o = 0; o < g.o; ++o) {
          const int64_t grp = o / og;
          int32_t s = 0;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.sh - g.pt + ky * g.dh;
            if (iy < 0 || iy >= g.h) continue;  // padding: real zero
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t ix = ox * g.sw - g.pl + kx * g.dw;
              if (ix < 0 || ix >= g.w) continue;
              for (int64_t ic = 0; ic < g.cg; ++ic) {
                const int32_t xv = int32_t(x[((b * g.h + iy) * g.w + ix) * g.c + grp * g.cg + ic]);
                s += (xv - zp) * int32_t(f[((ky * g.kw + kx) * g.cg + ic) * g.o + o]);
              }
            }
          }
          acc[((b * g.oh + oy) * g.ow + ox) * g.o + o] = s;
        }
  run_epilogue(e, acc.data(), 0, rows, g.o, k.out[0]);
}

bool qconv_fast(const KernelArgs& k) {
  if (k.out[0].numel() == 0 || k.in[0].numel() == 0 || !weights_safe(k.in[3])) return false;
  const Geom g = conv_geom(k.in[0].shape(), k.in[3].shape(), k.out[0].shape(), k.attrs);
  const Epilogue e = make_epilogue("quantized_conv2d", k, k.attrs.i(kConvAttrs) != 0);
  const int32_t zp = *detail::ptr<uint8_t>(k.in[2]);
  const double macs = double(k.out[0].numel()) * g.kh * g.kw * g.cg;
  const int threads = macs < kSingleThreadMacs ? 1 : omp_get_max_threads();
  onednn::ScopedThreads scoped(threads);
  // Images in chunks whose int32 accumulators stay in the L2 cache (a divisor of the batch, so
  // one primitive serves every chunk): the epilogue then reads them from cache, not memory.
  const int64_t image_acc_bytes = g.oh * g.ow * g.o * int64_t(sizeof(int32_t));
  const int64_t fit = std::max<int64_t>(1, kAccChunkBytes * threads / image_acc_bytes);
  int64_t chunk = std::min(fit, g.n);
  while (g.n % chunk != 0) --chunk;
  onednn::Key key(onednn::Kind::kQuantizedConv);
  for (int64_t v : {chunk, g.h, g.w, g.c, g.kh, g.kw, g.cg, g.o, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl,
                    g.pb, g.pr, g.groups}) {
    key.add(v);
  }
  key.add(zp != 0).add(threads);
  auto entry = onednn::get_or_create<QuantizedEntry>(key, [&] {
    auto en = std::make_shared<QuantizedEntry>();
    try {
      using md = dnnl::memory::desc;
      const md src({chunk, g.c, g.h, g.w}, dt::u8, tag::nhwc);
      const md dst({chunk, g.o, g.oh, g.ow}, dt::s32, tag::nhwc);
      const int64_t ogr = g.o / g.groups;
      // HWIO as oneDNN sees it: [O, I, KH, KW], or [G, O/G, I/G, KH, KW] when grouped.
      md user_w, any_w;
      if (g.groups == 1) {
        user_w = md({g.o, g.cg, g.kh, g.kw}, dt::s8, {1, g.o, g.kw * g.cg * g.o, g.cg * g.o});
        any_w = md({g.o, g.cg, g.kh, g.kw}, dt::s8, tag::any);
      } else {
        user_w = md({g.groups, ogr, g.cg, g.kh, g.kw}, dt::s8,
                    {ogr, 1, g.o, g.kw * g.cg * g.o, g.cg * g.o});
        any_w = md({g.groups, ogr, g.cg, g.kh, g.kw}, dt::s8, tag::any);
      }
      dnnl::convolution_forward::desc d(
          dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src, any_w, dst,
          {g.sh, g.sw}, {g.dh - 1, g.dw - 1}, {g.pt, g.pl}, {g.pb, g.pr});
      dnnl::convolution_forward::primitive_desc pd(d, zp_attr(zp != 0), onednn::engine());
      en->prim = dnnl::convolution_forward(pd);
      bind_common(*en, src, user_w, pd.weights_desc(), dst, zp != 0);
      en->ok = true;
    } catch (const dnnl::error&) {
      en->ok = false;  // this oneDNN build has no such kernel: the reference runs
    }
    return en;
  });
  if (!entry->ok) return false;
  const int64_t rows = chunk * g.oh * g.ow, in_bytes = chunk * g.h * g.w * g.c;
  Tensor acc = empty(Shape{rows, g.o}, DType::kInt32);
  for (int64_t b = 0; b < g.n; b += chunk) {
    entry->run(k.in[0].impl()->bytes() + (b / chunk) * in_bytes, k.in[3], acc.impl()->bytes(), zp);
    run_epilogue(e, detail::ptr<int32_t>(acc), (b / chunk) * rows, (b / chunk + 1) * rows, g.o,
                 k.out[0]);
  }
  return true;
}

// 2 per multiply-add, as the float ops count.
int64_t qmatmul_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta> out) {
  return 2 * out[0].shape.numel() * in[0].shape[1];
}
int64_t qconv_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta> out) {
  const Shape& f = in[3].shape;
  return 2 * out[0].shape.numel() * f[0] * f[1] * f[2];
}

constexpr AttrField kQMatmulFields[] = {{"relu", AttrType::kBool}};
constexpr AttrSchema kQMatmulSchema{kQMatmulFields};
constexpr AttrField kQConvFields[] = {
    {"strides", AttrType::kInt, 2},  {"padding", AttrType::kEnum, 1, "valid|same"},
    {"dilation", AttrType::kInt, 2}, {"groups", AttrType::kInt},
    {"relu", AttrType::kBool},
};
constexpr AttrSchema kQConvSchema{kQConvFields};

}  // namespace

namespace ops {
const OpDef kQuantize{.name = "quantize",
                      .num_inputs = 3,
                      .num_outputs = 1,
                      .infer = quantize_infer,
                      .reference = quantize_reference,
                      .attrs = &kNoAttrs};
const OpDef kDequantize{.name = "dequantize",
                        .num_inputs = 3,
                        .num_outputs = 1,
                        .infer = dequantize_infer,
                        .reference = dequantize_reference,
                        .flags = kNotDifferentiable,
                        .attrs = &kNoAttrs};
const OpDef kQuantizedMatmul{.name = "quantized_matmul",
                             .num_inputs = -1,
                             .num_outputs = 1,
                             .infer = qmatmul_infer,
                             .reference = qmatmul_reference,
                             .fast = qmatmul_fast,
                             .flags = kNotDifferentiable,
                             .attrs = &kQMatmulSchema,
                             .flops = qmatmul_flops};
const OpDef kQuantizedConv2D{.name = "quantized_conv2d",
                             .num_inputs = -1,
                             .num_outputs = 1,
                             .infer = qconv_infer,
                             .reference = qconv_reference,
                             .fast = qconv_fast,
                             .flags = kNotDifferentiable,
                             .attrs = &kQConvSchema,
                             .flops = qconv_flops};
}  // namespace ops

Tensor quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point) {
  return run_op(ops::kQuantize, {x, scale, zero_point});
}

Tensor dequantize(const Tensor& q, const Tensor& scale, const Tensor& zero_point) {
  return run_op(ops::kDequantize, {q, scale, zero_point});
}

namespace {
Tensor run_linear(const OpDef& op, const QuantizedLinear& p, const Tensor& x, const Attrs& a) {
  std::vector<Tensor> in{x, p.x_scale, p.x_zero_point, p.weights, p.weight_scales, p.bias};
  if (p.y_scale.defined() != p.y_zero_point.defined()) {
    throw ValueError(std::string(op.name) +
                     ": give both y_scale and y_zero_point (uint8 output) or neither (float32)");
  }
  if (p.y_scale.defined()) {
    in.push_back(p.y_scale);
    in.push_back(p.y_zero_point);
  }
  Tensor out[1];
  run_op(op, in, a, out);
  return out[0];
}
}  // namespace

Tensor quantized_matmul(const Tensor& x, const QuantizedLinear& p) {
  return run_linear(ops::kQuantizedMatmul, p, x, Attrs{p.relu ? 1 : 0});
}

Tensor quantized_conv2d(const Tensor& x, const QuantizedLinear& p, const Conv2DOptions& o) {
  Attrs a{o.strides[0],  o.strides[1],  o.padding == Padding::kSame ? 1 : 0,
          o.dilation[0], o.dilation[1], o.groups,
          p.relu ? 1 : 0};
  return run_linear(ops::kQuantizedConv2D, p, x, a);
}

}  // namespace kiln
