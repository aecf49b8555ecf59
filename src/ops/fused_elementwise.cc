// fused_elementwise: a chain of unary and binary elementwise ops run as one pass over the data
// (the program format is in ops/fused.h). Emitted by graph/fusion.cc. Its gradient replays the
// program with the unfused ops and runs their rules backwards.
#include <cmath>
#include <string>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/fast_math.h"
#include "kiln/ops.h"
#include "ops/fused.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr int kMaxRegs = 16 + kFusedMaxInstructions;

struct Instr {
  int64_t op, a, b;
};
Instr decode(int64_t v) { return {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff}; }

// The reference semantics of one instruction, in double (the unfused reference kernels of
// these ops compute in T or double; float32 results agree to rounding).
template <typename T>
T apply(int64_t op, T x, T y) {
  const double d = x;
  switch (op) {
    case kFeNeg:
      return -x;
    case kFeExp:
      return static_cast<T>(std::exp(d));
    case kFeLog:
      return static_cast<T>(std::log(d));
    case kFeSqrt:
      return static_cast<T>(std::sqrt(d));
    case kFeAbs:
      return std::abs(x);
    case kFeSquare:
      return x * x;
    case kFeRelu:
      return x < T(0) ? T(0) : x;
    case kFeSigmoid:
      return static_cast<T>(d >= 0 ? 1 / (1 + std::exp(-d)) : std::exp(d) / (1 + std::exp(d)));
    case kFeTanh:
      return static_cast<T>(std::tanh(d));
    case kFeAdd:
      return x + y;
    case kFeSub:
      return x - y;
    case kFeMul:
      return x * y;
    case kFeDiv:
      return x / y;
    case kFeMaximum:
      return x >= y || x != x ? x : y;
    case kFeMinimum:
      return x <= y || x != x ? x : y;
  }
  return x;
}

void fe_infer(std::span<const Meta> in, const Attrs& a, std::span<Meta> out) {
  const char* op = "fused_elementwise";
  const int k = static_cast<int>(in.size());
  const int64_t n = a.num_ints() ? a.i(0) : 0;
  if (n < 1 || n > kFusedMaxInstructions || a.num_ints() != n + 1) {
    throw ValueError(std::string(op) + ": the program must hold 1 to 39 instructions");
  }
  // The output's shape: the largest input (ties: the highest rank); others are one element.
  int big = 0;
  for (int i = 1; i < k; ++i) {
    const Shape& s = in[i].shape;
    if (s.numel() > in[big].shape.numel() ||
        (s.numel() == in[big].shape.numel() && s.rank() > in[big].shape.rank())) {
      big = i;
    }
  }
  for (int i = 0; i < k; ++i) {
    require_same_dtype(op, in[big].dtype, in[i].dtype);
    if (in[i].shape != in[big].shape && in[i].shape.numel() != 1 &&
        !fe_is_row(in[i].shape, in[big].shape)) {
      throw ShapeError(std::string(op) + ": shapes " + shapes_str(in) +
                       ": every input must have the output's shape, one element, or be a row "
                       "over its last dim");
    }
  }
  require_floating(op, in[big].dtype);
  for (int64_t j = 0; j < n; ++j) {
    const Instr ins = decode(a.i(j + 1));
    const int64_t regs = k + j;  // registers defined before this instruction
    if (ins.op < kFeNeg || ins.op > kFeLast || ins.a >= regs ||
        (fe_is_binary(ins.op) && ins.b >= regs)) {
      throw ValueError(std::string(op) + ": instruction " + std::to_string(j) + " is invalid");
    }
  }
  out[0] = in[big];
}

