// The dispatcher: one path for every op. Cost on the eager hot path is a few thread-local loads,
// one infer call, one allocation from the size-class cache and the kernel.
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor_impl.h"
#include "kiln/error.h"
#include "ops/op_def.h"

namespace kiln {
namespace detail {
ThreadContext& thread_context() {
  thread_local ThreadContext ctx;
  return ctx;
}
}  // namespace detail

Attrs& Attrs::add_int(int64_t v) {
  if (n_ints_ >= kMaxInts) throw ValueError("attrs: more than 40 integer attributes");
  ints_[n_ints_++] = v;
  return *this;
}

Attrs& Attrs::add_float(double v) {
  if (n_floats_ >= kMaxFloats) throw ValueError("attrs: more than 4 float attributes");
  floats_[n_floats_++] = v;
  return *this;
}

bool Attrs::operator==(const Attrs& o) const {
  return n_ints_ == o.n_ints_ && n_floats_ == o.n_floats_ &&
         std::memcmp(ints_, o.ints_, n_ints_ * sizeof(int64_t)) == 0 &&
         std::memcmp(floats_, o.floats_, n_floats_ * sizeof(double)) == 0;
}

uint64_t Attrs::hash() const {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(n_ints_);
  for (int k = 0; k < n_ints_; ++k) mix(static_cast<uint64_t>(ints_[k]));
  for (int k = 0; k < n_floats_; ++k) {
    uint64_t bits;
    std::memcpy(&bits, &floats_[k], 8);
    mix(bits);
  }
  return h;
}

void require_floating(const char* op, DType t) {
  if (!is_floating(t)) {
    throw DTypeError(std::string(op) + ": expected a floating dtype (float32 or float64), got " +
                     std::string(dtype_name(t)));
  }
}

void require_same_dtype(const char* op, DType a, DType b) {
  if (a != b) {
    throw DTypeError(std::string(op) + ": dtypes " + std::string(dtype_name(a)) + " and " +
                     std::string(dtype_name(b)) + " differ");
  }
}

std::string shapes_str(std::span<const Meta> in) {
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i) s += i + 1 == in.size() ? " and " : ", ";
    s += to_string(in[i].shape);
  }
  return s;
}

KernelStats kernel_stats() {
  const detail::ThreadContext& ctx = detail::thread_context();
  return {ctx.ops_run, ctx.first_op, static_cast<KernelPath>(ctx.first_path)};
}
void reset_kernel_stats() {
  detail::ThreadContext& ctx = detail::thread_context();
  ctx.ops_run = 0;
  ctx.first_op = nullptr;
  ctx.first_path = 0;
}

namespace {
// CheckAttrsScope's state: off unless a test (or someone debugging an op) turns it on.
thread_local bool t_check_attrs = false;
thread_local std::vector<const OpDef*>* t_seen_ops = nullptr;
}  // namespace

CheckAttrsScope::CheckAttrsScope(std::vector<const OpDef*>* seen, bool enabled)
    : saved_on_(t_check_attrs), saved_seen_(t_seen_ops) {
  t_check_attrs = enabled;
  t_seen_ops = enabled ? seen : nullptr;
}
CheckAttrsScope::~CheckAttrsScope() {
  t_check_attrs = saved_on_;
  t_seen_ops = saved_seen_;
}

ForceReferenceScope::ForceReferenceScope() : saved_(detail::thread_context().force_reference) {
  detail::thread_context().force_reference = true;
}
ForceReferenceScope::~ForceReferenceScope() { detail::thread_context().force_reference = saved_; }

void run_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
            std::span<Tensor> outputs) {
  constexpr int kMaxIO = 16;  // tapes keep per-node slot arrays of this size
  const int n_in = static_cast<int>(inputs.size());
  if ((op.num_inputs >= 0 && n_in != op.num_inputs) || n_in > kMaxIO ||
      (op.num_inputs < 0 && n_in == 0)) {
    throw ValueError(std::string(op.name) + ": got " + std::to_string(n_in) + " inputs");
  }
  // Metas for up to 3 inputs live on the stack (constructing 16 would zero 1 KiB per op).
  Meta small[3];
  std::vector<Meta> large;
  Meta* in_meta = small;
  if (n_in > 3) {
    large.resize(n_in);
    in_meta = large.data();
  }
  for (int k = 0; k < n_in; ++k) {
    const detail::TensorImpl* p = inputs[k].impl();
    if (!p) {
      throw ValueError(std::string(op.name) + ": input " + std::to_string(k) + " is undefined");
    }
    in_meta[k].shape = p->shape;
    in_meta[k].dtype = p->dtype;
  }
  if (t_check_attrs) {
    check_attrs(op, attrs);
    if (t_seen_ops) t_seen_ops->push_back(&op);
  }
  Meta out_meta[2];
  if (op.num_outputs > 2) throw StateError(std::string(op.name) + ": more than 2 outputs");
  std::span<Meta> outs(out_meta, op.num_outputs);
  op.infer({in_meta, static_cast<size_t>(n_in)}, attrs, outs);

  detail::ThreadContext& ctx = detail::thread_context();
  if (ctx.tracer) {  // tracing: outputs are symbolic (shape and dtype, no storage)
    for (int k = 0; k < op.num_outputs; ++k) {
      outputs[k] =
          Tensor::adopt(detail::impl_view(nullptr, 0, out_meta[k].shape, out_meta[k].dtype));
    }
    ctx.tracer->trace(op, inputs, attrs, outputs);
    // A tape inside a traced function records too: its gradient() then traces the backward
    // pass with the same rules as eager mode.
    if (ctx.tape) ctx.tape->record(op, inputs, attrs, outputs);
    return;
  }
  KernelPath path;
  if (op.view && !ctx.force_reference &&
      (outputs[0] = op.view(inputs[0], attrs, out_meta[0])).defined()) {
    path = KernelPath::kView;
  } else {
    for (int k = 0; k < op.num_outputs; ++k) {
      outputs[k] = Tensor::adopt(detail::impl_new(out_meta[k].shape, out_meta[k].dtype));
    }
    KernelArgs args{inputs, outputs, attrs};
    path = KernelPath::kFast;
    if (!op.fast || ctx.force_reference || !op.fast(args)) {
      op.reference(args);
      path = KernelPath::kReference;
    }
  }
  if (ctx.ops_run++ == 0) {
    ctx.first_op = &op;
    ctx.first_path = static_cast<uint8_t>(path);
  }
  if (ctx.tape) ctx.tape->record(op, inputs, attrs, outputs);
}

Tensor run_op(const OpDef& op, std::initializer_list<Tensor> inputs, const Attrs& attrs) {
  if (op.num_outputs != 1) {
    throw StateError(std::string(op.name) + ": has several outputs; use the span form of run_op");
  }
  Tensor out;
  run_op(op, std::span<const Tensor>(inputs.begin(), inputs.size()), attrs, {&out, 1});
  return out;
}

}  // namespace kiln
