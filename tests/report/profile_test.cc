// kiln::Profiler / kiln::profile: what a plan run records (FLOPs, bytes, times), the report's
// forms (text, JSON, Chrome trace), that nothing is recorded when off, and the error paths.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "io/atomic_file_testing.h"
#include "kiln/autograd.h"
#include "kiln/error.h"
#include "kiln/function.h"
#include "kiln/ops.h"
#include "kiln/profile.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

// A fixed peak: no measuring in tests, and floors that are easy to check.
ProfilerOptions fixed_peak() {
  return {.peak = {.threads = 1, .fp32_gflops = 100, .read_gbs = 10}};
}

ProfileOptions options(int steps) {
  return {.warmup = 1, .steps = steps, .profiler = fixed_peak()};
}

Function matmul_fn() {
  return function([](const Tensor& a, const Tensor& b) { return matmul(a, b); }, {.name = "mm"});
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(Profile, MatmulStepCountsTwoMNKFlopsAndItsBytes) {
  const int64_t M = 5, K = 7, N = 3;
  Function f = matmul_fn();
  Tensor a = random_uniform({M, K}, 0, 1, 1), b = random_uniform({K, N}, 0, 1, 2);
  Profile p = profile(f, {a, b}, options(2));
  ASSERT_EQ(p.runs.size(), 2u);
  ASSERT_EQ(p.events.size(), 2u);
  for (const ProfileEvent& e : p.events) {
    EXPECT_EQ(e.op, "matmul");
    EXPECT_EQ(e.flops, 2 * M * N * K);
    EXPECT_EQ(e.bytes, (M * K + K * N + M * N) * 4);
    EXPECT_EQ(e.inputs, (std::vector<std::string>{"float32 [5, 7]", "float32 [7, 3]"}));
    EXPECT_EQ(e.outputs, (std::vector<std::string>{"float32 [5, 3]"}));
    EXPECT_EQ(e.attrs, "transpose_a=false, transpose_b=false");
    EXPECT_GE(e.dur_us, 0);
  }
  EXPECT_EQ(p.runs[0].function, "mm (float32 [5, 7], float32 [7, 3], training=false)");
  EXPECT_EQ(p.peak.fp32_kernel, "given");
  std::vector<OpProfile> ops = p.by_op();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].calls, 2);
  EXPECT_EQ(ops[0].flops, 2 * 2 * M * N * K);
  // The floor per call: max(210 flops / 100 GFLOP/s, 284 bytes / 10 GB/s) = 0.0284 us.
  EXPECT_NEAR(ops[0].floor_us, 2 * 0.0284, 1e-9);
  EXPECT_NEAR(ops[0].distance, ops[0].time_us / ops[0].floor_us, 1e-9);
}

TEST(Profile, StepsSumToTheMeasuredTotal) {
  // Work large enough that the clock reads between steps are noise: 3 matmuls of 192^3.
  Function f = function(
      [](const Tensor& a, const Tensor& b) { return relu(matmul(relu(matmul(a, b)), b)) + 1.0; },
      {.name = "chain"});
  Tensor a = random_uniform({192, 192}, 0, 1, 1), b = random_uniform({192, 192}, 0, 1, 2);
  f({a, b});
  f({a, b});
  const auto t0 = std::chrono::steady_clock::now();
  Profiler prof(fixed_peak());
  for (int k = 0; k < 4; ++k) f({a, b});
  const double wall_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  Profile p = prof.stop();
  ASSERT_EQ(p.runs.size(), 4u);
  const double total = p.total_us(), steps = p.steps_us();
  EXPECT_GT(steps, 0);
  EXPECT_LE(steps, total);
  // How much of a run the steps cover is timing (binding and copies cost more under
  // sanitizers): bench/kiln_profile_bench measures it; here only the bounds are checked.
  EXPECT_LE(total, wall_us);
  double by_op = 0, share = 0;
  for (const OpProfile& o : p.by_op()) {
    by_op += o.time_us;
    share += o.share;
  }
  EXPECT_NEAR(by_op, steps, 1e-6 * steps);
  EXPECT_LE(share, 1.0 + 1e-12);
  // Each run's steps lie inside the run, in order.
  for (const ProfileRun& r : p.runs) {
    double t = r.start_us;
    for (int k = 0; k < r.num_events; ++k) {
      const ProfileEvent& e = p.events[r.first_event + k];
      EXPECT_GE(e.start_us, t - 1e-6);  // a step starts where the last ended
      t = e.start_us + e.dur_us;
    }
    EXPECT_LE(t, r.start_us + r.dur_us + 1e-3);
  }
}

