// fit / evaluate / predict, and the progress display.
#include "kiln/nn/training.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kiln/autograd.h"
#include "kiln/cache.h"
#include "kiln/function.h"
#include "kiln/nn/layer.h"
#include "kiln/nn/metrics.h"
#include "nn/gradient_sync.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// "1.2s", "2m05s", "1h02m".
std::string fmt_duration(double s) {
  if (s < 60) return fmt(s < 10 ? "%.1fs" : "%.0fs", s);
  long t = std::lround(s);
  char buf[32];
  if (t < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  }
  return buf;
}

// " - loss: 0.4123 - accuracy: 0.8512" for the keys present, in Keras' order.
std::string fmt_metrics(const Logs& logs) {
  std::string r;
  for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy"}) {
    auto it = logs.find(k);
    if (it != logs.end()) r += std::string(" - ") + k + ": " + fmt("%.4f", it->second);
  }
  return r;
}

// Per-epoch display: a bar redrawn with '\r' at most 10 times a second, or one line per epoch.
class Progress {
 public:
  Progress(const FitOptions& o)
      : out_(o.out ? *o.out : std::cout), verbose_(o.verbose), epochs_(o.epochs) {
    bool tty = (o.out == nullptr || o.out == &std::cout) && isatty(STDOUT_FILENO);
    bar_ = verbose_ == 1 && o.progress_bar.value_or(tty);
  }

  void begin_epoch(int epoch, int64_t total_steps) {
    epoch_ = epoch;
    total_ = total_steps;
    width_ = 0;
    last_draw_ = Clock::time_point{};
    start_ = Clock::now();
    if (bar_) out_ << "Epoch " << epoch + 1 << "/" << epochs_ << "\n" << std::flush;
  }

  void step(int64_t step, const Logs& logs) {
    // The last step is drawn by end_epoch(), with the epoch's final logs.
    if (!bar_ || step >= total_) return;
    Clock::time_point now = Clock::now();
    if (step > 1 && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    double elapsed = seconds_since(start_);
    double eta = step > 0 ? elapsed / step * std::max<int64_t>(0, total_ - step) : 0;
    draw(step, fmt_duration(elapsed) + " ETA " + fmt_duration(eta) + fmt_metrics(logs));
  }

  void end_epoch(int64_t steps, const Logs& logs) {
    if (verbose_ == 0) return;
    double secs = logs.count("seconds") ? logs.at("seconds") : seconds_since(start_);
    if (bar_) {
      draw(steps, fmt_duration(secs) + fmt("  %.0fms/step", steps ? 1e3 * secs / steps : 0.0) +
                      fmt_metrics(logs));
      out_ << "\n" << std::flush;
    } else {
      out_ << "Epoch " << epoch_ + 1 << "/" << epochs_ << " - " << fmt("%.2fs", secs)
           << fmt_metrics(logs) << "\n"
           << std::flush;
    }
  }

 private:
  void draw(int64_t step, const std::string& tail) {
    constexpr int kBar = 30;
    std::string digits = std::to_string(total_);
    std::string line =
        std::string(digits.size() - std::min(digits.size(), std::to_string(step).size()), ' ') +
        std::to_string(step) + "/" + digits + " [";
    int filled = total_ > 0 ? static_cast<int>(kBar * step / total_) : kBar;
    for (int i = 0; i < kBar; ++i) {
      line += i < filled ? '=' : (i == filled ? '>' : '.');
    }
    line += "] " + tail;
    size_t w = line.size();
    if (line.size() < width_) line += std::string(width_ - line.size(), ' ');  // clear leftovers
    width_ = w;
    out_ << "\r" << line << std::flush;
  }

  std::ostream& out_;
  int verbose_, epochs_, epoch_ = 0;
  bool bar_ = false;
  int64_t total_ = 0;
  size_t width_ = 0;
  Clock::time_point start_, last_draw_;
};

// How many rows of `logits` have their argmax at the label: one step's accuracy as a count.
double correct_count(const Tensor& labels, const Tensor& logits) {
  Accuracy acc;
  acc.update(labels, logits);
  return std::round(acc.result() * static_cast<double>(logits.dim(0)));
}

// Builds `model` for inputs shaped like `x` (batch of one) unless it is built: graph mode
// builds before tracing, so no variable is created inside a trace.
void build_for(Layer& model, const Tensor& x) {
  if (model.built()) return;
  Shape one = x.shape();
  if (one.rank() > 0) one[0] = 1;
  model.output_shape(one);
}

// model(x) and loss(y, model(x)) as a traced function: {loss, predictions}.
Function make_eval_function(Layer& model, const Loss& loss) {
  return Function(
      [&model, &loss](const std::vector<Tensor>& a, bool) {
        Tensor pred = model(a[0], /*training=*/false);
        return std::vector<Tensor>{loss(a[1], pred), pred};
      },
      {.name = "eval_step"});
}

// Loss and accuracy over a dataset without a tape: shared by evaluate() and validation.
// `graph`: run each batch through this traced function instead of eagerly.
Logs run_evaluation(Layer& model, const Loss& loss, const Dataset& data, bool accuracy,
                    Function* graph = nullptr) {
  Mean loss_mean("loss");
  Accuracy acc;
  DatasetIterator it = data.begin_epoch(0);
  while (std::optional<Batch> b = it.next()) {
    Tensor pred, l;
    if (graph) {
      build_for(model, b->x);
      std::vector<Tensor> r = (*graph)({b->x, b->y});
      l = r[0];
      pred = r[1];
    } else {
      pred = model(b->x, /*training=*/false);
      l = loss(b->y, pred);
    }
    loss_mean.update(l.item<double>(), static_cast<double>(b->x.dim(0)));
    if (accuracy) acc.update(b->y, pred);
  }
  if (loss_mean.total_weight() == 0) throw ValueError("evaluate: the dataset yielded no examples");
  Logs logs{{"loss", loss_mean.result()}};
  if (accuracy) logs["accuracy"] = acc.result();
  return logs;
}

}  // namespace

