// conv2d (NHWC input, HWIO filter [KH, KW, C/groups, O]) and its two gradient ops.
//   kConv2D               (x, filter)  -> y        attrs = conv attrs (below)
//   kConv2DBackwardInput  (dy, filter, x) -> dx    attrs = conv attrs; x gives only its shape
//   kConv2DBackwardFilter (x, dy)      -> dfilter  attrs = conv attrs + filter's shape (4 ints)
// dx's shape comes from an input, not attrs, so a graph traced with an unknown batch serves
// every batch size; filter shapes are the layer's weights' and never unknown.
// conv attrs = {stride_h, stride_w, padding (0 valid, 1 same), dilation_h, dilation_w, groups}.
// "same" is TensorFlow's: out = ceil(in / stride), pad total = max((out-1)*s + (k-1)*d + 1 - in,
// 0), the odd pixel after. Fast kernels: oneDNN f32 convolutions with nhwc activations and
// weights in oneDNN's preferred layout, reordered from HWIO by a cached reorder. A variable's
// filter is reordered once per version: the result is cached per variable (a per-instance
// cache keyed by the variable's tensor and its version), so forward and backward-input calls
// between two optimizer steps reorder nothing. Under the mixed_bfloat16 dtype policy the
// primitives read bf16 (activations rounded per call into entry-owned copies, the filter rounded
// by its cached reorder) and write f32, accumulating in f32.
#include <atomic>
#include <string>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/onednn/bf16_input.h"
#include "kernels/onednn/primitive_cache.h"
#include "kiln/cache.h"
#include "kiln/ops.h"
#include "ops/conv_filter_cache.h"
#include "ops/conv_geom.h"
#include "ops/dtype_policy.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using conv::Geom;
using conv::geom;
using conv::kConvAttrs;
using conv::out_shape;

Shape tail_shape(const Attrs& a) { return Shape{a.i(6), a.i(7), a.i(8), a.i(9)}; }
Attrs with_shape(const Attrs& conv, const Shape& s) {
  Attrs a;
  for (int k = 0; k < kConvAttrs; ++k) a.add_int(conv.i(k));
  for (int64_t d : s) a.add_int(d);
  return a;
}

void conv_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  require_floating("conv2d", in[0].dtype);
  require_same_dtype("conv2d", in[0].dtype, in[1].dtype);
  out[0] = {out_shape(geom("conv2d", shapes_str(in), in[0].shape, in[1].shape, a)), in[0].dtype};
}

void check_dy(const char* op, std::span<const Meta> in, const Shape& dy, const Geom& g) {
  if (dy != out_shape(g)) {
    throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                     ": the output gradient must be " + to_string(out_shape(g)) + ", got " +
                     to_string(dy));
  }
}

void bwd_input_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "conv2d_backward_input";
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[1].dtype);
  const Shape& xs = in[2].shape;
  check_dy(op, in, in[0].shape, geom(op, shapes_str(in), xs, in[1].shape, a));
  out[0] = {xs, in[0].dtype};
}

void bwd_filter_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "conv2d_backward_filter";
  require_floating(op, in[0].dtype);
  require_same_dtype(op, in[0].dtype, in[1].dtype);
  const Shape fs = tail_shape(a);
  check_dy(op, in, in[1].shape, geom(op, shapes_str(in), in[0].shape, fs, a));
  out[0] = {fs, in[0].dtype};
}

Geom kernel_geom(const Shape& x, const Shape& f, const Attrs& a) {
  return geom("conv2d", "", x, f, a);
}

// Calls fn(x_index, filter_index, out_index) for every (output, tap, input channel) triple
// whose input pixel is in bounds: the one loop nest all three reference kernels share.
template <typename Fn>
void for_each_tap(const Geom& g, Fn&& fn) {
  const int64_t og = g.o / g.groups;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t o = 0; o < g.o; ++o) {
          const int64_t grp = o / og;
          const int64_t yi = ((n * g.oh + oy) * g.ow + ox) * g.o + o;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.sh - g.pt + ky * g.dh;
            if (iy < 0 || iy >= g.h) continue;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t ix = ox * g.sw - g.pl + kx * g.dw;
              if (ix < 0 || ix >= g.w) continue;
              for (int64_t ic = 0; ic < g.cg; ++ic) {
                fn(((n * g.h + iy) * g.w + ix) * g.c + grp * g.cg + ic,
                   ((ky * g.kw + kx) * g.cg + ic) * g.o + o, yi);
              }
            }
          }
        }
}