TEST(Profile, TextGroupsByOpAndJsonParses) {
  Function f = function([](const Tensor& a, const Tensor& b) { return relu(matmul(a, b)); },
                        {.name = "dense"});
  Profile p = profile(f, {ones({8, 16}), ones({16, 4})}, options(3));
  const std::string text = p.to_text(/*per_step=*/true);
  EXPECT_NE(text.find("kiln profile: 3 runs"), std::string::npos) << text;
  EXPECT_NE(text.find("3 x dense (float32 [8, 16], float32 [16, 4], training=false)"),
            std::string::npos)
      << text;
  for (const char* s :
       {"op", "calls", "share", "GFLOP/s", "GB/s", "floor ms", "x floor", "(binding, copies)",
        "steps of dense", "float32 [8, 4] <- float32 [8, 16]"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s << " in\n" << text;
  }
  nlohmann::json j = nlohmann::json::parse(p.to_json());
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  EXPECT_EQ(keys, (std::set<std::string>{"peak", "total_us", "steps_us", "runs", "ops", "events"}));
  EXPECT_EQ(j["runs"].size(), 3u);
  EXPECT_EQ(j["events"].size(), p.events.size());
  EXPECT_EQ(j["peak"]["fp32_gflops"], 100.0);
  ASSERT_FALSE(j["ops"].empty());
  for (const auto& o : j["ops"]) {
    for (const char* k : {"op", "calls", "time_us", "share", "flops", "bytes", "gflops", "gbs",
                          "floor_us", "distance"}) {
      EXPECT_TRUE(o.contains(k)) << k;
    }
  }
}

TEST(Profile, ChromeTraceHasCompleteEventsWithArgs) {
  testing::TempDir dir("kiln_profile_test_");
  Function f = matmul_fn();
  Profile p = profile(f, {ones({4, 6}), ones({6, 2})}, options(3));
  const std::string path = dir.path() + "/trace.json";
  p.write_chrome_trace(path);
  std::ifstream in(path);
  nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_TRUE(doc["traceEvents"].is_array());
  const auto& ev = doc["traceEvents"];
  ASSERT_EQ(ev.size(), 3u * 2);  // per run: the run and its one step
  int steps = 0;
  for (const auto& e : ev) {
    for (const char* k : {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}) {
      ASSERT_TRUE(e.contains(k)) << k << " in " << e.dump();
    }
    EXPECT_EQ(e["ph"], "X");
    EXPECT_GE(e["dur"].get<double>(), 0);
    if (e["cat"] == "step") {
      ++steps;
      EXPECT_EQ(e["name"], "matmul");
      EXPECT_EQ(e["args"]["flops"], 2 * 4 * 6 * 2);
      EXPECT_EQ(e["args"]["inputs"][0], "float32 [4, 6]");
      EXPECT_EQ(e["args"]["attrs"], "transpose_a=false, transpose_b=false");
    }
  }
  EXPECT_EQ(steps, 3);
  // One run of the three.
  p.write_chrome_trace(path, 1, 1);
  std::ifstream one(path);
  EXPECT_EQ(nlohmann::json::parse(one)["traceEvents"].size(), 2u);
}

TEST(Profile, NothingIsRecordedWhenOffOrEager) {
  Function f = matmul_fn();
  Tensor a = ones({3, 3});
  f({a, a});
  f({a, a});  // no profiler: the plan runs unrecorded
  Profiler prof(fixed_peak());
  matmul(a, a);  // eager: not recorded
  {
    GradientTape tape;  // a call under a tape runs op by op: not recorded
    f({a, a});
  }
  Profile p = prof.stop();
  EXPECT_TRUE(p.runs.empty());
  EXPECT_TRUE(p.events.empty());
  EXPECT_NE(p.to_text().find("no graph function ran"), std::string::npos) << p.to_text();
  // Runs after stop() are not in the next profile either.
  f({a, a});
  Profiler again(fixed_peak());
  EXPECT_TRUE(again.stop().runs.empty());
}

TEST(Profile, OneProfilerAtATime) {
  Profiler p(fixed_peak());
  try {
    Profiler q;
    FAIL() << "a second profiler started";
  } catch (const StateError& e) {
    EXPECT_STREQ(e.what(), "kiln::Profiler: another profiler is already active");
  }
  p.stop();
  try {
    p.stop();
    FAIL();
  } catch (const StateError& e) {
    EXPECT_STREQ(e.what(), "kiln::Profiler: stop() was already called");
  }
  Profiler r(fixed_peak());  // the first has stopped: a new one may start
}

TEST(Profile, BadOptionsAreRefused) {
  Function f = matmul_fn();
  try {
    profile(f, {ones({2, 2}), ones({2, 2})}, {.steps = 0});
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "kiln::profile: need steps >= 1 and warmup >= 0, got steps 0, warmup 2");
  }
  try {
    machine_peak(0);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "machine_peak: need at least 1 thread, got 0");
  }
}

TEST(Profile, TraceErrorsLeaveNoFile) {
  testing::TempDir dir("kiln_profile_test_");
  Function f = matmul_fn();
  Profile p = profile(f, {ones({2, 2}), ones({2, 2})}, options(2));
  // A run range outside the profile: refused before anything is written.
  const std::string path = dir.path() + "/t.json";
  try {
    p.write_chrome_trace(path, 1, 5);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "write_chrome_trace: runs [1, 6) are not in the profile's 2 runs");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  // A directory that does not exist: one error naming the path.
  const std::string missing = dir.path() + "/no/such/dir/t.json";
  try {
    p.write_chrome_trace(missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // A failure while writing: neither the file nor its temp file is left.
  detail::set_atomic_write_fault(detail::AtomicWriteFault::kRename);
  EXPECT_THROW(p.write_chrome_trace(path), Error);
  detail::set_atomic_write_fault(detail::AtomicWriteFault::kNone);
  EXPECT_EQ(files_in(dir.path()), 0u);
}

TEST(Profile, MachinePeakIsMeasuredAndCached) {
  const MachinePeak a = machine_peak(1);
  EXPECT_EQ(a.threads, 1);
  EXPECT_GT(a.fp32_gflops, 0.5);
  EXPECT_GT(a.read_gbs, 0.1);
  EXPECT_FALSE(a.fp32_kernel.empty());
  const MachinePeak b = machine_peak(1);
  EXPECT_EQ(a.fp32_gflops, b.fp32_gflops);  // cached
}

}  // namespace
}  // namespace kiln
