// GradientTape. A tape gives every tensor it tracks a slot; nodes refer to slots. A tape keeps
// a tensor's slot inside the tensor when no other tape has claimed it (no hashing on the hot
// path); otherwise, for nested tapes or tensors shared with a tape on another thread, in a map.
// Claims are atomic and released when the tape is done, so sharing variables between tapes on
// several threads is safe: a tape reads and writes only claims carrying its own id.
#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "core/tensor_impl.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {

using detail::TensorImpl;

namespace {
uint32_t next_tape_id() {
  static std::atomic<uint32_t> counter{0};
  uint32_t id;
  do id = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  while (id == 0);  // 0 means "unclaimed"
  return id;
}
uint64_t claim_of(uint32_t tape, int32_t slot) {
  return (uint64_t{tape} << 32) | static_cast<uint32_t>(slot);
}
}  // namespace

struct GradientTape::State : detail::TapeRecorder {
  struct Node {
    const OpDef* op;
    Attrs attrs;
    int32_t first;  // index into io: inputs, then outputs
    int16_t n_in, n_out;
  };

  uint32_t id = next_tape_id();
  bool persistent = false;
  bool used = false;
  bool recording = true;
  std::vector<Node> nodes;
  std::vector<Tensor> io;        // every node's inputs then outputs
  std::vector<int32_t> io_slot;  // their slots (-1: not tracked)
  int32_t num_slots = 0;
  std::vector<Tensor> slot_tensor;  // keeps tracked tensors alive (so impl pointers stay valid)
  std::unordered_map<const TensorImpl*, int32_t> other_slots;

  int32_t slot_of(const TensorImpl* p) const {
    uint64_t c = p->tape_claim.load(std::memory_order_relaxed);
    if (static_cast<uint32_t>(c >> 32) == id) return static_cast<int32_t>(c & 0xffffffffu);
    if (other_slots.empty()) return -1;
    auto it = other_slots.find(p);
    return it == other_slots.end() ? -1 : it->second;
  }

  int32_t add_slot(const Tensor& t) {
    TensorImpl* p = t.impl();
    int32_t s = num_slots++;
    slot_tensor.push_back(t);
    uint64_t unclaimed = 0;
    if (!p->tape_claim.compare_exchange_strong(unclaimed, claim_of(id, s),
                                               std::memory_order_relaxed)) {
      other_slots[p] = s;
    }
    return s;
  }

  // Hands every claim this tape holds back (before the references keeping the impls alive go).
  void release_claims() {
    for (int32_t s = 0; s < num_slots; ++s) {
      uint64_t mine = claim_of(id, s);
      slot_tensor[s].impl()->tape_claim.compare_exchange_strong(mine, 0, std::memory_order_relaxed);
    }
  }

  int32_t track(const Tensor& t) {
    int32_t s = slot_of(t.impl());
    return s >= 0 ? s : add_slot(t);
  }

  void record_one(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                  std::span<const Tensor> outputs) {
    if (!recording) return;
    if (!op.grad) {
      // Rule-less ops are recorded only when a gradient could reach them, so that gradient()
      // can refuse them instead of silently dropping a path.
      if (op.flags & kNotDifferentiable) return;
      bool floating_out = false;
      for (const Tensor& t : outputs) floating_out |= is_floating(t.dtype());
      if (!floating_out) return;
    }
    int32_t slots[16];
    bool any = false;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const TensorImpl* p = inputs[k].impl();
      int32_t s = slot_of(p);
      if (s < 0 && p->requires_grad && is_floating(p->dtype)) s = add_slot(inputs[k]);
      slots[k] = s;
      any |= s >= 0;
    }
    if (!any) return;
    Node n{&op, attrs, static_cast<int32_t>(io.size()), static_cast<int16_t>(inputs.size()),
           static_cast<int16_t>(outputs.size())};
    for (size_t k = 0; k < inputs.size(); ++k) {
      io.push_back(inputs[k]);
      io_slot.push_back(slots[k]);
    }
    for (const Tensor& t : outputs) {
      io.push_back(t);
      io_slot.push_back(is_floating(t.dtype()) ? track(t) : -1);
    }
    nodes.push_back(n);
  }

  void record(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
              std::span<const Tensor> outputs) override {
    for (TapeRecorder* t = this; t; t = t->parent) {
      static_cast<State*>(t)->record_one(op, inputs, attrs, outputs);
    }
  }

  void release() {
    release_claims();
    nodes.clear();
    io.clear();
    io_slot.clear();
    slot_tensor.clear();
    other_slots.clear();
    num_slots = 0;
    recording = false;  // a used non-persistent tape records nothing more
  }
};