void conv_reference(const KernelArgs& k) {
  const Geom g = kernel_geom(k.in[0].shape(), k.in[1].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    const T* f = detail::ptr<T>(k.in[1]);
    T* y = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) y[i] = T(0);
    for_each_tap(g, [&](int64_t xi, int64_t fi, int64_t yi) { y[yi] += x[xi] * f[fi]; });
  });
}

void bwd_input_reference(const KernelArgs& k) {
  const Geom g = kernel_geom(k.out[0].shape(), k.in[1].shape(), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* dy = detail::ptr<T>(k.in[0]);
    const T* f = detail::ptr<T>(k.in[1]);
    T* dx = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) dx[i] = T(0);
    for_each_tap(g, [&](int64_t xi, int64_t fi, int64_t yi) { dx[xi] += dy[yi] * f[fi]; });
  });
}

void bwd_filter_reference(const KernelArgs& k) {
  const Geom g = kernel_geom(k.in[0].shape(), tail_shape(k.attrs), k.attrs);
  detail::visit_floating(k.in[0].dtype(), [&]<typename T>() {
    const T* x = detail::ptr<T>(k.in[0]);
    const T* dy = detail::ptr<T>(k.in[1]);
    T* df = detail::ptr<T>(k.out[0]);
    for (int64_t i = 0, n = k.out[0].numel(); i < n; ++i) df[i] = T(0);
    for_each_tap(g, [&](int64_t xi, int64_t fi, int64_t yi) { df[fi] += x[xi] * dy[yi]; });
  });
}

// ---- oneDNN --------------------------------------------------------------------------------

using md = dnnl::memory::desc;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

md act_desc(int64_t n, int64_t c, int64_t h, int64_t w, dt type = dt::f32) {
  return md({n, c, h, w}, type, tag::nhwc);
}

// The HWIO filter as oneDNN sees it: [O, I, KH, KW], or [G, O/G, I/G, KH, KW] when grouped.
// `any_type` is the type of the primitive's (not the user's) filter.
md filter_desc(const Geom& g, bool user, dt any_type = dt::f32) {
  const int64_t og = g.o / g.groups;
  if (g.groups == 1) {
    dnnl::memory::dims dims{g.o, g.cg, g.kh, g.kw};
    if (!user) return md(dims, any_type, tag::any);
    return md(dims, dt::f32, {1, g.o, g.kw * g.cg * g.o, g.cg * g.o});
  }
  dnnl::memory::dims dims{g.groups, og, g.cg, g.kh, g.kw};
  if (!user) return md(dims, any_type, tag::any);
  return md(dims, dt::f32, {og, 1, g.o, g.kw * g.cg * g.o, g.cg * g.o});
}

struct ConvParams {
  dnnl::memory::dims strides, dilates, pad_l, pad_r;
};
ConvParams params(const Geom& g) {
  return {{g.sh, g.sw}, {g.dh - 1, g.dw - 1}, {g.pt, g.pl}, {g.pb, g.pr}};
}

// `bf16`: bf16 input and filter, f32 output (mixed_bfloat16).
dnnl::convolution_forward::primitive_desc fwd_pd(const Geom& g, dnnl::prop_kind prop, bool bf16) {
  ConvParams p = params(g);
  const dt in = bf16 ? dt::bf16 : dt::f32;
  dnnl::convolution_forward::desc d(prop, dnnl::algorithm::convolution_direct,
                                    act_desc(g.n, g.c, g.h, g.w, in), filter_desc(g, false, in),
                                    act_desc(g.n, g.o, g.oh, g.ow), p.strides, p.dilates, p.pad_l,
                                    p.pad_r);
  return dnnl::convolution_forward::primitive_desc(d, onednn::engine());
}

// A variable's filter in a primitive's layout, shared by every entry that wants that layout.
struct ReorderedFilter {
  dnnl::memory mem;
  uint64_t cache_bytes() const { return mem.get_desc().get_size(); }
};
using FilterCache = CachedPerInstance<std::shared_ptr<const ReorderedFilter>>;

