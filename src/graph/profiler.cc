#include "graph/profiler.h"

#include <chrono>

#include "kiln/error.h"

namespace kiln::graph {

std::atomic<bool> g_profiling{false};

namespace {

struct Recording {
  std::mutex mu;
  std::atomic<uint64_t> generation{0};  // changed under mu; read without it by running plans
  std::atomic<int64_t> origin_ns{0};    // steady clock; read without the lock by running plans
  std::vector<RunRecord> runs;
};

// Never destroyed: a plan run that read the flag just before stop() may still add its run.
Recording& recording() {
  static Recording* r = new Recording();
  return *r;
}

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

size_t nbytes(const Meta& m) { return static_cast<size_t>(m.shape.numel()) * size_of(m.dtype); }

}  // namespace

uint64_t start_recording() {
  Recording& r = recording();
  std::lock_guard<std::mutex> lock(r.mu);
  if (g_profiling.load()) {
    throw StateError("kiln::Profiler: another profiler is already active");
  }
  r.runs.clear();
  r.generation.fetch_add(1);
  r.origin_ns.store(steady_ns());
  g_profiling.store(true);
  return r.generation.load();
}

std::vector<RunRecord> stop_recording() {
  Recording& r = recording();
  std::lock_guard<std::mutex> lock(r.mu);
  g_profiling.store(false);
  r.generation.fetch_add(1);  // runs still in progress carry the old generation: dropped
  return std::move(r.runs);
}

int64_t recording_now_ns() { return steady_ns() - recording().origin_ns.load(); }

uint64_t recording_generation() { return recording().generation.load(); }

void add_run(uint64_t generation, RunRecord&& run) {
  Recording& r = recording();
  std::lock_guard<std::mutex> lock(r.mu);
  if (generation == r.generation && g_profiling.load()) r.runs.push_back(std::move(run));
}

StepInfo step_info(const OpDef& op, const Attrs& attrs, std::vector<Meta> in,
                   std::vector<Meta> out) {
  StepInfo s{&op, attrs, std::move(in), std::move(out)};
  s.flops = op_flops(op, s.in, attrs, s.out);
  for (size_t k = 0; k < s.in.size(); ++k) {
    if (!reads_shape_only(op, static_cast<int>(k))) s.bytes += nbytes(s.in[k]);
  }
  for (const Meta& m : s.out) s.bytes += nbytes(m);
  // A stateful op writes its first input in place (a variable, an update's weights).
  if (is_stateful(op) && !s.in.empty()) s.bytes += nbytes(s.in[0]);
  return s;
}

}  // namespace kiln::graph