const std::vector<double>& History::operator[](const std::string& key) const {
  auto it = history.find(key);
  if (it == history.end()) {
    std::string keys;
    for (const auto& [k, v] : history) keys += (keys.empty() ? "" : ", ") + k;
    throw ValueError("History: no key '" + key + "' (present: " + keys + ")");
  }
  return it->second;
}

// The parts of fit() that differ in data-parallel training: the shard each rank reads, the
// weights broadcast before the first step, and one step's gradients and logs.
class StepRunner {
 public:
  StepRunner(const FitOptions& options, const Dataset& train)
      : data_(train), graph_(options.graph) {
    if (!options.distributed) return;
    detail::GradientSyncFactory make = detail::gradient_sync_factory();
    if (!make) {
      throw StateError(
          "fit: FitOptions::distributed needs kiln::distributed::init() first "
          "(kiln/distributed.h)");
    }
    sync_ = make();
    data_ = train.shard(sync_->world_size(), sync_->rank());
  }

  const Dataset& data() const { return data_; }
  // Rank 0, or the only process: the one that prints and runs callbacks.
  bool lead() const { return !sync_ || sync_->rank() == 0; }
  bool any(bool flag) { return sync_ ? sync_->any(flag) : flag; }

  // One step on batch b: forward and backward under a tape, gradients (averaged over the global
  // batch when distributed), optimizer update. `refresh` re-reads the trainable variables.
  // Returns the step's examples, mean loss and accuracy.
  detail::GradientSync::Totals step(Layer& model, Optimizer& optimizer, const Loss& loss,
                                    const Batch& b, bool refresh, bool accuracy) {
    const int64_t rows = b.x.dim(0);
    if (sync_ && !broadcast_done_) {
      // Build before the first forward pass so that every rank starts from rank 0's weights.
      if (!model.built()) {
        Shape one = b.x.shape();
        one[0] = 1;
        model.output_shape(one);
      }
      sync_->broadcast(model.weights());
      broadcast_done_ = true;
    }
    std::vector<Tensor> grads;
    detail::GradientSync::Totals t{static_cast<double>(rows), 0, 0};
    if (graph_ && (rows > 0 || !sync_)) {
      build_for(model, b.x);
      if (refresh || vars_.empty()) read_variables(model);
      if (!step_fn_ || traced_vars_ != vars_) {
        step_fn_ = std::make_unique<Function>(make_step(model, optimizer, loss),
                                              FunctionOptions{.name = "train_step"});
        traced_vars_ = vars_;
      }
      std::vector<Tensor> r = (*step_fn_)({b.x, b.y}, /*training=*/true);
      t.loss = r[0].item<double>();
      if (accuracy) {
        t.correct = correct_count(b.y, r[1]);
      }
      if (!sync_) return t;  // the update ran inside the graph
      sync_->begin_step(vars_, rows, t.loss, t.correct);
      for (size_t k = vars_.size(); k-- > 0;) sync_->gradient_ready(k, r[2 + k]);
    } else if (rows > 0 || !sync_) {
      GradientTape tape;
      Tensor logits = model(b.x, /*training=*/true);
      Tensor l = loss(b.y, logits);
      tape.stop_recording();
      if (refresh || vars_.empty()) read_variables(model);  // after a lazy build by the call
      t.loss = l.item<double>();
      if (accuracy) {
        t.correct = correct_count(b.y, logits);
      }
      if (!sync_) {
        grads = tape.gradient(l, sources_);
      } else {
        sync_->begin_step(vars_, rows, t.loss, t.correct);
        tape.gradient(l, sources_,
                      [this](size_t k, const Tensor& g) { sync_->gradient_ready(k, g); });
      }
    } else {
      // An empty part of a global batch smaller than the world: contribute zeros.
      if (refresh || vars_.empty()) read_variables(model);
      sync_->begin_step(vars_, 0, 0, 0);
      for (size_t k = 0; k < vars_.size(); ++k) sync_->gradient_ready(k, zeros_like(sources_[k]));
    }
    if (sync_) grads = sync_->finish_step(&t);
    optimizer.apply_gradients(vars_, grads);
    return t;
  }

