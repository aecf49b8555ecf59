// OpDef: the one description of an op. Eager execution, tapes and tracing all go through it:
//
//   infer      input metas + attrs -> output metas; throws ShapeError / DTypeError
//   reference  plain loops for every dtype the op takes; the truth in tests
//   fast       optional (oneDNN or vectorized); returns false when it does not handle the case
//   grad       the gradient rule, written with kiln ops so tapes and traces can record it
//   view       optional: makes the output share the input's storage (reshape, rows); eager
//              mode runs it instead of a kernel, tapes and tracers still see the op
//   flags      what graph passes and tapes must know (kNotDifferentiable, kStateful, kRandom,
//              kLinearInInput0)
//   attrs      the schema of its attributes: names and types, for printing, saving, export
//   shape_only_inputs  inputs read for their shape only (gradient ops' "like" inputs)
//   elementwise  optional: the op's per-element function (ElementwiseFn below), which makes it
//              fusable: graph/fusion.cc fuses exactly the ops that carry one
//
// An op without a gradient rule either says so (kNotDifferentiable: stop_gradient) or has no
// floating output (comparisons, argmax); a tape that reaches any other rule-less op with a
// gradient throws instead of dropping it.
//
// Ops are static objects declared in src/ops/registry.h and listed in registry.cc.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/shape.h"
#include "kiln/tensor.h"

namespace kiln {

// An op's non-tensor arguments: up to kMaxInts integers and kMaxFloats doubles by position
// (each op documents its layout). Fixed size: no allocation; comparable and hashable, so a
// traced graph and kernel caches can key on it.
class Attrs {
 public:
  static constexpr int kMaxInts = 40;
  static constexpr int kMaxFloats = 4;

  Attrs() = default;
  Attrs(std::initializer_list<int64_t> ints) {
    for (int64_t v : ints) add_int(v);
  }

  Attrs& add_int(int64_t v);  // throws ValueError when full
  Attrs& add_float(double v);
  int64_t i(int k) const { return ints_[k]; }
  double f(int k) const { return floats_[k]; }
  int num_ints() const { return n_ints_; }
  int num_floats() const { return n_floats_; }
  std::span<const int64_t> ints() const { return {ints_, static_cast<size_t>(n_ints_)}; }
  std::span<const double> floats() const { return {floats_, static_cast<size_t>(n_floats_)}; }

  bool operator==(const Attrs& o) const;
  uint64_t hash() const;

