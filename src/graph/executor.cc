#include "graph/executor.h"

#include <cstring>
#include <thread>

#include "core/tensor_impl.h"
#include "kiln/error.h"
#include "kiln/threading.h"

namespace kiln::graph {
namespace {

// Points `p` at `s` + `offset`, moving its storage reference.
void bind(detail::TensorImpl* p, detail::Storage* s, int64_t offset) {
  if (s) detail::storage_ref(s);
  if (p->storage) detail::storage_unref(p->storage);
  p->storage = s;
  p->offset = offset;
}

size_t nbytes_of(const Meta& m) { return m.shape.numel() * size_of(m.dtype); }

}  // namespace

Graph with_shapes(const Graph& g, std::span<const Tensor> args) {
  if (args.size() != g.inputs.size()) {
    throw ValueError("graph: got " + std::to_string(args.size()) + " arguments, expected " +
                     std::to_string(g.inputs.size()));
  }
  Graph out = g;
  for (size_t k = 0; k < g.inputs.size(); ++k) {
    out.values[g.inputs[k]].meta = {args[k].shape(), args[k].dtype()};
  }
  for (const Node& n : out.nodes) {
    Meta in[16], res[2];
    for (size_t k = 0; k < n.inputs.size(); ++k) in[k] = out.values[n.inputs[k]].meta;
    n.op->infer({in, n.inputs.size()}, n.attrs, {res, n.outputs.size()});
    for (size_t k = 0; k < n.outputs.size(); ++k) out.values[n.outputs[k]].meta = res[k];
  }
  return out;
}

Plan::~Plan() { unbind_call(); }

std::unique_ptr<Plan> Plan::build(const Graph& g, std::span<const Tensor> args) {
  if (args.size() != g.inputs.size()) {
    throw ValueError("graph: got " + std::to_string(args.size()) + " arguments, expected " +
                     std::to_string(g.inputs.size()));
  }
  std::unique_ptr<Plan> p(new Plan());
  const size_t nv = g.values.size();
  p->metas_.resize(nv);
  p->vals_.resize(nv);
  p->inputs_ = g.inputs;
  for (size_t k = 0; k < g.inputs.size(); ++k) {
    p->metas_[g.inputs[k]] = {args[k].shape(), args[k].dtype()};
  }
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    if (val.kind == ValueKind::kConstant || val.kind == ValueKind::kVariable) {
      p->metas_[v] = {val.captured.shape(), val.captured.dtype()};
      p->vals_[v] = val.captured;
      p->captured_.push_back(val.captured);
    }
  }
  // Shapes for these arguments (the graph's metas are the traced ones).
  for (const Node& n : g.nodes) {
    Meta in[16], out[2];
    for (size_t k = 0; k < n.inputs.size(); ++k) in[k] = p->metas_[n.inputs[k]];
    n.op->infer({in, n.inputs.size()}, n.attrs, {out, n.outputs.size()});
    for (size_t k = 0; k < n.outputs.size(); ++k) p->metas_[n.outputs[k]] = out[k];
  }
  p->memory_ = plan_memory(g, p->metas_);
  p->arena_ = Tensor::adopt(detail::impl_new(
      Shape{static_cast<int64_t>(std::max<size_t>(p->memory_.arena_bytes, 1))}, DType::kUInt8));
  detail::Storage* arena = p->arena_.impl()->storage;
  // Which values are rebound per call: arguments, outputs written in place, variables (an
  // assignment may give them new storage), and views of those.
  std::vector<bool> rebound(nv, false);
  for (size_t k = 0; k < g.inputs.size(); ++k) {
    // Bound to the argument's storage per call; the argument's now for the view deltas below.
    const int32_t v = g.inputs[k];
    const detail::TensorImpl* a = args[k].impl();
    p->vals_[v] = Tensor::adopt(detail::impl_view(a->storage, a->offset, a->shape, a->dtype));
    rebound[v] = true;
  }
  for (size_t v = 0; v < nv; ++v)
    rebound[v] = rebound[v] || g.values[v].kind == ValueKind::kVariable;
  std::vector<bool> seen_out(nv, false);
  p->direct_out_.assign(g.outputs.size(), -1);
  for (size_t k = 0; k < g.outputs.size(); ++k) {
    const int32_t v = g.outputs[k];
    const Value& val = g.values[v];
    const bool kernel_output = val.kind == ValueKind::kNode && !g.nodes[val.producer].op->view;
    if (kernel_output && !seen_out[v]) {
      p->direct_out_[k] = v;
      p->vals_[v] = Tensor::adopt(detail::impl_new(p->metas_[v].shape, p->metas_[v].dtype));
      rebound[v] = true;
    } else {
      p->copies_.push_back({v, static_cast<int>(k)});
    }
    seen_out[v] = true;
  }
  for (const Node& n : g.nodes) {
    const bool view = n.op->view != nullptr;
    Step step{n.op, n.attrs, {}, {}};
    for (int32_t v : n.inputs) step.in.push_back(p->vals_[v]);
    for (int32_t v : n.outputs) {
      Tensor& t = p->vals_[v];
      if (t.defined()) continue;  // an output written in place
      if (view) {
        t = n.op->view(p->vals_[n.inputs[0]], n.attrs, p->metas_[v]);
        if (t.defined()) {
          const int32_t root = p->memory_.root[v];
          if (rebound[root]) {
            p->rebinds_.push_back({v, root, t.impl()->offset - p->vals_[root].impl()->offset});
            rebound[v] = true;
          }
          continue;
        }
        // The op declined the view: its own buffer, outside the arena (and never rebound).
        t = Tensor::adopt(detail::impl_new(p->metas_[v].shape, p->metas_[v].dtype));
        continue;
      }
      t = Tensor::adopt(
          detail::impl_view(arena, p->memory_.offset[v], p->metas_[v].shape, p->metas_[v].dtype));
    }
    if (view && n.outputs.size() == 1) {
      const Tensor& out = p->vals_[n.outputs[0]];
      const Tensor& in = p->vals_[n.inputs[0]];
      // A view that the op made is resolved above; only a declined one needs a step.
      if (out.impl()->storage == in.impl()->storage && out.impl()->storage) continue;
    }
    for (int32_t v : n.outputs) step.out.push_back(p->vals_[v]);
    p->steps_.push_back(std::move(step));
  }
  p->unbind_call();
  return p;
}

