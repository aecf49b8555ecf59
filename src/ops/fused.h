// Codes shared by the fused ops (src/ops/fused.cc, fused_elementwise.cc) and the fusion pass
// that emits them (src/graph/fusion.cc). The ops themselves are in ops/registry.h.
#pragma once

#include <cstdint>

#include "kiln/shape.h"

namespace kiln {

struct OpDef;
struct Meta;
class Attrs;

// Activation of fused_matmul / fused_conv2d (attr `act`): codes into one table in fused.cc of
// the unfused activation ops, which the fusion pass and the fused ops' kernels and gradients
// all read.
enum FusedAct : int64_t {
  kActNone = 0,
  kActRelu = 1,
  kActLeakyRelu = 2,  // alpha: the op's float attr 0
  kActTanh = 3,
  kActSigmoid = 4,
  kActGelu = 5,  // approximate: the op's act_int attr
  kActCount,
};
// The activation op of `act` (null for kActNone or a code out of range).
const OpDef* fused_act_op(int64_t act);
// The code of activation op `op`, or kActNone when fused ops cannot take it.
int64_t fused_act_code(const OpDef* op);

// fused_elementwise: attrs = {n, instr_1 .. instr_n}. Registers 0..k-1 are the op's k inputs
// (each the output's shape, one element broadcast, or a row: [..1, C] broadcast over the
// output's last dim C, like a bias); instruction j writes register k+j-1 and the last one is
// the output. An instruction packs opcode | a << 16 | b << 24 (b unused by unary ops); the
// opcode is the op's index in the registry (ops::all_ops()), and every op carrying an
// OpDef::elementwise function can be one. At most 39 instructions (Attrs holds 40 ints).
inline constexpr int kFusedMaxInstructions = 39;
inline constexpr int64_t kFeOpcodeLimit = int64_t{1} << 16;

inline int64_t fe_instr(int64_t opcode, int64_t a, int64_t b) {
  return opcode | (a << 16) | (b << 24);
}
// The opcode of `op` in fused_elementwise programs, or -1 if the op is not fusable (it has no
// OpDef::elementwise or is not registered).
int64_t fe_opcode(const OpDef& op);
// The fusable op of `opcode`, or nullptr.
const OpDef* fe_op(int64_t opcode);

// Whether `s` broadcasts to `out` as a row over out's last dim: [C], [1, C], ... of rank at
// most out's, with C = out's last dim.
inline bool fe_is_row(const Shape& s, const Shape& out) {
  if (s.rank() < 1 || out.rank() < 1 || s.rank() > out.rank()) return false;
  if (s[s.rank() - 1] != out[out.rank() - 1]) return false;
  for (int d = 0; d + 1 < s.rank(); ++d) {
    if (s[d] != 1) return false;
  }
  return true;
}

// Whether fused_conv2d_pool's fast kernel takes a conv of input x and `filter` (conv attrs as
// conv2d's): float32, groups 1, kh * kw * channels <= 32. graph/fusion.cc fuses only those, so
// the fused op never falls back to its reference kernel in a plan.
bool conv_pool_direct(const Meta& x, const Meta& filter, const Attrs& conv_attrs);

}  // namespace kiln