 private:
  int64_t ints_[kMaxInts] = {};
  double floats_[kMaxFloats] = {};
  int n_ints_ = 0;
  int n_floats_ = 0;
};

// What infer sees of a tensor.
struct Meta {
  Shape shape;
  DType dtype = DType::kFloat32;
};

struct KernelArgs {
  std::span<const Tensor> in;
  std::span<Tensor> out;  // allocated from infer's metas before the kernel runs
  const Attrs& attrs;
};

struct GradArgs {
  std::span<const Tensor> in;
  std::span<const Tensor> out;
  std::span<const Tensor> grad_out;  // one per output, never undefined
  const Attrs& attrs;
  std::span<Tensor> grad_in;  // to fill; leave undefined for inputs without a gradient
  uint32_t needed = ~0u;      // bit k: someone wants input k's gradient; rules may skip others
  bool needs(int k) const { return (needed >> k) & 1u; }
};

using InferFn = void (*)(std::span<const Meta> in, const Attrs& attrs, std::span<Meta> out);
using KernelFn = void (*)(const KernelArgs& args);
using FastKernelFn = bool (*)(const KernelArgs& args);
using GradFn = void (*)(const GradArgs& args);
// Returns a view of in[0] with shape out.shape, or an undefined Tensor to fall back to a kernel.
using ViewFn = Tensor (*)(const Tensor& in, const Attrs& attrs, const Meta& out);
// Floating-point operations of one call (2 per multiply-add), for summaries and profiles.
using FlopsFn = int64_t (*)(std::span<const Meta> in, const Attrs& attrs,
                            std::span<const Meta> out);

// OpDef::flags bits. Whether an op is a view is not a flag: it is `view != nullptr`
// (is_view below), so the two can never disagree.
enum OpFlag : uint32_t {
  kNotDifferentiable = 1u << 0,  // constant to tapes on purpose (stop_gradient)
  kStateful = 1u << 1,           // writes its first input in place: never removed, merged, folded
  kRandom = 1u << 2,             // draws random numbers (from a key input or a generator state)
  // Linear in input 0, so f(0, y) = 0 (activation gradients: relu_grad(g, y)): a fused kernel
  // may apply the op only where input 0 is nonzero (fused_max_pool2d_grad).
  kLinearInInput0 = 1u << 3,
};

// ---- attribute schemas ---------------------------------------------------------------------
//
// An op's schema names its positional Attrs: fields take integers in order from attrs.ints()
// (every type but kFloat) or doubles in order from attrs.floats (kFloat). At most one field,
// the last integer one, may take "the rest" of the integers (count = kRest). Schemas are static
// constexpr arrays beside each OpDef; nothing is allocated and Attrs stay as they are.
enum class AttrType : uint8_t {
  kInt,    // integers, printed as numbers (axis, groups, depth, begin)
  kBool,   // 0 or 1, printed false/true (keepdims, transpose_a)
  kDType,  // a DType code, printed by name (cast's target)
  kEnum,   // 0..n-1 naming one of `choices` (padding: "valid|same")
  kShape,  // dims, each >= 0, printed as [2, 3]
  kFloat,  // one double (rate, alpha, pad value)
};

inline constexpr int kRest = -1;  // AttrField::count: every integer not taken by other fields

struct AttrField {
  const char* name;
  AttrType type;
  int count = 1;                  // integers taken (kRest: the rest); printed as a list unless 1
  const char* choices = nullptr;  // kEnum: the value names separated by '|'
  int group = 1;  // a kRest field's length must be a multiple of this (slice's triples)
};

struct AttrSchema {
  std::span<const AttrField> fields;
};

// The schema of ops without attributes.
extern const AttrSchema kNoAttrs;

// The per-element function of an elementwise op without attributes whose output has its
// inputs' floating dtype: loops generated from the op's own functor (ops/elementwise_fn.h), so
// fused_elementwise runs the same math as the op's kernels. Each maps n elements,
// out[i] = f(x[i]) or f(x[i], y[i]) (y unused, may be null, when arity is 1); out may be x or y.
struct ElementwiseFn {
  int arity;                                                           // 1 or 2
  void (*f32)(const float* x, const float* y, float* out, int64_t n);  // the functor's math
  void (*f64)(const double* x, const double* y, double* out, int64_t n);
  // float32 with the functor's vectorizable form (its `fast`) where it has one, else as f32.
  void (*fast_f32)(const float* x, const float* y, float* out, int64_t n);
};

struct OpDef {
  const char* name;
  int num_inputs;  // -1: variadic (at least one)
  int num_outputs;
  InferFn infer;
  KernelFn reference;
  FastKernelFn fast = nullptr;
  GradFn grad = nullptr;  // null: see "An op without a gradient rule" above
  ViewFn view = nullptr;
  uint32_t flags = 0;
  // Names and types of the attrs (kNoAttrs when none). Null only for an op not yet described;
  // the registry test fails for it, and format_attrs prints its attrs by position.
  const AttrSchema* attrs = nullptr;
  // Bit k: input k gives only its shape (gradient ops' "like" inputs); no kernel reads its data,
  // so a memory planner need not keep its buffer alive for this op.
  uint32_t shape_only_inputs = 0;
  // Null: the op's count is in the table beside the registry (src/ops/flops.cc: 1 per output
  // element for elementwise ops, 0 for data movement, per-element rules for reductions,
  // pooling and updates). Every registered op has one or the other (tests/ops/flops_test.cc).
  FlopsFn flops = nullptr;
  // Non-null: the op is elementwise and fusable (ElementwiseFn above).
  const ElementwiseFn* elementwise = nullptr;
};

// Floating-point operations of one call: op.flops(...) when the op has a rule, else its entry
// in src/ops/flops.cc. An op in neither (one not registered) counts its output elements.
int64_t op_flops(const OpDef& op, std::span<const Meta> in, const Attrs& attrs,
                 std::span<const Meta> out);
// Whether op_flops knows `op` (a rule on the OpDef or an entry in the table).
bool has_flops_rule(const OpDef& op);

// Passes must neither remove, merge, fold nor reorder a stateful op.
inline bool is_stateful(const OpDef& op) { return (op.flags & kStateful) != 0; }
// A random op's draws change from call to call: never constant-folded or merged.
inline bool is_random(const OpDef& op) { return (op.flags & kRandom) != 0; }
// Its output may share its input's storage (eager mode); a pass writing in place must not.
inline bool is_view(const OpDef& op) { return op.view != nullptr; }
// Whether op reads input k for its shape only (OpDef::shape_only_inputs).
inline bool reads_shape_only(const OpDef& op, int k) { return (op.shape_only_inputs >> k) & 1u; }

// `attrs` by name: "strides=[1, 1], padding=same, dilation=[1, 1], groups=1"; "" when there
// are none. Attrs that do not fit the schema (or an op without one) print by position,
// "1, 2, 0.5", so printing a graph never throws.
std::string format_attrs(const OpDef& op, const Attrs& attrs);

// Throws ValueError "<op>: attrs {..} do not fit its schema (...): <what is wrong>" unless
// `attrs` fits op's schema: the integer and float counts, bools 0/1, known dtype codes, enum
// values in range, dims >= 0, list lengths a multiple of their group. Throws StateError for an
// op without a schema.
void check_attrs(const OpDef& op, const Attrs& attrs);

// While alive, run_op checks every op's attrs on this thread (check_attrs) before running or
// tracing it, and appends the op to `seen` if given. Tests run whole op suites under it.
// enabled = false turns checking off inside an enclosing scope (for tests of an op's own
// handling of malformed attrs); scopes nest and restore the previous state.
class CheckAttrsScope {
 public:
  explicit CheckAttrsScope(std::vector<const OpDef*>* seen = nullptr, bool enabled = true);
  ~CheckAttrsScope();
  CheckAttrsScope(const CheckAttrsScope&) = delete;
  CheckAttrsScope& operator=(const CheckAttrsScope&) = delete;

