// Convolution -> bias -> relu -> max pooling as one op, and its filter and bias gradient, for
// convolutions that reduce over few values per output (kh * kw * input channels <= 32: the
// first conv of an image model). oneDNN runs those far from peak (the cnn's 1 -> 32 conv: ~90
// GFLOP/s against 300+ for its 32 -> 64 conv), and their output is a step's largest activation
// (6.4 MB at batch 64): written by the conv, read by the pool, read again by the pool's
// gradient, whose own 6.4 MB output the filter gradient reads once more. Here one image's conv
// output lives in a per-thread buffer that stays in cache, and the gradient rebuilds its own
// from the pooled outputs and their window slots.
//   kFusedConv2DPool      (x, filter, bias) -> (y, slot)
//       y = max_pool2d(relu(conv2d(x, filter) + bias)); slot (uint8, y's shape): where each
//       output's first max lies among its window's in-bounds pixels, counted row-major.
//       attrs = conv attrs (6), pool attrs (5)
//   kFusedConv2DPoolGrad  (x, slot, y, dy) -> (dfilter, dbias)
//       the filter and bias gradients of kFusedConv2DPool for dy = dL/dy: each output's
//       gradient lands on its slot where y > 0 (relu's gradient at the window's max), and the
//       conv's filter gradient sums those over x's patches (a slot past its window selects
//       nothing). attrs = conv attrs, pool attrs, kh, kw
// Emitted by graph/fusion.cc (fuse_conv_pool). The references compose the unfused ops'
// references; the fast kernels (conv_pool_direct.cc) take float32, groups 1 and kh * kw *
// channels <= kMaxDirectTaps (conv_pool_direct) and decline the rest.
#include <span>
#include <string>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kiln/ops.h"
#include "ops/conv_geom.h"
#include "ops/conv_pool.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/pool_geom.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using conv_pool::kKernelAt;
using conv_pool::pool_geom;
using conv_pool::pool_part;

// fused_conv2d's attrs for bias + relu.
Attrs fused_conv_attrs(const Attrs& a) {
  return conv::prefix(a).add_int(1).add_int(kActRelu).add_int(0).add_float(0.0);
}

void cp_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "fused_conv2d_pool";
  check_attrs(ops::kFusedConv2DPool, a);  // a.i(k) below reads fields the schema names
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[1].dtype);
  require_same_dtype(op, in[0].dtype, in[2].dtype);
  const conv::Geom cg = conv::geom(op, shapes_str(in), in[0].shape, in[1].shape, conv::prefix(a));
  if (in[2].shape != Shape{cg.o}) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) + ": the bias must be [" +
                     std::to_string(cg.o) + "]");
  }
  const Shape ys = pool::out_shape(pool_geom(op, cg, a));
  out[0] = {ys, in[0].dtype};
  out[1] = {ys, DType::kUInt8};
}

// The gradient op's filter shape: [kh, kw, x's channels / groups, y's channels].
Shape grad_filter_shape(std::span<const Meta> in, const Attrs& a) {
  const Shape &xs = in[0].shape, &ys = in[2].shape;
  const int64_t groups = a.i(5) > 0 ? a.i(5) : 1;
  return Shape{a.i(kKernelAt), a.i(kKernelAt + 1), xs.rank() == 4 ? xs[3] / groups : 0,
               ys.rank() == 4 ? ys[3] : 0};
}

void cpg_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "fused_conv2d_pool_grad";
  check_attrs(ops::kFusedConv2DPoolGrad, a);
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[2].dtype);
  require_same_dtype(op, in[0].dtype, in[3].dtype);
  if (in[1].dtype != DType::kUInt8) {
    throw DTypeError(std::string(op) + ": the window slots must be uint8, got " +
                     std::string(dtype_name(in[1].dtype)));
  }
  const Shape fs = grad_filter_shape(in, a);
  const conv::Geom cg = conv::geom(op, shapes_str(in), in[0].shape, fs, conv::prefix(a));
  const Shape ys = pool::out_shape(pool_geom(op, cg, a));
  for (int k = 1; k < 4; ++k) {
    if (in[k].shape != ys) {
      throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                       ": the slots, the pooled output and its gradient must be " + to_string(ys));
    }
  }
  out[0] = {fs, in[0].dtype};
  out[1] = {Shape{cg.o}, in[0].dtype};
}

