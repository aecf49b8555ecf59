// kiln::Profiler and Profile: the executor's run records (graph/profiler.h) turned into a
// report grouped by op, JSON and a Chrome trace.
#include "kiln/profile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

#include "graph/profiler.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/threading.h"
#include "report/machine_peak.h"

namespace kiln {
namespace {

std::string meta_str(const Meta& m) {
  return std::string(dtype_name(m.dtype)) + " " + to_string(m.shape);
}

// The floor of one call in microseconds: max(flops / peak, bytes / bandwidth).
double floor_us(const MachinePeak& p, int64_t flops, int64_t bytes) {
  const double f = p.fp32_gflops > 0 ? flops / (p.fp32_gflops * 1e3) : 0;
  const double b = p.read_gbs > 0 ? bytes / (p.read_gbs * 1e3) : 0;
  return std::max(f, b);
}

Profile make_profile(std::vector<graph::RunRecord> records, const MachinePeak& peak) {
  Profile p;
  p.peak = peak;
  for (const graph::RunRecord& r : records) {
    ProfileRun run;
    run.function = r.plan->label;
    run.start_us = r.start_ns * 1e-3;
    run.dur_us = (r.end_ns - r.start_ns) * 1e-3;
    run.first_event = static_cast<int>(p.events.size());
    run.num_events = static_cast<int>(r.plan->steps.size());
    run.threads = r.threads;
    run.thread_id = r.thread_id;
    for (size_t k = 0; k < r.plan->steps.size(); ++k) {
      const graph::StepInfo& s = r.plan->steps[k];
      ProfileEvent e;
      e.run = static_cast<int>(p.runs.size());
      e.step = static_cast<int>(k);
      e.op = s.op->name;
      e.attrs = format_attrs(*s.op, s.attrs);
      for (const Meta& m : s.in) e.inputs.push_back(meta_str(m));
      for (const Meta& m : s.out) e.outputs.push_back(meta_str(m));
      e.flops = s.flops;
      e.bytes = s.bytes;
      e.start_us = r.step_ns[2 * k] * 1e-3;
      e.dur_us = (r.step_ns[2 * k + 1] - r.step_ns[2 * k]) * 1e-3;
      e.threads = r.threads;
      p.events.push_back(std::move(e));
    }
    p.runs.push_back(std::move(run));
  }
  return p;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// "12.3 M" style counts for the per-step table.
std::string count_str(double v) {
  if (v >= 1e9) return fmt("%.2f G", v * 1e-9);
  if (v >= 1e6) return fmt("%.2f M", v * 1e-6);
  if (v >= 1e3) return fmt("%.1f K", v * 1e-3);
  return fmt("%.0f", v);
}

std::string distance_str(double d) { return d > 0 ? fmt("%.1fx", d) : std::string("-"); }

}  // namespace

MachinePeak machine_peak(int threads) {
  if (threads < 1) {
    throw ValueError("machine_peak: need at least 1 thread, got " + std::to_string(threads));
  }
  static std::mutex mu;
  static std::map<int, MachinePeak> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(threads);
  if (it != cache.end()) return it->second;
  const peak::FmaKernel& k = peak::widest_fma_kernel();
  MachinePeak p{threads, peak::measure_gflops(k, threads), peak::measure_read_gbs(threads), k.name};
  cache.emplace(threads, p);
  return p;
}

// ---- Profile ---------------------------------------------------------------------------------

double Profile::total_us() const {
  double t = 0;
  for (const ProfileRun& r : runs) t += r.dur_us;
  return t;
}

double Profile::steps_us() const {
  double t = 0;
  for (const ProfileEvent& e : events) t += e.dur_us;
  return t;
}

std::vector<OpProfile> Profile::by_op() const {
  std::map<std::string, OpProfile> m;
  for (const ProfileEvent& e : events) {
    OpProfile& o = m[e.op];
    o.op = e.op;
    o.calls += 1;
    o.time_us += e.dur_us;
    o.flops += e.flops;
    o.bytes += e.bytes;
    o.floor_us += floor_us(peak, e.flops, e.bytes);
  }
  const double total = total_us();
  std::vector<OpProfile> out;
  for (auto& [name, o] : m) {
    o.share = total > 0 ? o.time_us / total : 0;
    o.distance = o.floor_us > 0 ? o.time_us / o.floor_us : 0;
    out.push_back(o);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const OpProfile& a, const OpProfile& b) { return a.time_us > b.time_us; });
  return out;
}

std::string Profile::to_text(bool per_step) const {
  std::string s;
  std::map<std::string, int> functions;
  for (const ProfileRun& r : runs) functions[r.function] += 1;
  s += "kiln profile: " + std::to_string(runs.size()) + " run" + (runs.size() == 1 ? "" : "s");
  s += runs.empty() ? " recorded (no graph function ran while the profiler was active)\n" : "\n";
  for (const auto& [f, n] : functions) s += "  " + std::to_string(n) + " x " + f + "\n";
  if (runs.empty()) return s;
  const double total = total_us(), steps = steps_us();
  double floor_total = 0;
  for (const ProfileEvent& e : events) floor_total += floor_us(peak, e.flops, e.bytes);
  const double n = static_cast<double>(runs.size());
  s += "time " + fmt("%.3f ms", total * 1e-3) + " (" + fmt("%.3f ms", total * 1e-3 / n) +
       " per run), in steps " + fmt("%.1f%%", total > 0 ? 100 * steps / total : 0) + "; floor " +
       fmt("%.3f ms", floor_total * 1e-3 / n) + " per run (" +
       distance_str(floor_total > 0 ? total / floor_total : 0) + ")\n";
  s += "peak at " + std::to_string(peak.threads) + " thread" + (peak.threads == 1 ? "" : "s") +
       ": " + fmt("%.1f", peak.fp32_gflops) + " GFLOP/s fp32 (" + peak.fp32_kernel + "), " +
       fmt("%.1f", peak.read_gbs) + " GB/s read; floor = max(FLOPs/peak, bytes/bandwidth)\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-28s %7s %11s %7s %9s %8s %11s %8s\n", "op", "calls",
                "time ms", "share", "GFLOP/s", "GB/s", "floor ms", "x floor");
  s += line;
  for (const OpProfile& o : by_op()) {
    std::snprintf(line, sizeof line, "%-28s %7lld %11.3f %6.1f%% %9.2f %8.2f %11.4f %8s\n",
                  o.op.c_str(), static_cast<long long>(o.calls), o.time_us * 1e-3, 100 * o.share,
                  o.gflops(), o.gbs(), o.floor_us * 1e-3, distance_str(o.distance).c_str());
    s += line;
  }
  std::snprintf(line, sizeof line, "%-28s %7s %11.3f %6.1f%%\n", "(binding, copies)", "",
                (total - steps) * 1e-3, total > 0 ? 100 * (total - steps) / total : 0);
  s += line;
  if (!per_step) return s;
  // The first run's plan, each step averaged over the runs of the same plan.
  const ProfileRun& first = runs[0];
  std::vector<double> time(first.num_events, 0);
  int same = 0;
  for (const ProfileRun& r : runs) {
    if (r.function != first.function || r.num_events != first.num_events) continue;
    ++same;
    for (int k = 0; k < r.num_events; ++k) time[k] += events[r.first_event + k].dur_us;
  }
  s += "\nsteps of " + first.function + " (mean of " + std::to_string(same) + " run" +
       (same == 1 ? "" : "s") + ")\n";
  std::snprintf(line, sizeof line, "%5s %-26s %10s %10s %10s %8s  %s\n", "step", "op", "time us",
                "FLOPs", "bytes", "x floor", "outputs <- inputs");
  s += line;
  for (int k = 0; k < first.num_events; ++k) {
    const ProfileEvent& e = events[first.first_event + k];
    const double t = time[k] / same, fl = floor_us(peak, e.flops, e.bytes);
    std::string io;
    for (const std::string& o : e.outputs) io += (io.empty() ? "" : ", ") + o;
    io += " <- ";
    for (size_t j = 0; j < e.inputs.size(); ++j) io += (j ? ", " : "") + e.inputs[j];
    std::snprintf(line, sizeof line, "%5d %-26s %10.1f %10s %10s %8s  ", k, e.op.c_str(), t,
                  count_str(static_cast<double>(e.flops)).c_str(),
                  count_str(static_cast<double>(e.bytes)).c_str(),
                  distance_str(fl > 0 ? t / fl : 0).c_str());
    s += line + io + "\n";
  }
  return s;
}