std::atomic<bool> filter_cache_on{true};

// Forward, backward-input and fused inference primitives may prefer different layouts: one
// cache each (0, 1, 2).
FilterCache& filter_cache(int which) {
  static FilterCache fwd("conv2d filter in oneDNN layout (forward)");
  static FilterCache bwd("conv2d filter in oneDNN layout (backward input)");
  static FilterCache fused("fused_conv2d filter in oneDNN layout (inference)");
  return which == 0 ? fwd : which == 1 ? bwd : fused;
}

}  // namespace

namespace conv_filter {
bool execute_with_cached_filter(const detail::TensorImpl* filter, dnnl::memory& user_w,
                                const dnnl::memory& w, const dnnl::primitive& reorder,
                                const dnnl::primitive& prim, const onednn::ExecArgs& args,
                                int which) {
  if (!filter->is_variable || !filter_cache_on.load(std::memory_order_relaxed)) return false;
  FilterCache& cache = filter_cache(which);
  auto reorder_now = [&] {
    auto r = std::make_shared<ReorderedFilter>();
    r->mem = dnnl::memory(w.get_desc(), onednn::engine());  // owned by the cached value
    user_w.set_data_handle(filter->bytes());
    onednn::ExecArgs ra;
    ra.add(DNNL_ARG_FROM, user_w);
    ra.add(DNNL_ARG_TO, r->mem);
    onednn::execute(reorder, ra);
    return std::shared_ptr<const ReorderedFilter>(std::move(r));
  };
  const uint64_t version = filter->version.load(std::memory_order_acquire);
  std::shared_ptr<const ReorderedFilter> r = cache.get(filter->token, reorder_now, version);
  if (r->mem.get_desc() != w.get_desc()) {  // cached for a primitive with another layout
    cache.invalidate(filter->token);
    r = cache.get(filter->token, reorder_now, version);
  }
  onednn::ExecArgs a = args;
  for (int i = 0; i < a.n; ++i) {
    if (a.args[i].arg == DNNL_ARG_WEIGHTS) a.args[i].memory = r->mem.get();
  }
  onednn::execute(prim, a);
  return true;
}
}  // namespace conv_filter

namespace {

// An entry: the conv primitive, its activation memories, and the filter in its user (HWIO)
// layout plus, when oneDNN prefers another, that layout and the reorder between them.
struct ConvEntry : onednn::Entry {
  dnnl::primitive prim, reorder;
  dnnl::memory act_in, act_out, user_w, w;
  bool needs_reorder = false;
  onednn::ExecArgs args, reorder_args;
  // mixed_bfloat16: act_in (and, for the filter gradient, act_out) are bf16 copies that these
  // round the caller's float32 data into.
  bool in16 = false, out16 = false;
  onednn::Bf16Input in_cvt, out_cvt;

  void bind_in(const void* p) {
    if (in16) {
      in_cvt.convert(p);
    } else {
      act_in.set_data_handle(const_cast<void*>(p));
    }
  }
  void bind_out(const void* p) {
    if (out16) {
      out_cvt.convert(p);
    } else {
      act_out.set_data_handle(const_cast<void*>(p));
    }
  }
  // The bf16 memory for a primitive's activation `desc`, converted from float32 by `cvt`.
  dnnl::memory bf16_act(onednn::Bf16Input& cvt, const md& desc) {
    int64_t n = 1;
    for (int64_t d : desc.dims()) n *= d;
    bytes += cvt.init(desc, n);
    return cvt.low;
  }

  // Points the memories at this call's buffers and executes. The filter reorder (HWIO <->
  // oneDNN's blocked layout) runs before the primitive when it reads the filter, after it when
  // it writes the filter gradient.
  void run(const void* in, const void* filter, const void* out, bool filter_is_output) {
    std::lock_guard<std::mutex> lock(mu);
    bind_in(in);
    user_w.set_data_handle(const_cast<void*>(filter));
    bind_out(out);
    if (needs_reorder && !filter_is_output) onednn::execute(reorder, reorder_args);
    onednn::execute(prim, args);
    if (needs_reorder && filter_is_output) onednn::execute(reorder, reorder_args);
  }

