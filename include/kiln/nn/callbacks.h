// Training callbacks, Keras-style. fit() calls, in order: set_model(), on_train_begin(),
// then per epoch on_epoch_begin(), on_train_batch_end() after each optimizer step, and
// on_epoch_end() (with the epoch's logs: "loss",
// "accuracy", "val_loss", "val_accuracy", "seconds"), then on_train_end(). Setting
// stop_training in on_epoch_end() ends fit() after that epoch. Epochs are counted from 0.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "kiln/nn/variable.h"
#include "kiln/tensor.h"

namespace kiln {

class Layer;

// Metric name -> value, e.g. {"loss", 0.41}, {"val_accuracy", 0.87}.
using Logs = std::map<std::string, double>;

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(const Logs& logs) {}
  // `logs`: the last epoch's logs (empty when no epoch ran).
  virtual void on_train_end(const Logs& logs) {}
  virtual void on_epoch_begin(int epoch, const Logs& logs) {}
  virtual void on_epoch_end(int epoch, const Logs& logs) {}
  // After each training step's optimizer update (eager or graph mode): `batch` counts the
  // epoch's batches from 0; `logs` holds the step's "loss". Weights written here (an assign)
  // are what the next step reads.
  virtual void on_train_batch_end(int64_t batch, const Logs& logs) {}

  // The model being trained (set by fit() before on_train_begin; null outside fit()).
  void set_model(Layer* model) { model_ = model; }
  Layer* model() const { return model_; }

  // Set to true to stop fit() after the current epoch; fit() clears it when training begins.
  bool stop_training = false;

 private:
  Layer* model_ = nullptr;
};

// min: lower is better; max: higher is better; auto: max when the monitored name contains
// "acc", else min (Keras' rule).
enum class MonitorMode { kAuto, kMin, kMax };

// Stops training when `monitor` has not improved by more than `min_delta` for `patience`
// epochs in a row. With restore_best_weights, the model's weights are set back to those of the
// best epoch when training stops (or ends) after a later, worse epoch. Throws ValueError from
// on_epoch_end when `monitor` is not in the logs (naming it and the keys present), and from
// the constructor when patience < 0 or min_delta < 0.
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(std::string monitor = "val_loss", int patience = 0, double min_delta = 0.0,
                         MonitorMode mode = MonitorMode::kAuto, bool restore_best_weights = false);
  void on_train_begin(const Logs& logs) override;
  void on_epoch_end(int epoch, const Logs& logs) override;
  void on_train_end(const Logs& logs) override;

  // The epoch after which training was stopped, or -1.
  int stopped_epoch() const { return stopped_epoch_; }
  int best_epoch() const { return best_epoch_; }
  double best() const { return best_; }

 private:
  std::string monitor_;
  int patience_;
  double min_delta_;
  bool maximize_;
  bool restore_;
  int wait_ = 0, stopped_epoch_ = -1, best_epoch_ = -1;
  double best_ = 0;
  std::vector<Variable> weights_;
  std::vector<Tensor> best_values_;
};

// Saves the model's weights (save_weights, atomic) at the end of each epoch to `path`, in which
// "{epoch}" is replaced by the 1-based epoch number (as Keras names files). With
// save_best_only, saves only when `monitor` improved on the best value so far, so `path` always
// holds the best weights. Throws ValueError when save_best_only and `monitor` is missing from the
// logs, and kiln::Error when the file cannot be written.
class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(std::string path, std::string monitor = "val_loss",
                           bool save_best_only = false, MonitorMode mode = MonitorMode::kAuto);
  void on_train_begin(const Logs& logs) override;
  void on_epoch_end(int epoch, const Logs& logs) override;

  // The path written for `epoch` (0-based).
  std::string path_for(int epoch) const;
  // The best monitored value so far and the epochs saved, in order.
  double best() const { return best_; }
  const std::vector<int>& saved_epochs() const { return saved_; }

 private:
  std::string path_, monitor_;
  bool save_best_only_, maximize_;
  bool has_best_ = false;
  double best_ = 0;
  std::vector<int> saved_;
};

// Writes one CSV row per epoch to `path`: a header "epoch,<log keys sorted>" then the values
// (full precision), flushed each epoch so the file can be watched. With append, an existing
// file is continued without a second header. Throws kiln::Error when the file cannot be opened.
class CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string path, bool append = false, char separator = ',');
  void on_train_begin(const Logs& logs) override;
  void on_epoch_end(int epoch, const Logs& logs) override;
  void on_train_end(const Logs& logs) override;

 private:
  std::string path_;
  bool append_;
  char sep_;
  std::ofstream out_;
  std::vector<std::string> keys_;
  bool header_written_ = false;
};

}  // namespace kiln
