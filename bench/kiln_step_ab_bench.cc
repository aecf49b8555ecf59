// A/B of issue #20's changes in one process (run with --benchmark_enable_random_interleaving
// and repetitions, so both sides see the same machine state; report ratios):
//   BM_MaxPoolGrad/new:<0|1>/threads:<1|2>  max_pool2d_grad of the cnn's first pool ([64, 28, 28,
//                                           32], 2x2/2): the kernel before the change (copied
//                                           below) against kiln's now
//   BM_MaxPool/new:<0|1>/threads:<1|2>      the forward pool, likewise
//   BM_PoolGradRelu/fused:<0|1>/threads:<1|2>  the backward of the cnn's first relu -> pool:
//                                           relu_grad(max_pool2d_grad(y, dp), y) as two ops or
//                                           as fused_max_pool2d_grad (graph/fusion.cc)
//   BM_ConvPool/fused:<0|1>/pass:<0|1>     the cnn's first conv -> bias -> relu -> 2x2 max pool
//                                           (pass 0) and its filter and bias gradient (pass 1),
//                                           2 threads: the unfused ops the traced step ran
//                                           (fused_conv2d + max_pool2d; fused_max_pool2d_grad +
//                                           sum_to_like + conv2d_backward_filter) against
//                                           fused_conv2d_pool / fused_conv2d_pool_grad
//   BM_AdamUpdate/cnn:<0|1>/foreach:<0|1>   Adam's apply_gradients on the model's variables (2
//                                           threads, eager): one op per variable or multi ops
//   BM_TrainStepForeach/cnn:<0|1>/foreach:<0|1>  a graph-mode Adam train step (batch 64, 2
//                                           threads) with one update op per variable against
//                                           the multi-tensor ops (Optimizer::set_foreach)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include <kiln/function.h>
#include <kiln/kiln.h>
#include <kiln/nn.h>

#include "kernels/broadcast.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/registry.h"
#include "peak.h"
#include "train_step.h"

namespace {

// ---- the pooling kernels before the change (src/ops/pool.cc at 77d291e), float, 2x2/2 valid --

void max_pool_before(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c) {
  const int64_t oh = h / 2, ow = w / 2;
  kiln::kernels::parallel_range(n * oh, ow * c * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t img = r / oh, oy = r % oh;
      for (int64_t ox = 0; ox < ow; ++ox) {
        float* o = y + (r * ow + ox) * c;
        bool first = true;
        for (int64_t yy = oy * 2; yy < oy * 2 + 2; ++yy)
          for (int64_t xx = ox * 2; xx < ox * 2 + 2; ++xx) {
            const float* xi = x + ((img * h + yy) * w + xx) * c;
            if (first) {
              std::copy(xi, xi + c, o);
              first = false;
            } else {
              for (int64_t k = 0; k < c; ++k) o[k] = xi[k] > o[k] ? xi[k] : o[k];
            }
          }
      }
    }
  });
}

void max_pool_grad_before(const float* x, const float* dy, float* dx, int64_t n, int64_t h,
                          int64_t w, int64_t C) {
  const int64_t oh = h / 2, ow = w / 2, img = h * w * C;
  kiln::kernels::parallel_range(n, oh * ow * C * 4, [&](int64_t b, int64_t e) {
    std::fill(dx + b * img, dx + e * img, 0.f);
    std::vector<float> best(C);
    std::vector<int32_t> at(C);
    for (int64_t i = b; i < e; ++i)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const float* d = dy + ((i * oh + oy) * ow + ox) * C;
          int32_t slot = 0;
          for (int64_t yy = oy * 2; yy < oy * 2 + 2; ++yy)
            for (int64_t xx = ox * 2; xx < ox * 2 + 2; ++xx, ++slot) {
              const float* xi = x + ((i * h + yy) * w + xx) * C;
              if (slot == 0) {
                for (int64_t c = 0; c < C; ++c) best[c] = xi[c], at[c] = 0;
              } else {
                for (int64_t c = 0; c < C; ++c) {
                  const bool gt = xi[c] > best[c];
                  best[c] = gt ? xi[c] : best[c];
                  at[c] = gt ? slot : at[c];
                }
              }
            }
          slot = 0;
          for (int64_t yy = oy * 2; yy < oy * 2 + 2; ++yy)
            for (int64_t xx = ox * 2; xx < ox * 2 + 2; ++xx, ++slot) {
              float* o = dx + ((i * h + yy) * w + xx) * C;
              for (int64_t c = 0; c < C; ++c) o[c] += at[c] == slot ? d[c] : 0.f;
            }
        }
  });
}