  // Runs with the cached filter when it is a variable's and needs a reorder, else as run().
  void run_filter_input(const KernelArgs& k, bool backward_input) {
    const detail::TensorImpl* f = k.in[1].impl();
    if (needs_reorder) {
      std::lock_guard<std::mutex> lock(mu);
      bind_in(k.in[0].impl()->bytes());
      act_out.set_data_handle(k.out[0].impl()->bytes());
      if (conv_filter::execute_with_cached_filter(f, user_w, w, reorder, prim, args,
                                                  backward_input ? 1 : 0)) {
        return;
      }
    }
    run(k.in[0].impl()->bytes(), f->bytes(), k.out[0].impl()->bytes(), false);
  }
};

onednn::Key conv_key(onednn::Kind kind, const Geom& g, bool bf16) {
  onednn::Key key(kind);
  key.add(bf16);
  for (int64_t v : {g.n, g.h, g.w, g.c, g.kh, g.kw, g.cg, g.o, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl,
                    g.pb, g.pr, g.groups}) {
    key.add(v);
  }
  return key.add(omp_get_max_threads());
}

// Binds the filter memories; `to_user` reorders oneDNN's layout into HWIO (backward filter).
void bind_filter(ConvEntry& e, const Geom& g, const md& prim_w, bool to_user) {
  const auto& eng = onednn::engine();
  e.user_w = dnnl::memory(filter_desc(g, true), eng, DNNL_MEMORY_NONE);
  e.needs_reorder = prim_w != e.user_w.get_desc();
  if (!e.needs_reorder) {
    e.w = e.user_w;
    return;
  }
  e.w = dnnl::memory(prim_w, eng);  // owned by the entry
  e.bytes += prim_w.get_size();
  const dnnl::memory& from = to_user ? e.w : e.user_w;
  const dnnl::memory& to = to_user ? e.user_w : e.w;
  e.reorder = dnnl::reorder(from, to);
  e.reorder_args.add(DNNL_ARG_FROM, from);
  e.reorder_args.add(DNNL_ARG_TO, to);
}

bool conv_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32 || k.out[0].numel() == 0 || k.in[0].numel() == 0)
    return false;
  const Geom g = kernel_geom(k.in[0].shape(), k.in[1].shape(), k.attrs);
  const bool bf16 = detail::conv_in_bf16(g.cg);
  const onednn::Key key = conv_key(onednn::Kind::kConvForward, g, bf16);
  auto e = onednn::get_or_create<ConvEntry>(key, [&] {
    auto e = std::make_shared<ConvEntry>();
    auto pd = fwd_pd(g, dnnl::prop_kind::forward_inference, bf16);
    e->prim = dnnl::convolution_forward(pd);
    e->in16 = bf16;
    e->act_in = bf16 ? e->bf16_act(e->in_cvt, pd.src_desc())
                     : dnnl::memory(pd.src_desc(), onednn::engine(), DNNL_MEMORY_NONE);
    e->act_out = dnnl::memory(pd.dst_desc(), onednn::engine(), DNNL_MEMORY_NONE);
    bind_filter(*e, g, pd.weights_desc(), false);
    e->args.add(DNNL_ARG_SRC, e->act_in);
    e->args.add(DNNL_ARG_WEIGHTS, e->w);
    e->args.add(DNNL_ARG_DST, e->act_out);
    return e;
  });
  e->run_filter_input(k, false);
  return true;
}

// conv2d's input gradient for stride 1, no dilation and one group, float32, as a forward
// convolution of dy with the filter flipped in space and its channel dims swapped, padded
// kh-1-pt / kw-1-pl before and kh-1-pb / kw-1-pr after: oneDNN 2.6 runs that forward
// convolution (brgconv) faster than its backward-data primitive (jit) for the cnn's 32 -> 64
// conv, 1.05-1.16 against 1.18-1.28 ms (`onednn_layout_bench`, BM_Conv kind 4 against 1,
// 2 threads, Zen 5). Not where dx has few channels: for the 1 -> 32 conv the forward conv
// writing one channel is no faster (1.04x in 8 interleaved repetitions, 0.91x in another run),
// so that case keeps the backward-data primitive. The flipped filter is rebuilt on every call (for
// a 3x3x32x64 filter a few microseconds), so no per-variable cache is involved.
struct FlippedConvEntry : onednn::Entry {
  dnnl::primitive prim, reorder;
  dnnl::memory dy, dx, flipped, w;  // flipped: the entry's HWIO buffer, seen as [I, O, KH, KW]
  onednn::ExecArgs args, reorder_args;
};