 private:
  Dataset data_;
  std::unique_ptr<detail::GradientSync> sync_;
  bool broadcast_done_ = false;
  std::vector<Variable> vars_;
  std::vector<Tensor> sources_;
  bool graph_ = false;
  std::unique_ptr<Function> step_fn_;  // graph mode: the traced step
  std::vector<Variable> traced_vars_;  // the trainable set step_fn_ was traced for

  // The traced step: {loss, logits} after the update (single process), or {loss, logits,
  // gradients...} for the all-reduce to average before the update (distributed).
  Function::Callable make_step(Layer& model, Optimizer& optimizer, const Loss& loss) {
    return [this, &model, &optimizer, &loss](const std::vector<Tensor>& a, bool) {
      GradientTape tape;
      Tensor logits = model(a[0], /*training=*/true);
      Tensor l = loss(a[1], logits);
      tape.stop_recording();
      std::vector<Tensor> grads = tape.gradient(l, sources_);
      std::vector<Tensor> out{l, logits};
      if (sync_) {
        for (size_t k = 0; k < grads.size(); ++k) {
          out.push_back(grads[k].defined() ? grads[k] : zeros_like(sources_[k]));
        }
      } else {
        optimizer.apply_gradients(vars_, grads);
      }
      return out;
    };
  }

  void read_variables(Layer& model) {
    vars_ = model.trainable_weights();
    sources_.clear();
    for (const Variable& v : vars_) sources_.push_back(v.value());
  }
};

History fit(Layer& model, Optimizer& optimizer, const Loss& loss, const Dataset& train,
            const FitOptions& options) {
  if (options.initial_epoch < 0 || options.epochs < options.initial_epoch) {
    throw ValueError("fit: need 0 <= initial_epoch <= epochs, got initial_epoch " +
                     std::to_string(options.initial_epoch) + " and epochs " +
                     std::to_string(options.epochs));
  }
  StepRunner runner(options, train);
  // Only the lead process prints and runs callbacks (checkpoints, metrics files).
  FitOptions shown = options;
  if (!runner.lead()) shown.verbose = 0;
  const std::vector<std::shared_ptr<Callback>> no_callbacks;
  const auto& callbacks = runner.lead() ? options.callbacks : no_callbacks;
  History history;
  Progress progress(shown);
  for (const auto& cb : callbacks) {
    cb->set_model(&model);
    cb->stop_training = false;
  }
  for (const auto& cb : callbacks) cb->on_train_begin({});

  Logs logs;
  std::unique_ptr<Function> eval_fn;  // graph mode: validation's traced function
  for (int epoch = options.initial_epoch; epoch < options.epochs; ++epoch) {
    for (const auto& cb : callbacks) cb->on_epoch_begin(epoch, {});
    Mean loss_mean("loss");
    double correct = 0, examples = 0;  // accuracy over the epoch
    progress.begin_epoch(epoch, runner.data().num_batches());
    Clock::time_point t0 = Clock::now();
    int64_t steps = 0;
    DatasetIterator it = runner.data().begin_epoch(epoch);
    while (std::optional<Batch> b = it.next()) {
      // The trainable set can change between epochs (set_trainable) or appear on the first
      // call (lazy build); read it once per epoch.
      detail::GradientSync::Totals t =
          runner.step(model, optimizer, loss, *b, steps == 0, options.accuracy);
      loss_mean.update(t.loss, t.examples);
      correct += t.correct;
      examples += t.examples;
      if (!callbacks.empty()) {
        const Logs batch_logs{{"loss", t.loss}};
        for (const auto& cb : callbacks) cb->on_train_batch_end(steps, batch_logs);
      }
      ++steps;
      if (shown.verbose == 1) {
        Logs running{{"loss", loss_mean.result()}};
        if (options.accuracy) running["accuracy"] = examples > 0 ? correct / examples : 0.0;
        progress.step(steps, running);
      }
    }
    double seconds = seconds_since(t0);
    if (steps == 0) throw ValueError("fit: the training dataset yielded no batches");
    logs = Logs{{"loss", loss_mean.result()}, {"seconds", seconds}};
    if (options.accuracy) logs["accuracy"] = examples > 0 ? correct / examples : 0.0;
    if (options.validation) {
      if (options.graph && !eval_fn) {
        eval_fn = std::make_unique<Function>(make_eval_function(model, loss));
      }
      for (const auto& [k, v] :
           run_evaluation(model, loss, *options.validation, options.accuracy, eval_fn.get())) {
        logs["val_" + k] = v;
      }
    }
    progress.end_epoch(steps, logs);
    history.epochs.push_back(epoch);
    for (const auto& [k, v] : logs) history.history[k].push_back(v);
    bool stop = false;
    for (const auto& cb : callbacks) {
      cb->on_epoch_end(epoch, logs);
      stop = stop || cb->stop_training;
    }
    if (runner.any(stop)) break;
  }
  for (const auto& cb : callbacks) cb->on_train_end(logs);
  for (const auto& cb : callbacks) cb->set_model(nullptr);
  return history;
}