void fe_reference(const KernelArgs& kargs) {
  const int k = static_cast<int>(kargs.in.size());
  const int64_t n = kargs.attrs.i(0), numel = kargs.out[0].numel();
  detail::visit_floating(kargs.out[0].dtype(), [&]<typename T>() {
    const T* src[16];
    int64_t period[16];  // element e of input i is src[i][e % period[i]]
    for (int i = 0; i < k; ++i) {
      src[i] = detail::ptr<T>(kargs.in[i]);
      period[i] = std::max<int64_t>(kargs.in[i].numel(), 1);
    }
    T* y = detail::ptr<T>(kargs.out[0]);
    T r[kMaxRegs];
    for (int64_t e = 0; e < numel; ++e) {
      for (int i = 0; i < k; ++i) r[i] = src[i][e % period[i]];
      for (int64_t j = 0; j < n; ++j) {
        const Instr ins = decode(kargs.attrs.i(j + 1));
        r[k + j] = apply<T>(ins.op, r[ins.a], fe_is_binary(ins.op) ? r[ins.b] : T(0));
      }
      y[e] = r[k + n - 1];
    }
  });
}

// float32: blocks of kBlock elements, each instruction a loop over the block (vectorizable),
// with the vectorized exp/tanh of kernels/fast_math.h.
constexpr int64_t kBlock = 64;

void fe_block(int64_t op, const float* x, const float* y, float* r, int64_t len) {
  switch (op) {
    case kFeNeg:
      for (int64_t e = 0; e < len; ++e) r[e] = -x[e];
      return;
    case kFeExp:
      for (int64_t e = 0; e < len; ++e) r[e] = kernels::exp_f32(x[e]);
      return;
    case kFeLog:
      for (int64_t e = 0; e < len; ++e) r[e] = std::log(x[e]);
      return;
    case kFeSqrt:
      for (int64_t e = 0; e < len; ++e) r[e] = std::sqrt(x[e]);
      return;
    case kFeAbs:
      for (int64_t e = 0; e < len; ++e) r[e] = std::fabs(x[e]);
      return;
    case kFeSquare:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] * x[e];
      return;
    case kFeRelu:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] < 0.f ? 0.f : x[e];
      return;
    case kFeSigmoid:
      for (int64_t e = 0; e < len; ++e) r[e] = 1.f / (1.f + kernels::exp_f32(-x[e]));
      return;
    case kFeTanh:
      for (int64_t e = 0; e < len; ++e) r[e] = kernels::tanh_f32(x[e]);
      return;
    case kFeAdd:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] + y[e];
      return;
    case kFeSub:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] - y[e];
      return;
    case kFeMul:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] * y[e];
      return;
    case kFeDiv:
      for (int64_t e = 0; e < len; ++e) r[e] = x[e] / y[e];
      return;
    default:  // maximum, minimum: NaN-propagating like the unfused ops
      for (int64_t e = 0; e < len; ++e) r[e] = apply<float>(op, x[e], y[e]);
      return;
  }
}

