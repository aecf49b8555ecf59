// The profiler: where a graph function's time goes, step by step, against the machine's floor
// (as torch.profiler and TensorFlow's trace viewer show it).
//
//   kiln::Profiler p;                        // records every plan run from here on
//   for (int i = 0; i < 5; ++i) step({x, y}, true);
//   kiln::Profile prof = p.stop();
//   std::cout << prof.to_text();             // grouped by op: time, share, GFLOP/s, GB/s, floor
//   prof.write_chrome_trace("step.json");    // chrome://tracing or ui.perfetto.dev
//
// or in one call: kiln::profile(step, {x, y}, {.steps = 5, .training = true}).
//
// What is recorded: every run of a graph plan (kiln::Function, GraphModel, fit and predict in
// graph mode) on any thread while a Profiler is active: per plan step its start and duration
// (steady clock), the op, its attrs and shapes, FLOPs (the op's rule: src/ops/flops.cc), bytes
// (inputs read, shape-only inputs excepted, plus outputs written; a stateful op's first input
// once more, as it is written in place) and the threads kiln may use. Graph mode only: eager
// ops, and function calls under a GradientTape (which run op by op), are not recorded.
//
// The floor of a step is max(FLOPs / peak FP32 FLOP/s, bytes / read bandwidth), both measured
// on this machine at the run's thread count (machine_peak); distance = time / floor. The
// bandwidth is streaming from memory (a 64 MiB buffer), so a step whose data sits in cache
// can beat its floor (distance < 1).
//
// Cost: with no profiler active a plan run checks one flag and nothing else; when active, one
// steady-clock read per step boundary and one record per run (bench/kiln_profile_bench.cc
// measures both).
//
// Thread safety: one Profiler at a time in the process (a second is a StateError); plans on
// any thread record into it. A Profile is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/function.h"
#include "kiln/tensor.h"

namespace kiln {

// The machine's measured limits at a thread count.
struct MachinePeak {
  int threads = 0;
  double fp32_gflops = 0;   // FMA throughput (src/report/machine_peak.cc's widest kernel)
  double read_gbs = 0;      // streaming read bandwidth, 1e9 bytes/s
  std::string fp32_kernel;  // "avx512f", "avx2+fma", "sse2"; "given" when set by the caller
};

// Measures the peak at `threads` threads (about 0.3 s the first time; cached per thread count
// for the process). Thread-safe. ValueError when threads < 1.
MachinePeak machine_peak(int threads);

// One plan step as it ran once.
struct ProfileEvent {
  int run = 0;   // index into Profile::runs
  int step = 0;  // position in its plan
  std::string op;
  std::string attrs;                         // "strides=[1, 1], padding=same, ..." ("" if none)
  std::vector<std::string> inputs, outputs;  // "float32 [64, 28, 28, 1]"
  int64_t flops = 0;
  int64_t bytes = 0;
  double start_us = 0;  // since the profiler started
  double dur_us = 0;
  int threads = 1;
};

// One plan run: a call of a graph function.
struct ProfileRun {
  std::string function;  // "train_step (float32 [64, 28, 28, 1], int32 [64], training=true)"
  double start_us = 0, dur_us = 0;
  int first_event = 0, num_events = 0;  // its steps: events[first_event, +num_events)
  int threads = 1;
  uint64_t thread_id = 0;
};

// The steps of one op, summed over the recorded runs.
struct OpProfile {
  std::string op;
  int64_t calls = 0;
  double time_us = 0;
  double share = 0;  // of the runs' total time (0..1)
  int64_t flops = 0, bytes = 0;
  double floor_us = 0;  // summed per call: max(flops / peak, bytes / bandwidth)
  double distance = 0;  // time / floor; 0 when the floor is 0 (no arithmetic, no bytes)
  double gflops() const { return time_us > 0 ? flops / time_us * 1e-3 : 0; }
  double gbs() const { return time_us > 0 ? bytes / time_us * 1e-3 : 0; }
};

struct Profile {
  std::vector<ProfileRun> runs;
  std::vector<ProfileEvent> events;
  MachinePeak peak;

  double total_us() const;  // the runs' durations summed
  // The steps' durations summed: total_us less each run's binding of arguments and outputs and
  // its copies of outputs (the text's "(binding, copies)" row).
  double steps_us() const;
  // By op, most time first.
  std::vector<OpProfile> by_op() const;
  // A table grouped by op (time, share, calls, GFLOP/s, GB/s, floor, distance) under a header
  // naming the runs and the peak; per_step adds every step of the first run's plan averaged
  // over the runs of that plan (op, shapes, time, FLOPs, bytes, distance).
  std::string to_text(bool per_step = false) const;
  // {"peak": {...}, "total_us", "steps_us", "runs": [...], "ops": [...], "events": [...]}.
  std::string to_json() const;
  // Writes the Trace Event Format (chrome://tracing, ui.perfetto.dev): one "X" event per run
  // and per step (ts/dur in microseconds, pid 1, tid the calling thread's, args: attrs, inputs,
  // outputs, flops, bytes, threads), runs [first_run, first_run + num_runs) (num_runs < 0: all
  // from first_run). Atomic: on failure (ValueError for a run range outside the profile,
  // kiln::Error naming the path when it cannot be written) no file is left at `path`.
  void write_chrome_trace(const std::string& path, int first_run = 0, int num_runs = -1) const;
};

struct ProfilerOptions {
  // The floor's peak; fp32_gflops == 0 (the default): machine_peak(kiln::num_threads()) at
  // stop(). Tests and repeatable reports give one.
  MachinePeak peak;
};

// Records plan runs while alive (see the top of this file). StateError when another Profiler
// is active. The destructor stops it if stop() was not called.
class Profiler {
 public:
  explicit Profiler(ProfilerOptions options = {});
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Ends recording and returns what was recorded. StateError when called twice.
  Profile stop();

 private:
  ProfilerOptions options_;
  bool active_ = true;
};

struct ProfileOptions {
  int warmup = 2;  // unrecorded calls first (the first traces and plans, the second settles)
  int steps = 1;   // recorded calls
  bool training = false;
  ProfilerOptions profiler;
};

// Calls f(args, training) warmup times, then steps times under a Profiler, and returns the
// profile. ValueError when steps < 1 or warmup < 0; what f throws propagates.
Profile profile(Function& f, const std::vector<Tensor>& args, const ProfileOptions& options = {});

}  // namespace kiln