std::string Profile::to_json() const {
  nlohmann::json j;
  j["peak"] = {{"threads", peak.threads},
               {"fp32_gflops", peak.fp32_gflops},
               {"read_gbs", peak.read_gbs},
               {"fp32_kernel", peak.fp32_kernel}};
  j["total_us"] = total_us();
  j["steps_us"] = steps_us();
  j["runs"] = nlohmann::json::array();
  for (const ProfileRun& r : runs) {
    j["runs"].push_back({{"function", r.function},
                         {"start_us", r.start_us},
                         {"dur_us", r.dur_us},
                         {"first_event", r.first_event},
                         {"num_events", r.num_events},
                         {"threads", r.threads}});
  }
  j["ops"] = nlohmann::json::array();
  for (const OpProfile& o : by_op()) {
    j["ops"].push_back({{"op", o.op},
                        {"calls", o.calls},
                        {"time_us", o.time_us},
                        {"share", o.share},
                        {"flops", o.flops},
                        {"bytes", o.bytes},
                        {"gflops", o.gflops()},
                        {"gbs", o.gbs()},
                        {"floor_us", o.floor_us},
                        {"distance", o.distance}});
  }
  j["events"] = nlohmann::json::array();
  for (const ProfileEvent& e : events) {
    j["events"].push_back({{"run", e.run},
                           {"step", e.step},
                           {"op", e.op},
                           {"attrs", e.attrs},
                           {"inputs", e.inputs},
                           {"outputs", e.outputs},
                           {"flops", e.flops},
                           {"bytes", e.bytes},
                           {"start_us", e.start_us},
                           {"dur_us", e.dur_us},
                           {"threads", e.threads}});
  }
  return j.dump(1);
}

