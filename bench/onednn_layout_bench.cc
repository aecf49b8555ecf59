// bench/onednn_layout_bench.cc -- the oneDNN measurements behind the graph-speed design choices
// (../shared/DESIGN.md, "Graph speed: what measurement decided"), oneDNN called directly:
//   BM_Conv/conv:C/kind:K/blocked:B   the cnn's convs (C 0: 1->32 on 28x28, 1: 32->64 on
//                                     14x14, batch 64, 3x3 same) in NHWC (B 0) or oneDNN's
//                                     preferred blocked layout (B 1, format_tag::any); K 0
//                                     forward, 1 backward-data, 2 backward-weights, 3 the same
//                                     with the bias gradient (diff_bias) inside the primitive,
//                                     4 the input gradient as a forward conv of dy with the
//                                     flipped filter (conv.cc's rule for stride 1; against 1)
//   BM_ConvPoolChunk/images:B         conv1 (bias + relu) then a 2x2 max pool over 64 images in
//                                     chunks of B, after dirtying 64 MB as the rest of a train
//                                     step does: the intermediate stays in cache for small B
//   BM_MatmulPacked/case:C/packed:P   a dense layer's matmuls with the weights as stored (P 0)
//                                     or packed once into the preferred layout (P 1); C 0: the
//                                     cnn's 64x128 @ (3136x128)^T input gradient, 1: its
//                                     64x3136 @ 3136x128 forward
//   BM_MatmulSwapped/case:C/swapped:S  A B^T as stored (S 0: B read transposed) or as
//                                     (B A^T)^T (S 1: B read in place, then a reorder
//                                     transposes the product: matmul.cc's rule); A [64, K],
//                                     B [N, K], C 0: K 128, N 3136 (the cnn's dense input
//                                     gradient), 1: 256 x 784, 2: 128 x 256 (below the rule's
//                                     threshold)
// Threads: all (OMP_NUM_THREADS to change). Run interleaved with repetitions:
//   onednn_layout_bench --benchmark_enable_random_interleaving=true --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

const dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

void fill(const memory& m) {
  float* f = static_cast<float*>(m.get_data_handle());
  const size_t n = m.get_desc().get_size() / sizeof(float);
  for (size_t i = 0; i < n; ++i) f[i] = static_cast<float>(i % 7) * 0.1f;
}

// Fills every argument, then times `prim` on them.
void run_filled(benchmark::State& state, const dnnl::primitive& prim,
                std::unordered_map<int, memory>& args) {
  for (auto& [key, mem] : args) fill(mem);
  dnnl::stream s(engine());
  for (auto _ : state) {
    prim.execute(s, args);
    s.wait();
  }
}

struct ConvShape {
  memory::dim c, o, hw;
};
constexpr ConvShape kConvs[] = {{1, 32, 28}, {32, 64, 14}};
constexpr memory::dim kBatch = 64;

void BM_Conv(benchmark::State& state) {
  const ConvShape cs = kConvs[state.range(0)];
  const int kind = static_cast<int>(state.range(1));
  const tag act = state.range(2) ? tag::any : tag::nhwc;
  const memory::dims strides{1, 1}, pad{1, 1};
  const memory::desc src({kBatch, cs.c, cs.hw, cs.hw}, dt::f32, act),
      wei({cs.o, cs.c, 3, 3}, dt::f32, tag::any), dst({kBatch, cs.o, cs.hw, cs.hw}, dt::f32, act),
      bias({cs.o}, dt::f32, tag::a);
  const auto& eng = engine();
  dnnl::convolution_forward::primitive_desc fwd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                      dnnl::algorithm::convolution_direct, src, wei, dst, strides,
                                      pad, pad),
      eng);
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
  if (kind == 4) {  // the input gradient as a forward conv of dy with the flipped filter
    dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, dst,
            memory::desc({cs.c, cs.o, 3, 3}, dt::f32, tag::any), src, strides, pad, pad),
        eng);
    prim = dnnl::convolution_forward(pd);
    args = {{DNNL_ARG_SRC, memory(pd.src_desc(), eng)},
            {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng)},
            {DNNL_ARG_DST, memory(pd.dst_desc(), eng)}};
  } else if (kind == 0) {
    prim = dnnl::convolution_forward(fwd);
    args = {{DNNL_ARG_SRC, memory(fwd.src_desc(), eng)},
            {DNNL_ARG_WEIGHTS, memory(fwd.weights_desc(), eng)},
            {DNNL_ARG_DST, memory(fwd.dst_desc(), eng)}};
  } else if (kind == 1) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src, wei, dst,
                                              strides, pad, pad),
        eng, fwd);
    prim = dnnl::convolution_backward_data(pd);
    args = {{DNNL_ARG_DIFF_SRC, memory(pd.diff_src_desc(), eng)},
            {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng)},
            {DNNL_ARG_DIFF_DST, memory(pd.diff_dst_desc(), eng)}};
  } else {
    const bool with_bias = kind == 3;
    auto d = with_bias
                 ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct,
                                                            src, wei, bias, dst, strides, pad, pad)
                 : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct,
                                                            src, wei, dst, strides, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc pd(d, eng, fwd);
    prim = dnnl::convolution_backward_weights(pd);
    args = {{DNNL_ARG_SRC, memory(pd.src_desc(), eng)},
            {DNNL_ARG_DIFF_WEIGHTS, memory(pd.diff_weights_desc(), eng)},
            {DNNL_ARG_DIFF_DST, memory(pd.diff_dst_desc(), eng)}};
    if (with_bias) args.insert({DNNL_ARG_DIFF_BIAS, memory(pd.diff_bias_desc(), eng)});
  }
  run_filled(state, prim, args);
}