constexpr int64_t kN = 64, kH = 28, kW = 28, kC = 32;
const kiln::Attrs kPool2x2{2, 2, 2, 2, 0};

void BM_MaxPoolGrad(benchmark::State& state) {
  const bool now = state.range(0) == 1;
  kiln::set_num_threads(static_cast<int>(state.range(1)));
  kiln::Tensor x = kiln::random_normal({kN, kH, kW, kC}, 0.0, 1.0, 1);
  kiln::Tensor dy = kiln::random_normal({kN, kH / 2, kW / 2, kC}, 0.0, 1.0, 2);
  kiln::Tensor dx = kiln::zeros({kN, kH, kW, kC});
  for (auto _ : state) {
    if (now) {
      kiln::Tensor out = kiln::run_op(kiln::ops::kMaxPool2DGrad, {x, dy}, kPool2x2);
      benchmark::DoNotOptimize(out.raw_data());
    } else {
      max_pool_grad_before(x.data<float>(), dy.data<float>(), dx.data<float>(), kN, kH, kW, kC);
      benchmark::DoNotOptimize(dx.raw_data());
    }
  }
}

void BM_MaxPool(benchmark::State& state) {
  const bool now = state.range(0) == 1;
  kiln::set_num_threads(static_cast<int>(state.range(1)));
  kiln::Tensor x = kiln::random_normal({kN, kH, kW, kC}, 0.0, 1.0, 1);
  kiln::Tensor y = kiln::zeros({kN, kH / 2, kW / 2, kC});
  for (auto _ : state) {
    if (now) {
      kiln::Tensor out = kiln::run_op(kiln::ops::kMaxPool2D, {x}, kPool2x2);
      benchmark::DoNotOptimize(out.raw_data());
    } else {
      max_pool_before(x.data<float>(), y.data<float>(), kN, kH, kW, kC);
      benchmark::DoNotOptimize(y.raw_data());
    }
  }
}

// relu_grad(max_pool2d_grad(y, dp), y) over a relu output y (half zeros), as the traced cnn
// step ran it before the pool-gradient fusion and as the fused op it runs now.
void BM_PoolGradRelu(benchmark::State& state) {
  const bool fused = state.range(0) == 1;
  kiln::set_num_threads(static_cast<int>(state.range(1)));
  kiln::Tensor y = kiln::relu(kiln::random_normal({kN, kH, kW, kC}, 0.0, 1.0, 1));
  kiln::Tensor dp = kiln::random_normal({kN, kH / 2, kW / 2, kC}, 0.0, 1.0, 2);
  const kiln::Attrs fused_attrs =
      kiln::Attrs(kPool2x2).add_int(kiln::fe_opcode(kiln::ops::kReluGrad));
  for (auto _ : state) {
    kiln::Tensor out =
        fused ? kiln::run_op(kiln::ops::kFusedMaxPool2DGrad, {y, dp}, fused_attrs)
              : kiln::run_op(kiln::ops::kReluGrad,
                             {kiln::run_op(kiln::ops::kMaxPool2DGrad, {y, dp}, kPool2x2), y});
    benchmark::DoNotOptimize(out.raw_data());
  }
}

// ---- the Adam update alone: one op per variable against adam_update_multi ------------------

void BM_AdamUpdate(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, foreach = state.range(1) == 1;
  kiln::set_num_threads(2);
  auto model = cnn ? kiln::make_cnn() : kiln::make_mlp();
  std::vector<kiln::Variable> vars = model->trainable_weights();
  std::vector<kiln::Tensor> grads;
  for (const kiln::Variable& v : vars) grads.push_back(kiln::random_normal(v.shape(), 0, 1e-3, 7));
  kiln::Adam opt(1e-3);
  opt.set_foreach(foreach);
  for (auto _ : state) opt.apply_gradients(vars, grads);
}

// ---- a graph-mode train step with and without multi-tensor updates ---------------------------

