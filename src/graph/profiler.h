// What the executor records for the profiler (kiln/profile.h): while a kiln::Profiler is
// active, every plan run appends one RunRecord (the steps' start and duration on a steady
// clock); src/report/profile.cc turns the records into a Profile.
//
// The executor reads profiling() once per plan run (one relaxed atomic load); with no profiler
// active nothing else happens. Thread safety: plans on any thread may record at once (add_run
// locks).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/op_def.h"

namespace kiln::graph {

// A plan step's fixed facts, computed once per plan when it is first profiled.
struct StepInfo {
  const OpDef* op = nullptr;
  Attrs attrs;
  std::vector<Meta> in, out;
  int64_t flops = 0;  // op_flops
  int64_t bytes = 0;  // inputs read (shape-only inputs not) + outputs written; see profile.h
};

struct PlanInfo {
  std::string label;  // "train_step (float32 [64, 28, 28, 1], ..., training=true)"
  std::vector<StepInfo> steps;
};

// One plan run: per step its start and end, in nanoseconds since the sink's origin.
struct RunRecord {
  std::shared_ptr<const PlanInfo> plan;
  int64_t start_ns = 0, end_ns = 0;
  std::vector<int64_t> step_ns;  // 2 per step: start, end
  int threads = 1;               // kiln::num_threads() during the run
  uint64_t thread_id = 0;        // the calling thread
};

// The process's one recording: start() clears it and begins a generation, stop() ends it and
// returns the runs that generation recorded (a run still in progress on another thread when
// stop() is called is dropped). The recording itself is never freed, so a run that read the
// flag just before stop() never writes to freed memory.
extern std::atomic<bool> g_profiling;  // read through profiling()

// Whether a profiler records: one relaxed atomic load, checked once per plan run.
inline bool profiling() { return g_profiling.load(std::memory_order_relaxed); }

// Begins a recording; StateError "kiln::Profiler: another profiler is already active" when
// one is. Returns the generation the runs will carry.
uint64_t start_recording();
// Ends the current recording and returns its runs, in the order they finished.
std::vector<RunRecord> stop_recording();
// Nanoseconds since the current recording began (steady clock), and its generation.
int64_t recording_now_ns();
uint64_t recording_generation();
// Appends a finished run (dropped unless `generation` is the current recording's).
void add_run(uint64_t generation, RunRecord&& r);

// The fixed facts of a step: flops from the OpDef, bytes from the metas.
StepInfo step_info(const OpDef& op, const Attrs& attrs, std::vector<Meta> in,
                   std::vector<Meta> out);

}  // namespace kiln::graph
