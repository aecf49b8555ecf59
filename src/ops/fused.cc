// Fused ops: what graph/fusion.cc turns chains of ops into. Internal (no public declaration):
// only the fusion pass creates them. Their gradient rules reuse the unfused ops' rules, so a
// tape over a fused graph gets the same gradients as over the unfused one.
//
//   fused_matmul      (a, b[, bias]) -> act(matmul(a, b) + bias)
//                     attrs = {transpose_a, transpose_b, has_bias, act, act_int}, {act_float}
//   fused_conv2d      (x, filter[, bias]) -> act(conv2d(x, filter) + bias)
//                     attrs = {6 conv2d attrs, has_bias, act, act_int}, {act_float}
//   fused_elementwise (in_0 .. in_k) -> one output: a small register program (below)
//
// act: 0 none, 1 relu, 2 leaky_relu (alpha = act_float), 3 tanh, 4 sigmoid, 5 gelu (act_int:
// approximate). bias is a [N] vector over the last dim. Reference kernels compose the unfused
// ops' reference kernels (so they agree with them exactly); fast kernels are one oneDNN
// primitive with a bias and an eltwise post-op (bf16 inputs under the mixed_bfloat16 policy,
// as matmul and conv2d).
#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/onednn/bf16_input.h"
#include "kernels/onednn/primitive_cache.h"
#include "kiln/ops.h"
#include "ops/conv_filter_cache.h"
#include "ops/conv_geom.h"
#include "ops/dtype_policy.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// ---- activations -----------------------------------------------------------------------------

// Indexed by FusedAct: the unfused op each activation code stands for. The one mapping: the
// fusion pass asks fused_act_code, the kernels and gradient rules act_op.
const OpDef* const kActOps[] = {nullptr,     &ops::kRelu,    &ops::kLeakyRelu,
                                &ops::kTanh, &ops::kSigmoid, &ops::kGelu};
static_assert(std::size(kActOps) == kActCount, "one op per FusedAct code");

const OpDef* act_op(int64_t act) {
  return act > kActNone && act < kActCount ? kActOps[act] : nullptr;
}

// The unfused activation op's attrs, from the fused op's (int at `at`, float 0).
Attrs act_attrs(int64_t act, const Attrs& a, int at) {
  if (act == kActGelu) return Attrs{a.i(at)};
  if (act == kActLeakyRelu) return Attrs().add_float(a.f(0));
  return Attrs();
}

void check_act(const char* op, int64_t act) {
  if (act < kActNone || act >= kActCount) {
    throw ValueError(std::string(op) + ": unknown activation code " + std::to_string(act));
  }
}

// Bias add, then the activation, in place on `y` with the unfused ops' reference kernels.
void bias_act_reference(const KernelArgs& k, bool has_bias, int64_t act, int act_at) {
  Tensor y = k.out[0];
  if (has_bias) {
    Tensor in[2] = {y, k.in[2]};
    ops::kAdd.reference({in, k.out, Attrs()});
  }
  if (const OpDef* op = act_op(act)) {
    Attrs a = act_attrs(act, k.attrs, act_at);
    Tensor in[1] = {y};
    op->reference({in, k.out, a});
  }
}

// oneDNN post-ops for `act`; returns false if oneDNN has no equivalent.
dnnl::primitive_attr post_ops_attr(int64_t act, const Attrs& a, int act_at) {
  dnnl::post_ops po;
  using alg = dnnl::algorithm;
  switch (act) {
    case kActRelu:
      po.append_eltwise(1.f, alg::eltwise_relu, 0.f, 0.f);
      break;
    case kActLeakyRelu:
      po.append_eltwise(1.f, alg::eltwise_relu, static_cast<float>(a.f(0)), 0.f);
      break;
    case kActTanh:
      po.append_eltwise(1.f, alg::eltwise_tanh, 0.f, 0.f);
      break;
    case kActSigmoid:
      po.append_eltwise(1.f, alg::eltwise_logistic, 0.f, 0.f);
      break;
    case kActGelu:
      po.append_eltwise(1.f, a.i(act_at) ? alg::eltwise_gelu_tanh : alg::eltwise_gelu_erf, 0.f,
                        0.f);
      break;
    default:
      break;
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  return attr;
}

// Checks the bias input of a fused op: [n] with the output's dtype.
void check_bias(const char* op, std::span<const Meta> in, int64_t n) {
  const Meta& b = in[2];
  if (b.shape.rank() != 1 || b.shape[0] != n) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) + ": the bias must be [" +
                     std::to_string(n) + "]");
  }
  require_same_dtype(op, in[0].dtype, b.dtype);
}