bool fe_fast(const KernelArgs& kargs) {
  if (kargs.out[0].dtype() != DType::kFloat32) return false;
  const int k = static_cast<int>(kargs.in.size());
  const int64_t n = kargs.attrs.i(0), numel = kargs.out[0].numel();
  alignas(64) float regs[kMaxRegs][kBlock];
  const float* src[16];
  int64_t period[16];  // as in the reference: numel for full inputs, 1 scalars, C rows
  for (int i = 0; i < k; ++i) {
    src[i] = detail::ptr<float>(kargs.in[i]);
    period[i] = std::max<int64_t>(kargs.in[i].numel(), 1);
    if (period[i] == 1) std::fill(regs[i], regs[i] + kBlock, src[i][0]);
  }
  Instr prog[kFusedMaxInstructions];
  for (int64_t j = 0; j < n; ++j) prog[j] = decode(kargs.attrs.i(j + 1));
  float* y = detail::ptr<float>(kargs.out[0]);
  for (int64_t base = 0; base < numel; base += kBlock) {
    const int64_t len = std::min(kBlock, numel - base);
    const float* reg[kMaxRegs];
    for (int i = 0; i < k; ++i) {
      const int64_t at = base % period[i];
      if (period[i] == 1) {
        reg[i] = regs[i];
      } else if (at + len <= period[i]) {  // full inputs, and rows the block does not wrap
        reg[i] = src[i] + at;
      } else {  // a row wrapping inside the block: gather it
        for (int64_t e = 0, j = at; e < len; ++e, j = j + 1 == period[i] ? 0 : j + 1) {
          regs[i][e] = src[i][j];
        }
        reg[i] = regs[i];
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      // The last instruction writes the output directly.
      float* r = j + 1 == n ? y + base : regs[k + j];
      fe_block(prog[j].op, reg[prog[j].a], fe_is_binary(prog[j].op) ? reg[prog[j].b] : nullptr, r,
               len);
      reg[k + j] = r;
    }
  }
  return true;
}

// ---- gradient: the program replayed with the unfused ops, then their rules in reverse ------

const OpDef& op_of(int64_t opcode) {
  static const OpDef* const kOps[] = {nullptr,        &ops::kNeg,  &ops::kExp,     &ops::kLog,
                                      &ops::kSqrt,    &ops::kAbs,  &ops::kSquare,  &ops::kRelu,
                                      &ops::kSigmoid, &ops::kTanh, &ops::kAdd,     &ops::kSub,
                                      &ops::kMul,     &ops::kDiv,  &ops::kMaximum, &ops::kMinimum};
  return *kOps[opcode];
}

void fe_grad(const GradArgs& g) {
  const int k = static_cast<int>(g.in.size());
  const int64_t n = g.attrs.i(0);
  std::vector<Tensor> r(g.in.begin(), g.in.end());
  for (int64_t j = 0; j + 1 < n; ++j) {  // the last register is the op's output
    const Instr ins = decode(g.attrs.i(j + 1));
    r.push_back(fe_is_binary(ins.op) ? run_op(op_of(ins.op), {r[ins.a], r[ins.b]})
                                     : run_op(op_of(ins.op), {r[ins.a]}));
  }
  r.push_back(g.out[0]);
  std::vector<Tensor> dr(r.size());
  dr.back() = g.grad_out[0];
  const Attrs none;
  for (int64_t j = n; j-- > 0;) {
    const Instr ins = decode(g.attrs.i(j + 1));
    const Tensor& dy = dr[k + j];
    if (!dy.defined()) continue;  // nothing downstream depends on this register
    const bool bin = fe_is_binary(ins.op);
    Tensor in[2] = {r[ins.a], bin ? r[ins.b] : Tensor()};
    Tensor din[2];
    op_of(ins.op).grad({{in, bin ? 2u : 1u}, {&r[k + j], 1}, {&dy, 1}, none, {din, bin ? 2u : 1u}});
    const int64_t src[2] = {ins.a, ins.b};
    for (int s = 0; s < (bin ? 2 : 1); ++s) {
      if (!din[s].defined()) continue;
      Tensor& acc = dr[src[s]];
      acc = acc.defined() ? add(acc, din[s]) : din[s];
    }
  }
  for (int i = 0; i < k; ++i) {
    if (g.needs(i)) g.grad_in[i] = dr[i];
  }
}

// {n, instructions...}: the program as packed integers (ops/fused.h).
constexpr AttrField kFusedElementwiseFields[] = {{"instructions", AttrType::kInt},
                                                 {"program", AttrType::kInt, kRest}};
constexpr AttrSchema kFusedElementwiseAttrs{kFusedElementwiseFields};

}  // namespace

namespace ops {
const OpDef kFusedElementwise{.name = "fused_elementwise",
                              .num_inputs = -1,
                              .num_outputs = 1,
                              .infer = fe_infer,
                              .reference = fe_reference,
                              .fast = fe_fast,
                              .grad = fe_grad,
                              .attrs = &kFusedElementwiseAttrs};
}  // namespace ops

}  // namespace kiln