void BM_ConvPoolChunk(benchmark::State& state) {
  const memory::dim chunk = state.range(0);
  const auto& eng = engine();
  const memory::desc src({chunk, 1, 28, 28}, dt::f32, tag::nhwc),
      wei({32, 1, 3, 3}, dt::f32, tag::any), bias({32}, dt::f32, tag::a),
      dst({chunk, 32, 28, 28}, dt::f32, tag::nhwc);
  dnnl::post_ops po;
  po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  dnnl::convolution_forward::primitive_desc pd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, src, wei, bias, dst,
                                      {1, 1}, {1, 1}, {1, 1}),
      attr, eng);
  dnnl::convolution_forward conv(pd);
  memory x(pd.src_desc(), eng, DNNL_MEMORY_NONE), w(pd.weights_desc(), eng), b(pd.bias_desc(), eng),
      mid(pd.dst_desc(), eng, DNNL_MEMORY_NONE);
  fill(w);
  fill(b);
  std::vector<float> images(kBatch * 784, 0.5f), inter(chunk * 784 * 32), pooled(kBatch * 196 * 32),
      dirty(16 << 20, 1.f);
  dnnl::stream s(eng);
  for (auto _ : state) {
    state.PauseTiming();
    for (size_t i = 0; i < dirty.size(); i += 16) dirty[i] += 1.f;  // 64 MB of dirty lines
    state.ResumeTiming();
    for (memory::dim b0 = 0; b0 < kBatch; b0 += chunk) {
      x.set_data_handle(images.data() + b0 * 784);
      mid.set_data_handle(inter.data());
      conv.execute(
          s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, mid}});
      const float* in = inter.data();
      float* out = pooled.data() + b0 * 196 * 32;
#pragma omp parallel for
      for (memory::dim r = 0; r < chunk * 14; ++r) {
        const memory::dim img = r / 14, oy = r % 14;
        for (int ox = 0; ox < 14; ++ox) {
          const float* p = in + ((img * 28 + 2 * oy) * 28 + 2 * ox) * 32;
          float* o = out + ((img * 14 + oy) * 14 + ox) * 32;
          for (int c = 0; c < 32; ++c) {
            o[c] = std::max(std::max(p[c], p[32 + c]), std::max(p[28 * 32 + c], p[29 * 32 + c]));
          }
        }
      }
    }
    benchmark::DoNotOptimize(pooled.data());
  }
}

void BM_MatmulPacked(benchmark::State& state) {
  // case 0: [64, 128] @ W^T with W [3136, 128] stored row-major (read transposed: "ba");
  // case 1: [64, 3136] @ W with W [3136, 128].
  const bool transposed = state.range(0) == 0;
  const memory::dim m = 64, k = transposed ? 128 : 3136, n = transposed ? 3136 : 128;
  const auto& eng = engine();
  const memory::desc a({m, k}, dt::f32, tag::ab), c({m, n}, dt::f32, tag::ab),
      b({k, n}, dt::f32, state.range(1) ? tag::any : (transposed ? tag::ba : tag::ab));
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), eng);
  dnnl::matmul mm(pd);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd.src_desc(), eng)},
                                       {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng)},
                                       {DNNL_ARG_DST, memory(pd.dst_desc(), eng)}};
  run_filled(state, mm, args);
}

void BM_MatmulSwapped(benchmark::State& state) {
  const memory::dim shapes[3][2] = {{128, 3136}, {256, 784}, {128, 256}};
  const memory::dim m = 64, k = shapes[state.range(0)][0], n = shapes[state.range(0)][1];
  const bool swapped = state.range(1) == 1;
  const auto& eng = engine();
  // A [m, k] and B [n, k] row-major; C [m, n] row-major.
  const memory::desc a({m, k}, dt::f32, tag::ab), bt({k, n}, dt::f32, tag::ba),
      c({m, n}, dt::f32, tag::ab);
  const memory::desc b({n, k}, dt::f32, tag::ab), at({k, m}, dt::f32, tag::ba),
      ct({n, m}, dt::f32, tag::ab), c_as_ct({n, m}, dt::f32, tag::ba);
  dnnl::matmul mm(dnnl::matmul::primitive_desc(
      swapped ? dnnl::matmul::desc(b, at, ct) : dnnl::matmul::desc(a, bt, c), eng));
  memory ma(a, eng), mb(b, eng), mc(c, eng), mct(ct, eng),
      mc_as_ct(c_as_ct, eng, mc.get_data_handle());
  fill(ma);
  fill(mb);
  dnnl::reorder transpose(mct, mc_as_ct);
  dnnl::stream s(eng);
  for (auto _ : state) {
    if (swapped) {
      mm.execute(s, {{DNNL_ARG_SRC, mb},
                     {DNNL_ARG_WEIGHTS, memory(at, eng, ma.get_data_handle())},
                     {DNNL_ARG_DST, mct}});
      transpose.execute(s, mct, mc_as_ct);
    } else {
      mm.execute(s, {{DNNL_ARG_SRC, ma},
                     {DNNL_ARG_WEIGHTS, memory(bt, eng, mb.get_data_handle())},
                     {DNNL_ARG_DST, mc}});
    }
    s.wait();
  }
}

}  // namespace

BENCHMARK(BM_Conv)
    ->ArgsProduct({{0, 1}, {0, 1, 2, 3, 4}, {0, 1}})
    ->ArgNames({"conv", "kind", "blocked"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_ConvPoolChunk)
    ->ArgsProduct({{64, 16, 8, 4}})
    ->ArgNames({"images"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_MatmulPacked)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"case", "packed"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_MatmulSwapped)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->ArgNames({"case", "swapped"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