History fit(Layer& model, Optimizer& optimizer, const Loss& loss, const Tensor& x, const Tensor& y,
            const FitOptions& options) {
  Dataset ds(x, y);
  if (options.shuffle_seed) ds = ds.shuffle(*options.shuffle_seed);
  return fit(model, optimizer, loss, ds.batch(options.batch_size), options);
}

Logs evaluate(Layer& model, const Loss& loss, const Dataset& data, bool accuracy, bool graph) {
  if (!graph) return run_evaluation(model, loss, data, accuracy);
  Function f = make_eval_function(model, loss);
  return run_evaluation(model, loss, data, accuracy, &f);
}

namespace {
// Copies each batch's output into one preallocated [N, ...] tensor.
class Collector {
 public:
  explicit Collector(int64_t n) : n_(n) {}
  void add(const Tensor& pred) {
    if (!out_.defined()) {
      Shape s = pred.shape();
      if (s.rank() == 0) throw ShapeError("predict: the model returned a rank-0 tensor");
      s[0] = n_;
      out_ = empty(s, pred.dtype());
    }
    int64_t rows = pred.dim(0);
    if (filled_ + rows > n_) {
      throw ShapeError("predict: the model returned more rows than examples (" +
                       std::to_string(filled_ + rows) + " > " + std::to_string(n_) + ")");
    }
    Tensor dst = out_.rows(filled_, filled_ + rows);
    dst.copy_from(pred);  // ShapeError if the per-example shape changed between batches
    filled_ += rows;
  }
  Tensor result() const {
    if (!out_.defined()) throw ValueError("predict: no examples");
    return filled_ == n_ ? out_ : out_.rows(0, filled_);
  }

 private:
  int64_t n_, filled_ = 0;
  Tensor out_;
};
}  // namespace

namespace {
// The model's inference as a traced function (graph mode of predict), one per live model:
// kept in a per-instance cache, so every predict(..., graph = true) of a model reuses its
// traces, and the function (which refers to the model) dies with the model.
std::shared_ptr<Function> predict_function(Layer& model) {
  static CachedPerInstance<std::shared_ptr<Function>> cache(
      "predict: the model's traced inference");
  return cache.get(model.cache_token(), [&model] {
    return std::make_shared<Function>(
        [&model](const std::vector<Tensor>& a, bool) {
          return std::vector<Tensor>{model(a[0], /*training=*/false)};
        },
        FunctionOptions{.name = "predict_step"});
  });
}
}  // namespace

Tensor predict(Layer& model, const Tensor& x, int64_t batch_size, bool graph) {
  if (batch_size < 1) {
    throw ValueError("predict: batch_size must be >= 1, got " + std::to_string(batch_size));
  }
  if (!x.defined() || x.rank() == 0) throw ShapeError("predict: x must be [N, ...]");
  Collector c(x.dim(0));
  std::shared_ptr<Function> f;
  if (graph) f = predict_function(model);
  for (int64_t b = 0; b < x.dim(0); b += batch_size) {
    Tensor part = x.rows(b, std::min(x.dim(0), b + batch_size));
    if (f) build_for(model, part);
    c.add(f ? (*f)(part) : model(part, /*training=*/false));
  }
  return c.result();
}

Tensor predict(Layer& model, const Dataset& data, bool graph) {
  Collector c(data.num_examples());
  std::shared_ptr<Function> f;
  if (graph) f = predict_function(model);
  DatasetIterator it = data.begin_epoch(0);
  while (std::optional<Batch> b = it.next()) {
    if (f) build_for(model, b->x);
    c.add(f ? (*f)(b->x) : model(b->x, /*training=*/false));
  }
  return c.result();
}

}  // namespace kiln