 private:
  bool saved_on_;
  std::vector<const OpDef*>* saved_seen_;
};

// ---- the dispatcher (src/ops/dispatch.cc) -------------------------------------------------

// Runs `op` on `inputs`: infers output metas, then either traces it (inside kiln::function)
// or allocates outputs, runs the fast kernel (else the reference) and records on the tape.
// Writes op.num_outputs tensors to `outputs`.
void run_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
            std::span<Tensor> outputs);

// Single-output shorthand.
Tensor run_op(const OpDef& op, std::initializer_list<Tensor> inputs, const Attrs& attrs = {});

// Throws DTypeError "<op>: expected a floating dtype, got int32" unless `t` is float32/64.
void require_floating(const char* op, DType t);
// Throws DTypeError naming op and both dtypes unless equal.
void require_same_dtype(const char* op, DType a, DType b);
// "[2, 3] and [4]" style list of input shapes for error messages.
std::string shapes_str(std::span<const Meta> in);

// Which kernel ops on this thread used (tests assert the fast path ran): the first op run
// since reset_kernel_stats(), and how many ran.
enum class KernelPath { kNone, kFast, kReference, kView };
struct KernelStats {
  uint64_t ops_run = 0;
  const OpDef* first_op = nullptr;
  KernelPath first_path = KernelPath::kNone;
};
KernelStats kernel_stats();
void reset_kernel_stats();

// Runs only the reference kernel (tests compare fast against it).
class ForceReferenceScope {
 public:
  ForceReferenceScope();
  ~ForceReferenceScope();

 private:
  bool saved_;
};

}  // namespace kiln