void BM_TrainStepForeach(benchmark::State& state) {
  const bool cnn = state.range(0) == 1, foreach = state.range(1) == 1;
  kiln::set_num_threads(2);
  kiln_bench::TrainStep step(cnn, foreach);
  kiln::Function f = step.traced();
  std::vector<kiln::Tensor> in = kiln_bench::train_batch();
  f(in, true);
  for (auto _ : state) {
    std::vector<kiln::Tensor> out = f(in, true);
    benchmark::DoNotOptimize(out[0].raw_data());
  }
}

void BM_ConvPool(benchmark::State& state) {
  using kiln::Attrs;
  namespace ops = kiln::ops;
  const bool fused = state.range(0) == 1, backward = state.range(1) == 1;
  kiln::set_num_threads(2);
  kiln::Tensor x = kiln::random_normal({64, 28, 28, 1}, 0.0, 1.0, 1);
  kiln::Tensor f = kiln::random_normal({3, 3, 1, 32}, 0.0, 0.3, 2);
  kiln::Tensor b = kiln::random_normal({32}, 0.0, 0.1, 3);
  const Attrs conv{1, 1, 1, 1, 1, 1};  // strides 1, same, dilation 1, groups 1
  const Attrs fconv = Attrs(conv).add_int(1).add_int(kiln::kActRelu).add_int(0).add_float(0.0);
  Attrs cp = conv;
  for (int64_t v : kPool2x2.ints()) cp.add_int(v);
  const Attrs cpg = Attrs(cp).add_int(3).add_int(3);
  const Attrs pool_relu = Attrs(kPool2x2).add_int(kiln::fe_opcode(ops::kReluGrad));
  const Attrs filter_grad = Attrs(conv).add_int(3).add_int(3).add_int(1).add_int(32);
  kiln::Tensor z = kiln::run_op(ops::kFusedConv2D, {x, f, b}, fconv);
  kiln::Tensor outs[2];
  const kiln::Tensor in[3] = {x, f, b};
  kiln::run_op(ops::kFusedConv2DPool, in, cp, outs);
  kiln::Tensor dp = kiln::random_normal(outs[0].shape(), 0.0, 1.0, 4);
  for (auto _ : state) {
    if (!backward && !fused) {
      benchmark::DoNotOptimize(kiln::run_op(ops::kMaxPool2D,
                                            {kiln::run_op(ops::kFusedConv2D, {x, f, b}, fconv)},
                                            kPool2x2)
                                   .raw_data());
    } else if (!backward) {
      kiln::Tensor y[2];
      kiln::run_op(ops::kFusedConv2DPool, in, cp, y);
      benchmark::DoNotOptimize(y[0].raw_data());
    } else if (!fused) {
      kiln::Tensor dz = kiln::run_op(ops::kFusedMaxPool2DGrad, {z, dp}, pool_relu);
      benchmark::DoNotOptimize(kiln::run_op(ops::kSumToLike, {dz, b}).raw_data());
      benchmark::DoNotOptimize(
          kiln::run_op(ops::kConv2DBackwardFilter, {x, dz}, filter_grad).raw_data());
    } else {
      kiln::Tensor d[2];
      const kiln::Tensor gin[4] = {x, outs[1], outs[0], dp};
      kiln::run_op(ops::kFusedConv2DPoolGrad, gin, cpg, d);
      benchmark::DoNotOptimize(d[0].raw_data());
    }
  }
}

}  // namespace

#define KILN_AB(fn)                                  \
  BENCHMARK(fn)                                      \
      ->UseRealTime()                                \
      ->ComputeStatistics("min", kiln_bench::min_of) \
      ->ComputeStatistics("max", kiln_bench::max_of) \
      ->Unit(benchmark::kMicrosecond)

KILN_AB(BM_MaxPoolGrad)->ArgsProduct({{0, 1}, {1, 2}})->ArgNames({"new", "threads"});
KILN_AB(BM_MaxPool)->ArgsProduct({{0, 1}, {1, 2}})->ArgNames({"new", "threads"});
KILN_AB(BM_PoolGradRelu)->ArgsProduct({{0, 1}, {1, 2}})->ArgNames({"fused", "threads"});
KILN_AB(BM_ConvPool)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"fused", "pass"});
KILN_AB(BM_AdamUpdate)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"cnn", "foreach"});
KILN_AB(BM_TrainStepForeach)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"cnn", "foreach"});

BENCHMARK_MAIN();
