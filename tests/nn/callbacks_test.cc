// EarlyStopping, ModelCheckpoint and CSVLogger, driven directly and through fit().
#include "kiln/nn/callbacks.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kiln/io.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/training.h"
#include "kiln/nn/variable_store.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::expect_error;
using testing::TempDir;
namespace fs = std::filesystem;

// A file name in a per-process directory, removed at exit.
std::string temp_path(const std::string& name) {
  static const TempDir temp("kiln_callbacks_test_");
  return temp.path(name);
}

std::shared_ptr<Sequential> small_model(VariableStore& store) {
  auto m = std::make_shared<Sequential>("cbnet");
  DenseOptions o;
  o.name = "out";
  m->emplace<Dense>(2, o);
  m->set_store(store);
  m->output_shape({1, 3});
  return m;
}

// Feeds `values` of `key` to cb as epochs 0, 1, ...; returns the epochs run before a stop.
int drive(Callback& cb, const std::string& key, const std::vector<double>& values) {
  cb.stop_training = false;
  cb.on_train_begin({});
  int run = 0;
  for (double v : values) {
    cb.on_epoch_end(run++, {{key, v}});
    if (cb.stop_training) break;
  }
  cb.on_train_end({});
  return run;
}

TEST(EarlyStopping, PatienceAndMinDeltaLikeKeras) {
  EarlyStopping p0("val_loss", 0);
  EXPECT_EQ(drive(p0, "val_loss", {1.0, 0.9, 0.95, 0.5}), 3);
  EXPECT_EQ(p0.stopped_epoch(), 2);
  EXPECT_EQ(p0.best_epoch(), 1);
  EXPECT_DOUBLE_EQ(p0.best(), 0.9);

  EarlyStopping p2("val_loss", 2);
  EXPECT_EQ(drive(p2, "val_loss", {1.0, 1.1, 0.9, 0.95, 0.99, 0.1}), 5);

  EarlyStopping delta("loss", 1, 0.1);  // 0.95 is not better than 1.0 by more than 0.1
  EXPECT_EQ(drive(delta, "loss", {1.0, 0.95, 0.5}), 2);

  EarlyStopping never("loss", 1);
  EXPECT_EQ(drive(never, "loss", {3, 2, 1}), 3);
  EXPECT_EQ(never.stopped_epoch(), -1);
}

TEST(EarlyStopping, AccuracyIsMaximizedInAutoMode) {
  EarlyStopping acc("val_accuracy", 0);
  EXPECT_EQ(drive(acc, "val_accuracy", {0.5, 0.6, 0.55}), 3);
  EXPECT_DOUBLE_EQ(acc.best(), 0.6);
  EarlyStopping forced_min("val_accuracy", 0, 0, MonitorMode::kMin);
  EXPECT_EQ(drive(forced_min, "val_accuracy", {0.5, 0.6}), 2);
}

TEST(EarlyStopping, RestoresBestWeights) {
  VariableStore store(1);
  auto model = small_model(store);
  Variable k = model->weights()[0];
  EarlyStopping es("loss", 0, 0, MonitorMode::kAuto, true);
  es.set_model(model.get());
  es.on_train_begin({});
  k.assign(full(k.shape(), 1.0));
  es.on_epoch_end(0, {{"loss", 1.0}});
  k.assign(full(k.shape(), 2.0));
  es.on_epoch_end(1, {{"loss", 2.0}});
  EXPECT_TRUE(es.stop_training);
  es.on_train_end({});
  EXPECT_TRUE(testing::all_close(k.value(), full(k.shape(), 1.0), 0, 0));
}

TEST(EarlyStopping, Errors) {
  EarlyStopping es("val_loss");
  es.on_train_begin({});
  expect_error<ValueError>(
      [&] {
        es.on_epoch_end(0, {{"loss", 1}, {"accuracy", 0.5}});
      },
      {"EarlyStopping", "val_loss", "loss", "accuracy"});
  expect_error<ValueError>([] { EarlyStopping("loss", -1); }, {"patience", "-1"});
  expect_error<ValueError>([] { EarlyStopping("loss", 1, -0.5); }, {"min_delta"});
}

TEST(EarlyStopping, StopsFitWhenTheLossStalls) {
  VariableStore store(1);
  auto model = small_model(store);
  Tensor x = random_normal({8, 3}, 0, 1, 1);
  Tensor y = zeros({8}, int32);
  FitOptions o;
  o.epochs = 10;
  o.verbose = 0;
  auto es = std::make_shared<EarlyStopping>("loss", 1, 1e-6);  // shuffling reorders sums
  o.callbacks = {es};
  SGD frozen(0.0);  // learning rate 0: the loss never improves after epoch 0
  History h = fit(*model, frozen, SparseCategoricalCrossentropy(), x, y, o);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(es->stopped_epoch(), 1);
}