constexpr int64_t kFlippedMinInputChannels = 16;

bool flipped_input_grad(const Geom& g) {
  return g.c >= kFlippedMinInputChannels && g.groups == 1 && g.sh == 1 && g.sw == 1 && g.dh == 1 &&
         g.dw == 1 && g.pt < g.kh && g.pb < g.kh && g.pl < g.kw && g.pr < g.kw;
}

void bwd_input_flipped(const KernelArgs& k, const Geom& g) {
  onednn::Key key = conv_key(onednn::Kind::kConvBackwardData, g, false);
  key.add(-1);  // this entry type, not ConvEntry's
  auto e = onednn::get_or_create<FlippedConvEntry>(key, [&] {
    auto e = std::make_shared<FlippedConvEntry>();
    const auto& eng = onednn::engine();
    // The flipped filter F[ky][kx][c][o] = W[kh-1-ky][kw-1-kx][c][o] (HWIO) is the forward
    // filter [out = c, in = o, ky, kx] of the transposed convolution.
    const md user({g.c, g.o, g.kh, g.kw}, dt::f32, {g.o, 1, g.kw * g.c * g.o, g.c * g.o});
    dnnl::convolution_forward::desc d(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
        act_desc(g.n, g.o, g.oh, g.ow), md({g.c, g.o, g.kh, g.kw}, dt::f32, tag::any),
        act_desc(g.n, g.c, g.h, g.w), {1, 1}, {0, 0}, {g.kh - 1 - g.pt, g.kw - 1 - g.pl},
        {g.kh - 1 - g.pb, g.kw - 1 - g.pr});
    dnnl::convolution_forward::primitive_desc pd(d, eng);
    e->prim = dnnl::convolution_forward(pd);
    e->flipped = dnnl::memory(user, eng);
    e->w = pd.weights_desc() == user ? e->flipped : dnnl::memory(pd.weights_desc(), eng);
    e->bytes = user.get_size() + (e->w == e->flipped ? 0 : pd.weights_desc().get_size());
    if (e->w != e->flipped) {
      e->reorder = dnnl::reorder(e->flipped, e->w);
      e->reorder_args.add(DNNL_ARG_FROM, e->flipped);
      e->reorder_args.add(DNNL_ARG_TO, e->w);
    }
    e->dy = dnnl::memory(pd.src_desc(), eng, DNNL_MEMORY_NONE);
    e->dx = dnnl::memory(pd.dst_desc(), eng, DNNL_MEMORY_NONE);
    e->args.add(DNNL_ARG_SRC, e->dy);
    e->args.add(DNNL_ARG_WEIGHTS, e->w);
    e->args.add(DNNL_ARG_DST, e->dx);
    return e;
  });
  std::lock_guard<std::mutex> lock(e->mu);
  const float* f = detail::ptr<float>(k.in[1]);
  float* flipped = static_cast<float*>(e->flipped.get_data_handle());
  const int64_t tap = g.c * g.o;
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const float* from = f + ((g.kh - 1 - ky) * g.kw + (g.kw - 1 - kx)) * tap;
      std::copy(from, from + tap, flipped + (ky * g.kw + kx) * tap);
    }
  if (e->w != e->flipped) onednn::execute(e->reorder, e->reorder_args);
  e->dy.set_data_handle(k.in[0].impl()->bytes());
  e->dx.set_data_handle(k.out[0].impl()->bytes());
  onednn::execute(e->prim, e->args);
}

