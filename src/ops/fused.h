// Codes shared by the fused ops (src/ops/fused.cc, fused_elementwise.cc) and the fusion pass
// that emits them (src/graph/fusion.cc). The ops themselves are in ops/registry.h.
#pragma once

#include <cstdint>

#include "kiln/shape.h"

namespace kiln {

// Activation of fused_matmul / fused_conv2d (attr `act`).
enum FusedAct : int64_t {
  kActNone = 0,
  kActRelu = 1,
  kActLeakyRelu = 2,  // alpha: the op's float attr 0
  kActTanh = 3,
  kActSigmoid = 4,
  kActGelu = 5,  // approximate: the op's act_int attr
};

// fused_elementwise: attrs = {n, instr_1 .. instr_n}. Registers 0..k-1 are the op's k inputs
// (each the output's shape, one element broadcast, or a row: [..1, C] broadcast over the
// output's last dim C, like a bias); instruction j writes register k+j-1 and
// the last one is the output. An instruction packs opcode | a << 8 | b << 16 (b unused by unary
// opcodes). At most 39 instructions (Attrs holds 40 ints).
enum FusedOpcode : int64_t {
  kFeNeg = 1,
  kFeExp,
  kFeLog,
  kFeSqrt,
  kFeAbs,
  kFeSquare,
  kFeRelu,
  kFeSigmoid,
  kFeTanh,
  kFeAdd,  // first binary opcode
  kFeSub,
  kFeMul,
  kFeDiv,
  kFeMaximum,
  kFeMinimum,
  kFeLast = kFeMinimum,
};
inline constexpr int kFusedMaxInstructions = 39;

inline int64_t fe_instr(int64_t opcode, int64_t a, int64_t b) {
  return opcode | (a << 8) | (b << 16);
}
inline bool fe_is_binary(int64_t opcode) { return opcode >= kFeAdd; }

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

}  // namespace kiln