TEST(ModelCheckpoint, SavesEveryEpochWithEpochNumbersInThePath) {
  VariableStore store(1);
  auto model = small_model(store);
  Tensor x = random_normal({8, 3}, 0, 1, 1);
  Tensor y = zeros({8}, int32);
  FitOptions o;
  o.epochs = 3;
  o.verbose = 0;
  auto ck = std::make_shared<ModelCheckpoint>(temp_path("ck_{epoch}.safetensors"), "loss");
  o.callbacks = {ck};
  SGD opt(0.1);
  fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  EXPECT_EQ(ck->saved_epochs(), (std::vector<int>{0, 1, 2}));
  for (int e = 1; e <= 3; ++e) {
    EXPECT_TRUE(fs::exists(temp_path("ck_" + std::to_string(e) + ".safetensors")));
  }
  // The last file holds the final weights.
  SafetensorsFile f = load_safetensors(temp_path("ck_3.safetensors"));
  EXPECT_TRUE(testing::all_close(f.at("0/kernel"), model->weights()[0].value(), 0, 0));
}

TEST(ModelCheckpoint, SaveBestOnlyKeepsTheBest) {
  VariableStore store(1);
  auto model = small_model(store);
  Variable k = model->weights()[0];
  std::string path = temp_path("best.safetensors");
  ModelCheckpoint ck(path, "val_accuracy", /*save_best_only=*/true);
  ck.set_model(model.get());
  ck.on_train_begin({});
  const std::vector<double> acc = {0.5, 0.7, 0.6, 0.8, 0.8};
  for (int e = 0; e < 5; ++e) {
    k.assign(full(k.shape(), e));
    ck.on_epoch_end(e, {{"val_accuracy", acc[e]}});
  }
  EXPECT_EQ(ck.saved_epochs(), (std::vector<int>{0, 1, 3}));
  EXPECT_DOUBLE_EQ(ck.best(), 0.8);
  EXPECT_TRUE(
      testing::all_close(load_safetensors(path).at("0/kernel"), full(k.shape(), 3.0), 0, 0));
  expect_error<ValueError>(
      [&] {
        ck.on_epoch_end(5, {{"loss", 1}});
      },
      {"ModelCheckpoint", "val_accuracy", "loss"});
  ModelCheckpoint orphan(path);
  expect_error<StateError>([&] { orphan.on_epoch_end(0, {}); }, {"ModelCheckpoint"});
  expect_error<ValueError>([] { ModelCheckpoint(""); }, {"empty path"});
}

TEST(CSVLogger, WritesAHeaderAndOneRowPerEpoch) {
  VariableStore store(1);
  auto model = small_model(store);
  Tensor x = random_normal({8, 3}, 0, 1, 1);
  Tensor y = zeros({8}, int32);
  std::string path = temp_path("log.csv");
  FitOptions o;
  o.epochs = 3;
  o.verbose = 0;
  o.callbacks = {std::make_shared<CSVLogger>(path)};
  SGD opt(0.1);
  History h = fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  std::string csv = testing::read_file(path);
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "epoch,accuracy,loss,seconds");
  std::getline(lines, line);
  EXPECT_EQ(line.rfind("0,", 0), 0u) << line;
  // Full precision: the loss column parses back to the history value exactly.
  std::istringstream fields(line);
  std::string epoch, accuracy, loss;
  std::getline(fields, epoch, ',');
  std::getline(fields, accuracy, ',');
  std::getline(fields, loss, ',');
  EXPECT_EQ(std::stod(loss), h["loss"][0]);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);

  // Appending continues the file without a second header.
  o.epochs = 1;
  o.callbacks = {std::make_shared<CSVLogger>(path, /*append=*/true)};
  fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o);
  csv = testing::read_file(path);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
  EXPECT_EQ(csv.find("epoch", 1), std::string::npos);

  CSVLogger bad(temp_path("no_such_dir/log.csv"));
  expect_error<Error>([&] { bad.on_train_begin({}); }, {"CSVLogger", "no_such_dir/log.csv"});
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// Records on_train_batch_end calls and the weight it sees then.
class BatchRecorder : public Callback {
 public:
  void on_train_batch_end(int64_t batch, const Logs& logs) override {
    batches.push_back(batch);
    has_loss = has_loss && logs.count("loss") == 1;
    kernels.push_back(model()->weights()[0].value().clone());
  }
  std::vector<int64_t> batches;
  std::vector<Tensor> kernels;
  bool has_loss = true;
};

TEST(Callback, TrainBatchEndRunsAfterEachOptimizerStepInEagerAndGraphFit) {
  for (bool graph : {false, true}) {
    SCOPED_TRACE(graph ? "graph" : "eager");
    VariableStore store(3);
    auto model = small_model(store);
    const Tensor x = random_normal({10, 3}, 0, 1, 1);
    const Tensor y = from_vector<int32_t>({0, 1, 0, 1, 0, 1, 0, 1, 0, 1});
    const Tensor start = model->weights()[0].value().clone();
    SGD opt(0.1);
    SparseCategoricalCrossentropy loss;
    auto rec = std::make_shared<BatchRecorder>();
    FitOptions o;
    o.epochs = 2;
    o.batch_size = 4;  // 3 batches per epoch: 4, 4, 2
    o.verbose = 0;
    o.graph = graph;
    o.callbacks.push_back(rec);
    fit(*model, opt, loss, x, y, o);
    EXPECT_EQ(rec->batches, (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
    EXPECT_TRUE(rec->has_loss);
    // The first call already sees the first step's update.
    ASSERT_FALSE(rec->kernels.empty());
    EXPECT_GT(max(abs(sub(rec->kernels[0], start))).item<float>(), 0.f);
  }
}

}  // namespace
}  // namespace kiln