namespace {
// Reports each source's gradient once it is final. A slot's gradient is final after the walk
// (which runs from the last node to the first) has processed the earliest node reading it.
class ReadyNotifier {
 public:
  ReadyNotifier(const GradientTape::State& st, const std::vector<Tensor>& sources,
                const std::vector<Tensor>& grads, const GradientTape::GradientReady& on_ready)
      : grads_(grads), on_ready_(on_ready) {
    if (!on_ready_) return;
    std::vector<int32_t> first_use(st.num_slots, -1);  // earliest node reading each slot
    for (size_t n = st.nodes.size(); n-- > 0;) {
      const GradientTape::State::Node& node = st.nodes[n];
      for (int k = 0; k < node.n_in; ++k) {
        int32_t s = st.io_slot[node.first + k];
        if (s >= 0) first_use[s] = static_cast<int32_t>(n);
      }
    }
    by_node_.resize(st.nodes.size() + 1);
    slot_.resize(sources.size(), -1);
    for (size_t k = 0; k < sources.size(); ++k) {
      int32_t s = st.slot_of(sources[k].impl());
      if (s >= static_cast<int32_t>(first_use.size())) s = -1;
      slot_[k] = s;
      if (s >= 0 && first_use[s] >= 0) {
        by_node_[first_use[s]].push_back(k);
      } else {
        unused_.push_back(k);
      }
    }
  }

  // Node n has been processed (or skipped): report the sources it finalized.
  void after_node(size_t n) {
    if (!on_ready_ || n >= by_node_.size()) return;
    for (size_t k : by_node_[n]) on_ready_(k, grads_[slot_[k]]);
    by_node_[n].clear();
  }

  // The walk is over: report everything not yet reported (node 0's sources, unused sources,
  // and all of them when the walk stopped early).
  void finish() {
    if (!on_ready_) return;
    for (size_t n = by_node_.size(); n-- > 0;) after_node(n);
    for (size_t k : unused_) on_ready_(k, slot_[k] >= 0 ? grads_[slot_[k]] : Tensor());
    unused_.clear();
  }

 private:
  const std::vector<Tensor>& grads_;
  const GradientTape::GradientReady& on_ready_;
  std::vector<std::vector<size_t>> by_node_;  // node index -> sources it finalizes
  std::vector<int32_t> slot_;                 // per source
  std::vector<size_t> unused_;                // sources no recorded node reads
};
}  // namespace

GradientTape::GradientTape(bool persistent) : state_(std::make_unique<State>()) {
  state_->persistent = persistent;
  detail::ThreadContext& ctx = detail::thread_context();
  state_->parent = ctx.tape;
  ctx.tape = state_.get();
}

GradientTape::~GradientTape() {
  detail::ThreadContext& ctx = detail::thread_context();
  // Unlink from the chain (tapes normally die innermost first).
  for (detail::TapeRecorder** p = &ctx.tape; *p; p = &(*p)->parent) {
    if (*p == state_.get()) {
      *p = state_->parent;
      break;
    }
  }
  state_->release_claims();
}

void GradientTape::watch(const Tensor& t) {
  if (!t.defined()) throw ValueError("GradientTape::watch: the tensor is undefined");
  if (!is_floating(t.dtype())) return;  // no gradient through integer tensors
  state_->track(t);
}