// The (row, col) in the conv output of slot s of window (oy, ox).
struct Pixel {
  int64_t y, x;
};
inline Pixel slot_pixel(const pool::Geom& g, int64_t oy, int64_t ox, int64_t s) {
  const pool::Window wd = pool::window(g, oy, ox);
  const int64_t cols = wd.x1 - wd.x0;
  return {wd.y0 + s / cols, wd.x0 + s % cols};
}

// ---- reference kernels: the unfused ops' -------------------------------------------------

void cp_reference(const KernelArgs& k) {
  const Attrs fa = fused_conv_attrs(k.attrs), pa = pool_part(k.attrs);
  const Meta in[3] = {{k.in[0].shape(), k.in[0].dtype()},
                      {k.in[1].shape(), k.in[1].dtype()},
                      {k.in[2].shape(), k.in[2].dtype()}};
  Meta zm;
  ops::kFusedConv2D.infer(std::span<const Meta>(in, 3), fa, {&zm, 1});
  Tensor z = zeros(zm.shape, zm.dtype);
  ops::kFusedConv2D.reference({k.in, {&z, 1}, fa});
  ops::kMaxPool2D.reference({{&z, 1}, k.out.subspan(0, 1), pa});
  const pool::Geom g = pool::geom("fused_conv2d_pool", z.shape(), pa);
  uint8_t* slot = detail::ptr<uint8_t>(k.out[1]);
  detail::visit_floating(z.dtype(), [&]<typename T>() {
    const T* zp = detail::ptr<T>(z);
    pool::for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      const int64_t at = pool::argmax_ref(zp, g, n, oy, ox, c) / g.c;  // pixel index
      const pool::Window wd = pool::window(g, oy, ox);
      const int64_t yy = at / g.w % g.h, xx = at % g.w;
      slot[o] = static_cast<uint8_t>((yy - wd.y0) * (wd.x1 - wd.x0) + xx - wd.x0);
    });
  });
}

void cpg_reference(const KernelArgs& k) {
  const Tensor &x = k.in[0], &slot_t = k.in[1], &y_t = k.in[2], &dy_t = k.in[3];
  const Shape fs = k.out[0].shape();
  const conv::Geom cg =
      conv::geom("fused_conv2d_pool_grad", "", x.shape(), fs, conv::prefix(k.attrs));
  const pool::Geom g =
      pool::geom("fused_conv2d_pool_grad", conv::out_shape(cg), pool_part(k.attrs));
  Tensor dz = zeros(conv::out_shape(cg), x.dtype());
  detail::visit_floating(x.dtype(), [&]<typename T>() {
    const uint8_t* slot = detail::ptr<uint8_t>(slot_t);
    const T *y = detail::ptr<T>(y_t), *dy = detail::ptr<T>(dy_t);
    T* d = detail::ptr<T>(dz);
    pool::for_each_out(g, [&](int64_t n, int64_t oy, int64_t ox, int64_t c, int64_t o) {
      if (!(y[o] > T(0))) return;  // relu's gradient: zero where the max is not positive
      // A slot past its window (only a malformed graph's) selects no pixel, as in the fast
      // kernel, which compares slots with positions.
      if (slot[o] >= pool::window(g, oy, ox).count()) return;
      const Pixel p = slot_pixel(g, oy, ox, slot[o]);
      d[((n * g.h + p.y) * g.w + p.x) * g.c + c] += dy[o];
    });
    T* db = detail::ptr<T>(k.out[1]);
    for (int64_t c = 0; c < g.c; ++c) db[c] = T(0);
    for (int64_t i = 0, n = dz.numel(); i < n; ++i) db[i % g.c] += d[i];
  });
  Attrs fa = conv::prefix(k.attrs);
  for (int64_t v : fs) fa.add_int(v);
  const Tensor in[2] = {x, dz};
  ops::kConv2DBackwardFilter.reference({in, k.out.subspan(0, 1), fa});
}

