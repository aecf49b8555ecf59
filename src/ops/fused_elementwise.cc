// fused_elementwise: a chain of unary and binary elementwise ops run as one pass over the data
// (the program format is in ops/fused.h). Emitted by graph/fusion.cc. Each instruction runs its
// op's own per-element function (OpDef::elementwise), so nothing here restates an op's math and
// an op is fusable by its OpDef alone. Its gradient replays the program with the unfused ops
// and runs their rules backwards.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
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
Instr decode(int64_t v) { return {v & (kFeOpcodeLimit - 1), (v >> 16) & 0xff, (v >> 24) & 0xff}; }

// An instruction with its op's function resolved.
struct Step {
  const ElementwiseFn* fn;
  int64_t a, b;
};
// The program of validated attrs (fe_infer has checked every instruction).
int64_t load(const Attrs& attrs, Step* prog) {
  const int64_t n = attrs.i(0);
  for (int64_t j = 0; j < n; ++j) {
    const Instr ins = decode(attrs.i(j + 1));
    prog[j] = {fe_op(ins.op)->elementwise, ins.a, ins.b};
  }
  return n;
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
    const OpDef* fused = fe_op(ins.op);
    if (!fused || ins.a >= regs || (fused->elementwise->arity == 2 && ins.b >= regs)) {
      throw ValueError(std::string(op) + ": instruction " + std::to_string(j) + " is invalid");
    }
  }
  out[0] = in[big];
}

// One element at a time, each instruction its op's reference function in T.
void fe_reference(const KernelArgs& kargs) {
  const int k = static_cast<int>(kargs.in.size());
  const int64_t numel = kargs.out[0].numel();
  Step prog[kFusedMaxInstructions];
  const int64_t n = load(kargs.attrs, prog);
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
        const Step& s = prog[j];
        const T* b = s.fn->arity == 2 ? &r[s.b] : nullptr;
        if constexpr (std::is_same_v<T, float>) {
          s.fn->f32(&r[s.a], b, &r[k + j], 1);
        } else {
          s.fn->f64(&r[s.a], b, &r[k + j], 1);
        }
      }
      y[e] = r[k + n - 1];
    }
  });
}

// float32: blocks of kBlock elements, each instruction one call of its op's vectorizable loop
// (ElementwiseFn::fast_f32) over the block.
constexpr int64_t kBlock = 64;

bool fe_fast(const KernelArgs& kargs) {
  if (kargs.out[0].dtype() != DType::kFloat32) return false;
  const int k = static_cast<int>(kargs.in.size());
  const int64_t numel = kargs.out[0].numel();
  alignas(64) float regs[kMaxRegs][kBlock];
  const float* src[16];
  int64_t period[16];  // as in the reference: numel for full inputs, 1 scalars, C rows
  for (int i = 0; i < k; ++i) {
    src[i] = detail::ptr<float>(kargs.in[i]);
    period[i] = std::max<int64_t>(kargs.in[i].numel(), 1);
    if (period[i] == 1) std::fill(regs[i], regs[i] + kBlock, src[i][0]);
  }
  Step prog[kFusedMaxInstructions];
  const int64_t n = load(kargs.attrs, prog);
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
      const Step& s = prog[j];
      s.fn->fast_f32(reg[s.a], s.fn->arity == 2 ? reg[s.b] : nullptr, r, len);
      reg[k + j] = r;
    }
  }
  return true;
}

// ---- gradient: the program replayed with the unfused ops, then their rules in reverse ------

void fe_grad(const GradArgs& g) {
  const int k = static_cast<int>(g.in.size());
  const int64_t n = g.attrs.i(0);
  std::vector<Tensor> r(g.in.begin(), g.in.end());
  for (int64_t j = 0; j + 1 < n; ++j) {  // the last register is the op's output
    const Instr ins = decode(g.attrs.i(j + 1));
    const OpDef& op = *fe_op(ins.op);
    r.push_back(op.elementwise->arity == 2 ? run_op(op, {r[ins.a], r[ins.b]})
                                           : run_op(op, {r[ins.a]}));
  }
  r.push_back(g.out[0]);
  std::vector<Tensor> dr(r.size());
  dr.back() = g.grad_out[0];
  const Attrs none;
  for (int64_t j = n; j-- > 0;) {
    const Instr ins = decode(g.attrs.i(j + 1));
    const Tensor& dy = dr[k + j];
    if (!dy.defined()) continue;  // nothing downstream depends on this register
    const OpDef& op = *fe_op(ins.op);
    const bool bin = op.elementwise->arity == 2;
    Tensor in[2] = {r[ins.a], bin ? r[ins.b] : Tensor()};
    Tensor din[2];
    op.grad({{in, bin ? 2u : 1u}, {&r[k + j], 1}, {&dy, 1}, none, {din, bin ? 2u : 1u}});
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

int64_t fe_opcode(const OpDef& op) {
  if (!op.elementwise) return -1;
  const std::span<const OpDef* const> all = ops::all_ops();
  const auto it = std::find(all.begin(), all.end(), &op);
  return it == all.end() ? -1 : it - all.begin();
}

const OpDef* fe_op(int64_t opcode) {
  const std::span<const OpDef* const> all = ops::all_ops();
  if (opcode < 0 || opcode >= static_cast<int64_t>(all.size())) return nullptr;
  return all[opcode]->elementwise ? all[opcode] : nullptr;
}

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