bool bwd_input_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32 || k.out[0].numel() == 0 || k.in[0].numel() == 0)
    return false;
  const Geom g = kernel_geom(k.out[0].shape(), k.in[1].shape(), k.attrs);
  const bool bf16 = detail::conv_in_bf16(g.o / g.groups);
  if (!bf16 && flipped_input_grad(g)) {
    bwd_input_flipped(k, g);
    return true;
  }
  const dt in = bf16 ? dt::bf16 : dt::f32;
  const onednn::Key key = conv_key(onednn::Kind::kConvBackwardData, g, bf16);
  auto e = onednn::get_or_create<ConvEntry>(key, [&] {
    auto e = std::make_shared<ConvEntry>();
    ConvParams p = params(g);
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct,
                                            act_desc(g.n, g.c, g.h, g.w), filter_desc(g, false, in),
                                            act_desc(g.n, g.o, g.oh, g.ow, in), p.strides,
                                            p.dilates, p.pad_l, p.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(
        d, onednn::engine(), fwd_pd(g, dnnl::prop_kind::forward_training, bf16));
    e->prim = dnnl::convolution_backward_data(pd);
    e->in16 = bf16;
    e->act_in = bf16 ? e->bf16_act(e->in_cvt, pd.diff_dst_desc())
                     : dnnl::memory(pd.diff_dst_desc(), onednn::engine(), DNNL_MEMORY_NONE);
    e->act_out = dnnl::memory(pd.diff_src_desc(), onednn::engine(), DNNL_MEMORY_NONE);
    bind_filter(*e, g, pd.weights_desc(), false);
    e->args.add(DNNL_ARG_DIFF_DST, e->act_in);
    e->args.add(DNNL_ARG_WEIGHTS, e->w);
    e->args.add(DNNL_ARG_DIFF_SRC, e->act_out);
    return e;
  });
  e->run_filter_input(k, true);
  return true;
}

bool bwd_filter_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32 || k.out[0].numel() == 0 || k.in[0].numel() == 0)
    return false;
  const Geom g = kernel_geom(k.in[0].shape(), tail_shape(k.attrs), k.attrs);
  const bool bf16 = detail::conv_in_bf16(g.cg);
  const dt in = bf16 ? dt::bf16 : dt::f32;
  const onednn::Key key = conv_key(onednn::Kind::kConvBackwardWeights, g, bf16);
  auto e = onednn::get_or_create<ConvEntry>(key, [&] {
    auto e = std::make_shared<ConvEntry>();
    ConvParams p = params(g);
    dnnl::convolution_backward_weights::desc d(
        dnnl::algorithm::convolution_direct, act_desc(g.n, g.c, g.h, g.w, in),
        filter_desc(g, false), act_desc(g.n, g.o, g.oh, g.ow, in), p.strides, p.dilates, p.pad_l,
        p.pad_r);
    dnnl::convolution_backward_weights::primitive_desc pd(
        d, onednn::engine(), fwd_pd(g, dnnl::prop_kind::forward_training, bf16));
    e->prim = dnnl::convolution_backward_weights(pd);
    e->in16 = e->out16 = bf16;
    const auto& eng = onednn::engine();
    e->act_in = bf16 ? e->bf16_act(e->in_cvt, pd.src_desc())
                     : dnnl::memory(pd.src_desc(), eng, DNNL_MEMORY_NONE);
    e->act_out = bf16 ? e->bf16_act(e->out_cvt, pd.diff_dst_desc())
                      : dnnl::memory(pd.diff_dst_desc(), eng, DNNL_MEMORY_NONE);
    bind_filter(*e, g, pd.diff_weights_desc(), true);
    e->args.add(DNNL_ARG_SRC, e->act_in);
    e->args.add(DNNL_ARG_DIFF_DST, e->act_out);
    e->args.add(DNNL_ARG_DIFF_WEIGHTS, e->w);
    return e;
  });
  e->run(k.in[0].impl()->bytes(), k.out[0].impl()->bytes(), k.in[1].impl()->bytes(), true);
  return true;
}

// ---- gradients: each op is linear in each input, so every gradient is one of the three ----

void conv_grad(const GradArgs& g) {
  const Tensor &x = g.in[0], &f = g.in[1], &dy = g.grad_out[0];
  if (g.needs(0)) {  // a network's first conv: its input needs no gradient, skip the work
    g.grad_in[0] = run_op(ops::kConv2DBackwardInput, {dy, f, x}, g.attrs);
  }
  if (g.needs(1)) {
    g.grad_in[1] = run_op(ops::kConv2DBackwardFilter, {x, dy}, with_shape(g.attrs, f.shape()));
  }
}