// ---- gradients ----------------------------------------------------------------------------

// Through the unfused ops' own rules: z = fused_conv2d(x, filter, bias) recomputed, then
// max_pool2d's gradient and fused_conv2d's. The slots are integers: no gradient.
void cp_grad(const GradArgs& g) {
  const Attrs fa = fused_conv_attrs(g.attrs);
  const Tensor z = run_op(ops::kFusedConv2D, {g.in[0], g.in[1], g.in[2]}, fa);
  const Tensor dz = run_op(ops::kMaxPool2DGrad, {z, g.grad_out[0]}, pool_part(g.attrs));
  ops::kFusedConv2D.grad({g.in, {&z, 1}, {&dz, 1}, fa, g.grad_in, g.needed & 7u});
}

int64_t cp_flops(std::span<const Meta> in, const Attrs& a, std::span<const Meta> out) {
  Meta z;
  ops::kConv2D.infer(in.subspan(0, 2), conv::prefix(a), {&z, 1});
  return op_flops(ops::kConv2D, in.subspan(0, 2), conv::prefix(a), {&z, 1});
}
int64_t cpg_flops(std::span<const Meta> in, const Attrs& a, std::span<const Meta> out) {
  const conv::Geom cg =
      conv::geom("fused_conv2d_pool_grad", "", in[0].shape, out[0].shape, conv::prefix(a));
  const Meta z{conv::out_shape(cg), in[0].dtype};
  Attrs fa = conv::prefix(a);
  for (int64_t v : out[0].shape) fa.add_int(v);
  const Meta bin[2] = {in[0], z};
  return op_flops(ops::kConv2DBackwardFilter, bin, fa, out.subspan(0, 1));
}

// The gradient op's attrs: the forward op's (the first 7 fields), then the filter's size.
constexpr AttrField kConvPoolGradFields[] = {
    {"strides", AttrType::kInt, 2},
    {"padding", AttrType::kEnum, 1, "valid|same"},
    {"dilation", AttrType::kInt, 2},
    {"groups", AttrType::kInt},
    {"pool_size", AttrType::kInt, 2},
    {"pool_strides", AttrType::kInt, 2},
    {"pool_padding", AttrType::kEnum, 1, "valid|same"},
    {"kernel_size", AttrType::kInt, 2},
};
constexpr AttrSchema kConvPoolSchema{std::span<const AttrField>(kConvPoolGradFields, 7)};
constexpr AttrSchema kConvPoolGradSchema{kConvPoolGradFields};

}  // namespace

bool conv_pool_direct(const Meta& x, const Meta& filter, const Attrs& conv_attrs) {
  try {
    return conv_pool::direct(
        x.dtype, conv::geom("fused_conv2d_pool", "", x.shape, filter.shape, conv_attrs));
  } catch (const Error&) {
    return false;
  }
}

namespace ops {
const OpDef kFusedConv2DPool{.name = "fused_conv2d_pool",
                             .num_inputs = 3,
                             .num_outputs = 2,
                             .infer = cp_infer,
                             .reference = cp_reference,
                             .fast = conv_pool::forward_fast,
                             .grad = cp_grad,
                             .attrs = &kConvPoolSchema,
                             .flops = cp_flops};
// No gradient rule: it is emitted only for a train step's own backward, which nothing
// differentiates; a tape reaching it throws rather than drop the gradient.
const OpDef kFusedConv2DPoolGrad{.name = "fused_conv2d_pool_grad",
                                 .num_inputs = 4,
                                 .num_outputs = 2,
                                 .infer = cpg_infer,
                                 .reference = cpg_reference,
                                 .fast = conv_pool::grad_fast,
                                 .attrs = &kConvPoolGradSchema,
                                 .flops = cpg_flops};
}  // namespace ops

}  // namespace kiln
