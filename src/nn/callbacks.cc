// EarlyStopping, ModelCheckpoint, CSVLogger.
#include "kiln/nn/callbacks.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "kiln/nn/checkpoint.h"
#include "kiln/nn/layer.h"

namespace kiln {
namespace {

bool resolve_maximize(MonitorMode mode, const std::string& monitor) {
  if (mode == MonitorMode::kAuto) return monitor.find("acc") != std::string::npos;
  return mode == MonitorMode::kMax;
}

double monitored(const char* who, const std::string& monitor, const Logs& logs) {
  auto it = logs.find(monitor);
  if (it == logs.end()) {
    std::string keys;
    for (const auto& [k, v] : logs) keys += (keys.empty() ? "" : ", ") + k;
    throw ValueError(std::string(who) + ": monitored value '" + monitor +
                     "' is not in the logs (present: " + keys + ")");
  }
  return it->second;
}

// Whether `v` beats `best` by more than `delta` in the monitored direction.
bool improves(double v, double best, double delta, bool maximize) {
  return maximize ? v - delta > best : v + delta < best;
}

}  // namespace

// ---- EarlyStopping ---------------------------------------------------------------------------

EarlyStopping::EarlyStopping(std::string monitor, int patience, double min_delta, MonitorMode mode,
                             bool restore_best_weights)
    : monitor_(std::move(monitor)),
      patience_(patience),
      min_delta_(std::abs(min_delta)),
      maximize_(resolve_maximize(mode, monitor_)),
      restore_(restore_best_weights) {
  if (patience < 0) {
    throw ValueError("EarlyStopping: patience must be >= 0, got " + std::to_string(patience));
  }
  if (min_delta < 0) {
    throw ValueError("EarlyStopping: min_delta must be >= 0, got " + std::to_string(min_delta));
  }
}

void EarlyStopping::on_train_begin(const Logs&) {
  wait_ = 0;
  stopped_epoch_ = best_epoch_ = -1;
  best_ = maximize_ ? -INFINITY : INFINITY;
  weights_.clear();
  best_values_.clear();
}

void EarlyStopping::on_epoch_end(int epoch, const Logs& logs) {
  double v = monitored("EarlyStopping", monitor_, logs);
  if (best_epoch_ < 0 || improves(v, best_, min_delta_, maximize_)) {
    best_ = v;
    best_epoch_ = epoch;
    wait_ = 0;
    if (restore_ && model()) {
      weights_ = model()->weights();
      best_values_.clear();
      for (const Variable& w : weights_) best_values_.push_back(w.value().clone());
    }
    return;
  }
  if (++wait_ >= std::max(patience_, 1)) {  // Keras: patience 0 and 1 both stop at once
    stopped_epoch_ = epoch;
    stop_training = true;
  }
}

void EarlyStopping::on_train_end(const Logs&) {
  // Keras restores only when training was stopped; restoring whenever a later epoch was worse
  // is what "best weights" means, so do it whenever the last epoch was not the best.
  if (!restore_ || best_values_.empty() || wait_ == 0) return;
  for (size_t i = 0; i < weights_.size(); ++i) weights_[i].assign(best_values_[i]);
}

// ---- ModelCheckpoint ---------------------------------------------------------------------------

ModelCheckpoint::ModelCheckpoint(std::string path, std::string monitor, bool save_best_only,
                                 MonitorMode mode)
    : path_(std::move(path)),
      monitor_(std::move(monitor)),
      save_best_only_(save_best_only),
      maximize_(resolve_maximize(mode, monitor_)) {
  if (path_.empty()) throw ValueError("ModelCheckpoint: empty path");
}

std::string ModelCheckpoint::path_for(int epoch) const {
  std::string p = path_;
  const std::string key = "{epoch}";
  for (size_t at = p.find(key); at != std::string::npos; at = p.find(key, at)) {
    std::string n = std::to_string(epoch + 1);
    p.replace(at, key.size(), n);
    at += n.size();
  }
  return p;
}

void ModelCheckpoint::on_train_begin(const Logs&) {
  has_best_ = false;
  saved_.clear();
}

void ModelCheckpoint::on_epoch_end(int epoch, const Logs& logs) {
  if (!model()) throw StateError("ModelCheckpoint: no model (use it through fit())");
  if (save_best_only_) {
    double v = monitored("ModelCheckpoint", monitor_, logs);
    if (has_best_ && !improves(v, best_, 0.0, maximize_)) return;
    has_best_ = true;
    best_ = v;
  }
  save_weights(*model(), path_for(epoch));
  saved_.push_back(epoch);
}

// ---- CSVLogger
// -----------------------------------------------------------------------------------

CSVLogger::CSVLogger(std::string path, bool append, char separator)
    : path_(std::move(path)), append_(append), sep_(separator) {}

void CSVLogger::on_train_begin(const Logs&) {
  bool continuing =
      append_ && std::filesystem::exists(path_) && std::filesystem::file_size(path_) > 0;
  out_.close();
  out_.clear();
  out_.open(path_, append_ ? std::ios::app : std::ios::trunc);
  if (!out_) throw Error("CSVLogger: cannot open " + path_ + " for writing");
  header_written_ = continuing;
  keys_.clear();
}

void CSVLogger::on_epoch_end(int epoch, const Logs& logs) {
  if (!out_.is_open()) throw StateError("CSVLogger: not started (use it through fit())");
  if (keys_.empty()) {
    for (const auto& [k, v] : logs) keys_.push_back(k);
  }
  if (!header_written_) {
    out_ << "epoch";
    for (const std::string& k : keys_) out_ << sep_ << k;
    out_ << "\n";
    header_written_ = true;
  }
  out_ << epoch;
  for (const std::string& k : keys_) {
    out_ << sep_;
    auto it = logs.find(k);
    if (it != logs.end()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", it->second);
      out_ << buf;
    }
  }
  out_ << "\n" << std::flush;
  if (!out_) throw Error("CSVLogger: writing " + path_ + " failed");
}

void CSVLogger::on_train_end(const Logs&) { out_.close(); }

}  // namespace kiln