void check_arity(const char* op, std::span<const Meta> in, bool has_bias) {
  if (in.size() != (has_bias ? 3u : 2u)) {
    throw ValueError(std::string(op) + ": got " + std::to_string(in.size()) + " inputs, has_bias " +
                     (has_bias ? "needs 3" : "needs 2"));
  }
}

// ---- fused_matmul ----------------------------------------------------------------------------

constexpr double kSingleThreadFlops = 1.0e6;  // as matmul.cc: small problems stay on one thread

void fmm_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "fused_matmul";
  check_arity(op, in, a.i(2) != 0);
  check_act(op, a.i(3));
  ops::kMatmul.infer(in.subspan(0, 2), Attrs{a.i(0), a.i(1)}, out);
  require_floating(op, out[0].dtype);
  if (a.i(2)) check_bias(op, in, out[0].shape[out[0].shape.rank() - 1]);
}

void fmm_reference(const KernelArgs& k) {
  ops::kMatmul.reference({k.in.subspan(0, 2), k.out, Attrs{k.attrs.i(0), k.attrs.i(1)}});
  bias_act_reference(k, k.attrs.i(2) != 0, k.attrs.i(3), 4);
}

struct FusedMatmulEntry : onednn::Entry {
  dnnl::matmul prim;
  dnnl::memory a, b, bias, c;
  onednn::ExecArgs args;
  bool bf16 = false;  // mixed_bfloat16: a and b are rounded into a16.low and b16.low first
  onednn::Bf16Input a16, b16;
};

// One row times a row-major [K, N] matrix, plus the bias: a single pass over the weights,
// which is all batch-1 inference has to do (and, unlike a oneDNN call, allocates nothing).
// Four weight rows per step keep the accumulator traffic below the weight stream.
void gemv_row(const float* x, const float* w, const float* bias, int64_t kk, int64_t n, float* y) {
  constexpr int64_t kCols = 512;  // accumulators stay in L1
  for (int64_t c0 = 0; c0 < n; c0 += kCols) {
    const int64_t nc = std::min(kCols, n - c0);
    alignas(64) float acc[kCols];
    for (int64_t j = 0; j < nc; ++j) acc[j] = bias ? bias[c0 + j] : 0.f;
    int64_t p = 0;
    for (; p + 4 <= kk; p += 4) {
      const float x0 = x[p], x1 = x[p + 1], x2 = x[p + 2], x3 = x[p + 3];
      const float *r0 = w + p * n + c0, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
      for (int64_t j = 0; j < nc; ++j) acc[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j];
    }
    for (; p < kk; ++p) {
      const float xp = x[p];
      const float* r = w + p * n + c0;
      for (int64_t j = 0; j < nc; ++j) acc[j] += xp * r[j];
    }
    std::copy(acc, acc + nc, y + c0);
  }
}