// dx = B(dy, f): d dy = conv(ddx, f), d f = Bf(ddx, dy); x gave only a shape.
void bwd_input_grad(const GradArgs& g) {
  const Tensor &dy = g.in[0], &f = g.in[1], &ddx = g.grad_out[0];
  g.grad_in[0] = run_op(ops::kConv2D, {ddx, f}, g.attrs);
  g.grad_in[1] = run_op(ops::kConv2DBackwardFilter, {ddx, dy}, with_shape(g.attrs, f.shape()));
}

// df = Bf(x, dy): d x = B(dy, ddf), d dy = conv(x, ddf).
void bwd_filter_grad(const GradArgs& g) {
  const Tensor &x = g.in[0], &dy = g.in[1], &ddf = g.grad_out[0];
  g.grad_in[0] = run_op(ops::kConv2DBackwardInput, {dy, ddf, x}, conv::prefix(g.attrs));
  g.grad_in[1] = run_op(ops::kConv2D, {x, ddf}, conv::prefix(g.attrs));
}

constexpr AttrField kConvFields[] = {
    {"strides", AttrType::kInt, 2},
    {"padding", AttrType::kEnum, 1, "valid|same"},
    {"dilation", AttrType::kInt, 2},
    {"groups", AttrType::kInt},
};
constexpr AttrSchema kConvSchema{kConvFields};
constexpr AttrField kConvFilterGradFields[] = {
    kConvFields[0],
    kConvFields[1],
    kConvFields[2],
    kConvFields[3],
    {"filter_shape", AttrType::kShape, 4},
};
constexpr AttrSchema kConvFilterGradSchema{kConvFilterGradFields};

// 2 * output elements * KH * KW * (C / groups): the filter [KH, KW, C/groups, F] gives all three.
int64_t conv_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta> out) {
  const Shape& f = in[1].shape;
  return 2 * out[0].shape.numel() * f[0] * f[1] * f[2];
}

// The forward's multiply-adds again: dx takes dy [.., F] times the filter [KH, KW, C/groups, F].
int64_t bwd_input_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta>) {
  const Shape& f = in[1].shape;
  return 2 * in[0].shape.numel() * f[0] * f[1] * f[2];
}

// dfilter [KH, KW, C/groups, F] sums dy [.., F] times input patches: the forward's count too.
int64_t bwd_filter_flops(std::span<const Meta> in, const Attrs&, std::span<const Meta> out) {
  const Shape& f = out[0].shape;
  return 2 * in[1].shape.numel() * f[0] * f[1] * f[2];
}

}  // namespace

namespace ops {
const OpDef kConv2D{.name = "conv2d",
                    .num_inputs = 2,
                    .num_outputs = 1,
                    .infer = conv_infer,
                    .reference = conv_reference,
                    .fast = conv_fast,
                    .grad = conv_grad,
                    .attrs = &kConvSchema,
                    .flops = conv_flops};
const OpDef kConv2DBackwardInput{.name = "conv2d_backward_input",
                                 .num_inputs = 3,
                                 .num_outputs = 1,
                                 .infer = bwd_input_infer,
                                 .reference = bwd_input_reference,
                                 .fast = bwd_input_fast,
                                 .grad = bwd_input_grad,
                                 .attrs = &kConvSchema,
                                 .shape_only_inputs = 1u << 2,
                                 .flops = bwd_input_flops};
const OpDef kConv2DBackwardFilter{.name = "conv2d_backward_filter",
                                  .num_inputs = 2,
                                  .num_outputs = 1,
                                  .infer = bwd_filter_infer,
                                  .reference = bwd_filter_reference,
                                  .fast = bwd_filter_fast,
                                  .grad = bwd_filter_grad,
                                  .attrs = &kConvFilterGradSchema,
                                  .flops = bwd_filter_flops};
}  // namespace ops

void set_conv_filter_cache_enabled(bool on) { filter_cache_on.store(on); }

Tensor conv2d(const Tensor& x, const Tensor& filter, const Conv2DOptions& o) {
  Attrs a{o.strides[0],  o.strides[1],  o.padding == Padding::kSame ? 1 : 0,
          o.dilation[0], o.dilation[1], o.groups};
  return run_op(ops::kConv2D, {x, filter}, a);
}

}  // namespace kiln