bool Plan::matches(std::span<const Tensor> args) const {
  if (args.size() != inputs_.size()) return false;
  for (size_t k = 0; k < args.size(); ++k) {
    const Meta& m = metas_[inputs_[k]];
    if (args[k].dtype() != m.dtype || args[k].shape() != m.shape) return false;
  }
  return true;
}

void Plan::bind_call(std::span<const Tensor> args, std::span<Tensor> outs) {
  for (size_t k = 0; k < args.size(); ++k) {
    const detail::TensorImpl* a = args[k].impl();
    bind(vals_[inputs_[k]].impl(), a->storage, a->offset);
  }
  for (size_t k = 0; k < outs.size(); ++k) {
    const int32_t v = direct_out_[k];
    if (v < 0) continue;  // copied out after the steps
    const Meta& m = metas_[v];
    bool fits =
        outs[k].defined() && v >= 0 && outs[k].dtype() == m.dtype && outs[k].shape() == m.shape;
    if (fits) {  // writing into storage the graph reads would change what it reads
      const detail::Storage* s = outs[k].impl()->storage;
      for (const Tensor& a : args) fits &= a.impl()->storage != s;
      for (const Tensor& c : captured_) fits &= c.impl()->storage != s;
      for (size_t j = 0; j < k; ++j) fits &= !outs[j].defined() || outs[j].impl()->storage != s;
    }
    if (!fits) outs[k] = Tensor::adopt(detail::impl_new(m.shape, m.dtype));
    const detail::TensorImpl* o = outs[k].impl();
    bind(vals_[v].impl(), o->storage, o->offset);
  }
  for (const Rebind& r : rebinds_) {
    const detail::TensorImpl* root = vals_[r.root].impl();
    bind(vals_[r.value].impl(), root->storage, root->offset + r.delta);
  }
}