// Rank-2 float32 only (what Dense emits); others run the reference.
bool fmm_fast(const KernelArgs& k) {
  const Shape &as = k.in[0].shape(), &bs = k.in[1].shape(), &os = k.out[0].shape();
  if (k.in[0].dtype() != DType::kFloat32 || as.rank() != 2 || bs.rank() != 2) return false;
  const bool ta = k.attrs.i(0), tb = k.attrs.i(1), has_bias = k.attrs.i(2);
  const int64_t m = os[0], n = os[1], kk = ta ? as[0] : as[1];
  if (os.numel() == 0 || kk == 0) return false;
  if (m == 1 && !tb) {  // a [1, K] row (transposed or not, the same K floats)
    gemv_row(detail::ptr<float>(k.in[0]), detail::ptr<float>(k.in[1]),
             has_bias ? detail::ptr<float>(k.in[2]) : nullptr, kk, n, detail::ptr<float>(k.out[0]));
    if (const OpDef* op = act_op(k.attrs.i(3))) {  // in place: elementwise reads i, writes i
      const Attrs a = act_attrs(k.attrs.i(3), k.attrs, 4);
      Tensor in[1] = {k.out[0]};
      const KernelArgs ak{in, k.out, a};
      if (!op->fast || !op->fast(ak)) op->reference(ak);
    }
    return true;
  }
  const int threads = 2.0 * m * n * kk < kSingleThreadFlops ? 1 : omp_get_max_threads();
  onednn::ScopedThreads scoped(threads);
  const bool bf16 = detail::mixed_bf16();
  onednn::Key key(onednn::Kind::kMatmulPostOps);
  key.add(m).add(n).add(kk).add(ta).add(tb).add(has_bias).add(threads).add(bf16);
  key.add(k.attrs.i(3)).add(k.attrs.i(4));
  int64_t alpha_bits = 0;
  const double alpha = k.attrs.num_floats() ? k.attrs.f(0) : 0.0;
  std::memcpy(&alpha_bits, &alpha, sizeof alpha_bits);
  key.add(alpha_bits);
  auto e = onednn::get_or_create<FusedMatmulEntry>(key, [&] {
    auto e = std::make_shared<FusedMatmulEntry>();
    using dt = dnnl::memory::data_type;
    // A transposed operand is the stored matrix read with swapped strides (no copy).
    dnnl::memory::desc amd({m, kk}, dt::f32,
                           ta ? dnnl::memory::dims{1, m} : dnnl::memory::dims{kk, 1});
    dnnl::memory::desc bmd({kk, n}, dt::f32,
                           tb ? dnnl::memory::dims{1, kk} : dnnl::memory::dims{n, 1});
    dnnl::memory::desc cmd({m, n}, dt::f32, dnnl::memory::dims{n, 1});
    dnnl::memory::desc biasmd({1, n}, dt::f32, dnnl::memory::dims{n, 1});
    if (bf16) {
      e->bf16 = true;
      e->bytes = e->a16.init(onednn::as_bf16(amd), as.numel()) +
                 e->b16.init(onednn::as_bf16(bmd), bs.numel());
    }
    const dnnl::memory::desc pa = bf16 ? e->a16.low.get_desc() : amd;
    const dnnl::memory::desc pb = bf16 ? e->b16.low.get_desc() : bmd;
    auto desc =
        has_bias ? dnnl::matmul::desc(pa, pb, biasmd, cmd) : dnnl::matmul::desc(pa, pb, cmd);
    dnnl::matmul::primitive_desc pd(desc, post_ops_attr(k.attrs.i(3), k.attrs, 4),
                                    onednn::engine());
    e->prim = dnnl::matmul(pd);
    const auto& eng = onednn::engine();
    e->a = bf16 ? e->a16.low : dnnl::memory(amd, eng, DNNL_MEMORY_NONE);
    e->b = bf16 ? e->b16.low : dnnl::memory(bmd, eng, DNNL_MEMORY_NONE);
    e->c = dnnl::memory(cmd, eng, DNNL_MEMORY_NONE);
    e->args.add(DNNL_ARG_SRC, e->a);
    e->args.add(DNNL_ARG_WEIGHTS, e->b);
    e->args.add(DNNL_ARG_DST, e->c);
    if (has_bias) {
      e->bias = dnnl::memory(biasmd, eng, DNNL_MEMORY_NONE);
      e->args.add(DNNL_ARG_BIAS, e->bias);
    }
    return e;
  });
  std::lock_guard<std::mutex> lock(e->mu);
  if (e->bf16) {
    e->a16.convert(k.in[0].impl()->bytes());
    e->b16.convert(k.in[1].impl()->bytes());
  } else {
    e->a.set_data_handle(k.in[0].impl()->bytes());
    e->b.set_data_handle(k.in[1].impl()->bytes());
  }
  e->c.set_data_handle(k.out[0].impl()->bytes());
  if (has_bias) e->bias.set_data_handle(k.in[2].impl()->bytes());
  onednn::execute(e->prim, e->args);
  return true;
}