void Profile::write_chrome_trace(const std::string& path, int first_run, int num_runs) const {
  const int n = static_cast<int>(runs.size());
  if (num_runs < 0) num_runs = n - first_run;
  if (first_run < 0 || num_runs < 0 || first_run + num_runs > n || (n > 0 && num_runs == 0)) {
    throw ValueError("write_chrome_trace: runs [" + std::to_string(first_run) + ", " +
                     std::to_string(first_run + num_runs) + ") are not in the profile's " +
                     std::to_string(n) + " runs");
  }
  nlohmann::json trace = nlohmann::json::array();
  // Small thread ids for the viewer, in order of appearance.
  std::map<uint64_t, int> tids;
  for (int k = first_run; k < first_run + num_runs; ++k) {
    const ProfileRun& r = runs[k];
    const int tid = tids.emplace(r.thread_id, static_cast<int>(tids.size()) + 1).first->second;
    trace.push_back({{"name", r.function},
                     {"cat", "run"},
                     {"ph", "X"},
                     {"ts", r.start_us},
                     {"dur", r.dur_us},
                     {"pid", 1},
                     {"tid", tid},
                     {"args", {{"run", k}, {"steps", r.num_events}, {"threads", r.threads}}}});
    for (int s = 0; s < r.num_events; ++s) {
      const ProfileEvent& e = events[r.first_event + s];
      trace.push_back({{"name", e.op},
                       {"cat", "step"},
                       {"ph", "X"},
                       {"ts", e.start_us},
                       {"dur", e.dur_us},
                       {"pid", 1},
                       {"tid", tid},
                       {"args",
                        {{"step", e.step},
                         {"attrs", e.attrs},
                         {"inputs", e.inputs},
                         {"outputs", e.outputs},
                         {"flops", e.flops},
                         {"bytes", e.bytes},
                         {"threads", e.threads}}}});
    }
  }
  nlohmann::json doc = {{"traceEvents", std::move(trace)}, {"displayTimeUnit", "ms"}};
  atomic_write_file(path, doc.dump());
}

// ---- Profiler --------------------------------------------------------------------------------

Profiler::Profiler(ProfilerOptions options) : options_(std::move(options)) {
  graph::start_recording();
}

Profiler::~Profiler() {
  if (active_) graph::stop_recording();
}

Profile Profiler::stop() {
  if (!active_) throw StateError("kiln::Profiler: stop() was already called");
  active_ = false;
  std::vector<graph::RunRecord> records = graph::stop_recording();
  MachinePeak peak = options_.peak;
  if (peak.fp32_gflops <= 0) {
    peak = machine_peak(num_threads());
  } else if (peak.fp32_kernel.empty()) {
    peak.fp32_kernel = "given";
  }
  return make_profile(std::move(records), peak);
}

Profile profile(Function& f, const std::vector<Tensor>& args, const ProfileOptions& options) {
  if (options.steps < 1 || options.warmup < 0) {
    throw ValueError("kiln::profile: need steps >= 1 and warmup >= 0, got steps " +
                     std::to_string(options.steps) + ", warmup " + std::to_string(options.warmup));
  }
  for (int k = 0; k < options.warmup; ++k) f(args, options.training);
  Profiler p(options.profiler);
  for (int k = 0; k < options.steps; ++k) f(args, options.training);
  return p.stop();
}

}  // namespace kiln