void Plan::unbind_call() {
  // Drop the references to the caller's storage (arguments, outputs) between calls.
  for (int32_t v : inputs_) {
    if (vals_[v].defined()) bind(vals_[v].impl(), nullptr, 0);
  }
  for (int32_t v : direct_out_) {
    if (v >= 0 && vals_[v].defined()) bind(vals_[v].impl(), nullptr, 0);
  }
  for (const Rebind& r : rebinds_) {
    if (vals_[r.value].defined()) bind(vals_[r.value].impl(), nullptr, 0);
  }
}

void Plan::run_step(Step& s) {
  const KernelArgs k{s.in, s.out, s.attrs};
  if (s.path == 2 || !s.op->fast) {
    s.op->reference(k);
  } else if (s.path == 1) {
    if (!s.op->fast(k)) s.op->reference(k);  // shapes are fixed, so this stays rare
  } else {
    s.path = s.op->fast(k) ? 1 : 2;
    if (s.path == 2) s.op->reference(k);
  }
}

void Plan::run_profiled(std::span<const Tensor> args, std::span<Tensor> outs) {
  const uint64_t generation = recording_generation();
  if (!profile_info_) {
    auto info = std::make_shared<PlanInfo>();
    info->label = label_.empty() ? "graph" : label_;
    for (const Step& s : steps_) {
      std::vector<Meta> in, out;
      for (const Tensor& t : s.in) in.push_back({t.shape(), t.dtype()});
      for (const Tensor& t : s.out) out.push_back({t.shape(), t.dtype()});
      info->steps.push_back(step_info(*s.op, s.attrs, std::move(in), std::move(out)));
    }
    profile_info_ = std::move(info);
  }
  RunRecord r;
  r.plan = profile_info_;
  r.threads = num_threads();
  r.thread_id = std::hash<std::thread::id>()(std::this_thread::get_id());
  r.step_ns.resize(2 * steps_.size());
  r.start_ns = recording_now_ns();
  bind_call(args, outs);
  // One clock read per step boundary: a step ends where the next begins.
  int64_t* t = r.step_ns.data();
  int64_t now = recording_now_ns();
  for (Step& s : steps_) {
    *t++ = now;
    run_step(s);
    now = recording_now_ns();
    *t++ = now;
  }
  copy_outputs(args, outs);
  r.end_ns = recording_now_ns();
  add_run(generation, std::move(r));
}

void Plan::run(std::span<const Tensor> args, std::span<Tensor> outs) {
  if (!matches(args) || outs.size() != direct_out_.size()) {
    throw StateError("graph plan: called with arguments it was not planned for");
  }
  struct Unbind {
    Plan* p;
    ~Unbind() { p->unbind_call(); }
  } unbind{this};
  if (profiling()) {  // the one check per run a profiler costs when off
    run_profiled(args, outs);
    return;
  }
  bind_call(args, outs);
  for (Step& s : steps_) run_step(s);
  copy_outputs(args, outs);
}

void Plan::copy_outputs(std::span<const Tensor> args, std::span<Tensor> outs) {
  for (const OutputCopy& c : copies_) {
    const Meta& m = metas_[c.value];
    Tensor& dst = outs[c.index];
    bool fits = dst.defined() && dst.dtype() == m.dtype && dst.shape() == m.shape;
    if (fits) {  // nor may it be another output's tensor, or the copy would overwrite that
      const detail::Storage* s = dst.impl()->storage;
      for (const Tensor& a : args) fits &= a.impl()->storage != s;
      for (const Tensor& t : captured_) fits &= t.impl()->storage != s;
      for (size_t j = 0; j < outs.size(); ++j) {
        fits &=
            static_cast<int>(j) == c.index || !outs[j].defined() || outs[j].impl()->storage != s;
      }
    }
    if (!fits) dst = Tensor::adopt(detail::impl_new(m.shape, m.dtype));
    std::memcpy(dst.impl()->bytes(), vals_[c.value].impl()->bytes(), nbytes_of(m));
  }
}

}  // namespace kiln::graph