// ---- fused_conv2d ----------------------------------------------------------------------------

using conv::kConvAttrs;

void fconv_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "fused_conv2d";
  check_arity(op, in, a.i(kConvAttrs) != 0);
  check_act(op, a.i(kConvAttrs + 1));
  ops::kConv2D.infer(in.subspan(0, 2), conv::prefix(a), out);
  if (a.i(kConvAttrs)) check_bias(op, in, out[0].shape[3]);
}

void fconv_reference(const KernelArgs& k) {
  ops::kConv2D.reference({k.in.subspan(0, 2), k.out, conv::prefix(k.attrs)});
  bias_act_reference(k, k.attrs.i(kConvAttrs) != 0, k.attrs.i(kConvAttrs + 1), kConvAttrs + 2);
}

struct FusedConvEntry : onednn::Entry {
  dnnl::primitive prim, reorder;
  dnnl::memory src, dst, user_w, w, bias;
  bool needs_reorder = false;
  onednn::ExecArgs args, reorder_args;
  bool bf16 = false;  // mixed_bfloat16: the input is rounded into src16.low (= src) first
  onednn::Bf16Input src16;
};

bool fconv_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32 || k.out[0].numel() == 0 || k.in[0].numel() == 0)
    return false;
  const Attrs& a = k.attrs;
  const conv::Geom g =
      conv::geom("fused_conv2d", "", k.in[0].shape(), k.in[1].shape(), conv::prefix(a));
  const bool has_bias = a.i(kConvAttrs);
  onednn::Key key(onednn::Kind::kConvForwardPostOps);
  for (int64_t v :
       {g.n, g.h, g.w, g.c, g.kh, g.kw, g.cg, g.o, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.groups})
    key.add(v);
  key.add(has_bias).add(a.i(kConvAttrs + 1)).add(a.i(kConvAttrs + 2));
  int64_t alpha_bits = 0;
  const double alpha = a.num_floats() ? a.f(0) : 0.0;
  std::memcpy(&alpha_bits, &alpha, sizeof alpha_bits);
  const bool bf16 = detail::conv_in_bf16(g.cg);
  key.add(alpha_bits).add(omp_get_max_threads()).add(bf16);
  auto e = onednn::get_or_create<FusedConvEntry>(key, [&] {
    using md = dnnl::memory::desc;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    auto e = std::make_shared<FusedConvEntry>();
    const auto& eng = onednn::engine();
    const dt in = bf16 ? dt::bf16 : dt::f32;
    md src({g.n, g.c, g.h, g.w}, in, tag::nhwc), dst({g.n, g.o, g.oh, g.ow}, dt::f32, tag::nhwc);
    md bias({g.o}, dt::f32, tag::a);
    // The HWIO filter as oneDNN sees it (as conv.cc): [O, I, KH, KW] or [G, O/G, I/G, KH, KW].
    const int64_t og = g.o / g.groups;
    md user_w = g.groups == 1
                    ? md({g.o, g.cg, g.kh, g.kw}, dt::f32, {1, g.o, g.kw * g.cg * g.o, g.cg * g.o})
                    : md({g.groups, og, g.cg, g.kh, g.kw}, dt::f32,
                         {og, 1, g.o, g.kw * g.cg * g.o, g.cg * g.o});
    md any_w = g.groups == 1 ? md({g.o, g.cg, g.kh, g.kw}, in, tag::any)
                             : md({g.groups, og, g.cg, g.kh, g.kw}, in, tag::any);
    dnnl::memory::dims strides{g.sh, g.sw}, dil{g.dh - 1, g.dw - 1}, pad_l{g.pt, g.pl},
        pad_r{g.pb, g.pr};
    auto prop = dnnl::prop_kind::forward_inference;
    auto algo = dnnl::algorithm::convolution_direct;
    auto d = has_bias ? dnnl::convolution_forward::desc(prop, algo, src, any_w, bias, dst, strides,
                                                        dil, pad_l, pad_r)
                      : dnnl::convolution_forward::desc(prop, algo, src, any_w, dst, strides, dil,
                                                        pad_l, pad_r);
    dnnl::convolution_forward::primitive_desc pd(
        d, post_ops_attr(a.i(kConvAttrs + 1), a, kConvAttrs + 2), eng);
    e->prim = dnnl::convolution_forward(pd);
    if (bf16) {
      e->bf16 = true;
      e->bytes = e->src16.init(pd.src_desc(), g.n * g.h * g.w * g.c);
    }
    e->src = bf16 ? e->src16.low : dnnl::memory(pd.src_desc(), eng, DNNL_MEMORY_NONE);
    e->dst = dnnl::memory(pd.dst_desc(), eng, DNNL_MEMORY_NONE);
    e->user_w = dnnl::memory(user_w, eng, DNNL_MEMORY_NONE);
    e->needs_reorder = pd.weights_desc() != user_w;
    if (e->needs_reorder) {
      e->w = dnnl::memory(pd.weights_desc(), eng);  // owned by the entry
      e->bytes += pd.weights_desc().get_size();
      e->reorder = dnnl::reorder(e->user_w, e->w);
      e->reorder_args.add(DNNL_ARG_FROM, e->user_w);
      e->reorder_args.add(DNNL_ARG_TO, e->w);
    } else {
      e->w = e->user_w;
    }
    e->args.add(DNNL_ARG_SRC, e->src);
    e->args.add(DNNL_ARG_WEIGHTS, e->w);
    e->args.add(DNNL_ARG_DST, e->dst);
    if (has_bias) {
      e->bias = dnnl::memory(bias, eng, DNNL_MEMORY_NONE);
      e->args.add(DNNL_ARG_BIAS, e->bias);
    }
    return e;
  });
  std::lock_guard<std::mutex> lock(e->mu);
  if (e->bf16) {
    e->src16.convert(k.in[0].impl()->bytes());
  } else {
    e->src.set_data_handle(k.in[0].impl()->bytes());
  }
  e->user_w.set_data_handle(k.in[1].impl()->bytes());
  e->dst.set_data_handle(k.out[0].impl()->bytes());
  if (has_bias) e->bias.set_data_handle(k.in[2].impl()->bytes());
  // A variable's filter is reordered once per version (src/ops/conv_filter_cache.h), as in
  // conv2d's forward kernel; anything else is reordered on each call.
  if (e->needs_reorder && conv_filter::execute_with_cached_filter(
                              k.in[1].impl(), e->user_w, e->w, e->reorder, e->prim, e->args, 2)) {
    return true;
  }
  if (e->needs_reorder) onednn::execute(e->reorder, e->reorder_args);
  onednn::execute(e->prim, e->args);
  return true;
}