void GradientTape::stop_recording() { state_->recording = false; }
void GradientTape::start_recording() { state_->recording = true; }
size_t GradientTape::size() const { return state_->nodes.size(); }

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<Tensor>& sources,
                                           const Tensor& output_gradient) {
  return gradient(target, sources, GradientReady(), output_gradient);
}

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<Tensor>& sources,
                                           const GradientReady& on_ready,
                                           const Tensor& output_gradient) {
  State& st = *state_;
  if (st.used) {
    throw StateError(
        "GradientTape::gradient: a non-persistent tape can compute gradients only once; "
        "construct it with persistent=true to call gradient() again");
  }
  if (!target.defined()) throw ValueError("GradientTape::gradient: the target is undefined");
  if (output_gradient.defined() &&
      (output_gradient.shape() != target.shape() || output_gradient.dtype() != target.dtype())) {
    throw ShapeError("GradientTape::gradient: output_gradient " +
                     to_string(output_gradient.shape()) + " does not match the target " +
                     to_string(target.shape()));
  }

  for (size_t k = 0; k < sources.size(); ++k) {
    if (!sources[k].defined())
      throw ValueError("GradientTape::gradient: source " + std::to_string(k) + " is undefined");
  }

  // Gradient ops are recorded by enclosing tapes only.
  detail::ThreadContext& ctx = detail::thread_context();
  detail::TapeRecorder* saved = ctx.tape;
  ctx.tape = st.parent;
  struct Restore {
    detail::ThreadContext& ctx;
    detail::TapeRecorder* saved;
    ~Restore() { ctx.tape = saved; }
  } restore{ctx, saved};

  std::vector<Tensor> grads(st.num_slots);
  ReadyNotifier ready(st, sources, grads, on_ready);
  int32_t ts = st.slot_of(target.impl());
  if (ts >= 0) grads[ts] = output_gradient.defined() ? output_gradient : ones_like(target);

  Tensor grad_out[4], grad_in[16];
  for (size_t n = st.nodes.size(); ts >= 0 && n-- > 0;) {
    ready.after_node(n + 1);
    const State::Node& node = st.nodes[n];
    const Tensor* in = &st.io[node.first];
    const Tensor* out = in + node.n_in;
    const int32_t* in_slot = &st.io_slot[node.first];
    const int32_t* out_slot = in_slot + node.n_in;
    bool any = false;
    for (int k = 0; k < node.n_out; ++k) {
      any |= out_slot[k] >= 0 && grads[out_slot[k]].defined();
    }
    if (!any) continue;
    for (int k = 0; k < node.n_out; ++k) {
      grad_out[k] = out_slot[k] >= 0 && grads[out_slot[k]].defined() ? grads[out_slot[k]]
                                                                     : zeros_like(out[k]);
    }
    uint32_t needed = 0;
    for (int k = 0; k < node.n_in; ++k) {
      grad_in[k] = Tensor();
      if (in_slot[k] >= 0) needed |= 1u << k;
    }
    if (!node.op->grad) {
      throw StateError(std::string(node.op->name) +
                       ": has no gradient rule, but a gradient reaches it on this tape (a "
                       "higher-order gradient through its parent op?); refusing to drop it");
    }
    node.op->grad(GradArgs{{in, static_cast<size_t>(node.n_in)},
                           {out, static_cast<size_t>(node.n_out)},
                           {grad_out, static_cast<size_t>(node.n_out)},
                           node.attrs,
                           {grad_in, static_cast<size_t>(node.n_in)},
                           needed});
    for (int k = 0; k < node.n_in; ++k) {
      if (in_slot[k] < 0 || !grad_in[k].defined()) continue;
      if (grad_in[k].shape() != in[k].shape()) {
        throw Error(std::string(node.op->name) + ": gradient rule returned shape " +
                    to_string(grad_in[k].shape()) + " for input " + std::to_string(k) +
                    " of shape " + to_string(in[k].shape()));
      }
      Tensor& g = grads[in_slot[k]];
      g = g.defined() ? add(g, grad_in[k]) : grad_in[k];
    }
  }

  ready.finish();

  std::vector<Tensor> result(sources.size());
  for (size_t k = 0; k < sources.size(); ++k) {
    int32_t s = st.slot_of(sources[k].impl());
    if (s >= 0 && s < static_cast<int32_t>(grads.size())) result[k] = grads[s];
  }
  if (!st.persistent) {
    st.used = true;
    st.release();
  }
  return result;
}

Tensor stop_gradient(const Tensor& x) { return run_op(ops::kStopGradient, {x}); }

}  // namespace kiln