// ---- gradients: the activation's rule, then the unfused op's rule, then sum_to for the bias --

// dz for y = act(z), through the activation op's own rule. relu and leaky_relu (alpha > 0)
// read only the sign of their input, which y shares; gelu needs z, recomputed by `z_of`.
template <typename ZOf>
Tensor act_grad(const GradArgs& g, int64_t act, int act_at, ZOf&& z_of) {
  const Tensor& dy = g.grad_out[0];
  const OpDef* op = act_op(act);
  if (!op) return dy;
  const bool sign_only = act == kActRelu || (act == kActLeakyRelu && g.attrs.f(0) > 0);
  const bool needs_z = act == kActGelu || (act == kActLeakyRelu && !sign_only);
  Tensor z = needs_z ? z_of() : g.out[0];
  Tensor dz;
  Attrs a = act_attrs(act, g.attrs, act_at);
  op->grad({{&z, 1}, g.out.subspan(0, 1), {&dy, 1}, a, {&dz, 1}, 1u});
  return dz;
}

// Runs `base`'s gradient rule (inputs 0 and 1, attrs `base_attrs`) on dz; bias gets sum_to.
void base_grad(const GradArgs& g, const OpDef& base, const Attrs& base_attrs, const Tensor& dz,
               bool has_bias) {
  base.grad({g.in.subspan(0, 2),
             g.out.subspan(0, 1),
             {&dz, 1},
             base_attrs,
             g.grad_in.subspan(0, 2),
             g.needed & 3u});
  if (has_bias && g.needs(2)) g.grad_in[2] = sum_to(dz, g.in[2].shape());
}

void fmm_grad(const GradArgs& g) {
  const Attrs mm{g.attrs.i(0), g.attrs.i(1)};
  const bool has_bias = g.attrs.i(2);
  Tensor dz = act_grad(g, g.attrs.i(3), 4, [&] {
    Tensor z = matmul(g.in[0], g.in[1], g.attrs.i(0), g.attrs.i(1));
    return has_bias ? add(z, g.in[2]) : z;
  });
  base_grad(g, ops::kMatmul, mm, dz, has_bias);
}

void fconv_grad(const GradArgs& g) {
  const Attrs ca = conv::prefix(g.attrs);
  const bool has_bias = g.attrs.i(kConvAttrs);
  Tensor dz = act_grad(g, g.attrs.i(kConvAttrs + 1), kConvAttrs + 2, [&] {
    Tensor z = run_op(ops::kConv2D, {g.in[0], g.in[1]}, ca);
    return has_bias ? add(z, g.in[2]) : z;
  });
  base_grad(g, ops::kConv2D, ca, dz, has_bias);
}

// The unfused op's count (bias and activation are one pass over the output, not counted).
int64_t fmm_flops(std::span<const Meta> in, const Attrs& a, std::span<const Meta> out) {
  return ops::kMatmul.flops(in.subspan(0, 2), Attrs{a.i(0), a.i(1)}, out);
}
int64_t fconv_flops(std::span<const Meta> in, const Attrs& a, std::span<const Meta> out) {
  return ops::kConv2D.flops(in.subspan(0, 2), conv::prefix(a), out);
}

// The schemas: the unfused op's attrs, then what was fused into it.
constexpr AttrField kFusedMatmulFields[] = {
    {"transpose_a", AttrType::kBool},
    {"transpose_b", AttrType::kBool},
    {"bias", AttrType::kBool},
    {"activation", AttrType::kEnum, 1, "none|relu|leaky_relu|tanh|sigmoid|gelu"},
    {"approximate", AttrType::kBool},  // gelu's
    {"alpha", AttrType::kFloat},       // leaky_relu's (0 otherwise)
};
constexpr AttrSchema kFusedMatmulAttrs{kFusedMatmulFields};
constexpr AttrField kFusedConvFields[] = {
    {"strides", AttrType::kInt, 2},
    {"padding", AttrType::kEnum, 1, "valid|same"},
    {"dilation", AttrType::kInt, 2},
    {"groups", AttrType::kInt},
    {"bias", AttrType::kBool},
    {"activation", AttrType::kEnum, 1, "none|relu|leaky_relu|tanh|sigmoid|gelu"},
    {"approximate", AttrType::kBool},
    {"alpha", AttrType::kFloat},
};
constexpr AttrSchema kFusedConvAttrs{kFusedConvFields};

}  // namespace

const OpDef* fused_act_op(int64_t act) { return act_op(act); }

int64_t fused_act_code(const OpDef* op) {
  for (int64_t act = kActNone + 1; act < kActCount; ++act) {
    if (op != nullptr && kActOps[act] == op) return act;
  }
  return kActNone;
}

namespace ops {
const OpDef kFusedMatmul{.name = "fused_matmul",
                         .num_inputs = -1,
                         .num_outputs = 1,
                         .infer = fmm_infer,
                         .reference = fmm_reference,
                         .fast = fmm_fast,
                         .grad = fmm_grad,
                         .attrs = &kFusedMatmulAttrs,
                         .flops = fmm_flops};
const OpDef kFusedConv2D{.name = "fused_conv2d",
                         .num_inputs = -1,
                         .num_outputs = 1,
                         .infer = fconv_infer,
                         .reference = fconv_reference,
                         .fast = fconv_fast,
                         .grad = fconv_grad,
                         .attrs = &kFusedConvAttrs,
                         .flops = fconv_flops};
}  // namespace ops

}  // namespace kiln
