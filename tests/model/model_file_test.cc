// Model files: round trips (architecture, weights bit for bit, optimizer state, frozen graph),
// graph-only files for models without a config, and every way a file can be wrong.
#include "kiln/model_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/io.h"
#include "kiln/nn.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;
using testing::TempDir;

std::shared_ptr<Sequential> bn_dropout_cnn() {
  auto m = std::make_shared<Sequential>("bn_cnn");
  m->emplace<Conv2D>(8, std::array<int64_t, 2>{3, 3},
                     Conv2DLayerOptions{.padding = Padding::kSame});
  m->emplace<BatchNormalization>();
  m->emplace<Activation>("relu");
  m->emplace<MaxPool2D>();
  m->emplace<Dropout>(0.25);
  m->emplace<Flatten>();
  m->emplace<Dense>(10);
  m->output_shape(Shape{1, 28, 28, 1});
  return m;
}

// A few Adam steps on random data, so weights, slots and BatchNormalization's statistics move.
void train_a_little(Layer& model, Optimizer& opt, int steps = 3) {
  SparseCategoricalCrossentropy loss;
  Tensor x = random_tensor({16, 28, 28, 1}, float32, 3, 0, 1);
  Tensor y = cast(random_tensor({16}, float32, 4, 0, 9.99), DType::kInt32);
  FitOptions fo;
  fo.epochs = steps;
  fo.batch_size = 16;
  fo.verbose = 0;
  fit(model, opt, loss, x, y, fo);
}

Tensor images(int64_t n) { return random_tensor({n, 28, 28, 1}, float32, 9, 0, 1); }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(ModelFile, RoundTripsArchitectureWeightsOptimizerAndGraph) {
  TempDir dir;
  for (auto make :
       {+[] { return make_mlp(); }, +[] { return make_cnn(); }, +[] { return bn_dropout_cnn(); }}) {
    std::shared_ptr<Sequential> model = make();
    Adam adam(1e-3);
    train_a_little(*model, adam);
    const std::string path = dir.path() + "/m.kiln";
    save_model(*model, path, {.optimizer = &adam, .training = {{"epochs_done", "3"}}});

    LoadedModel m = load_model(path);
    ASSERT_TRUE(m.model);
    ASSERT_TRUE(m.optimizer);
    ASSERT_FALSE(m.graph.empty());
    EXPECT_EQ(m.info.class_name, "Sequential");
    EXPECT_EQ(m.info.training.at("epochs_done"), "3");
    EXPECT_EQ(m.info.input_signature[0].dims, (std::vector<int64_t>{kUnknownDim, 28, 28, 1}));
    // Weights bit for bit, so predictions too.
    const std::vector<Variable> a = model->weights(), b = m.model->weights();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(same_bits(a[k].value(), b[k].value()));
    Tensor x = images(5);
    EXPECT_TRUE(same_bits((*m.model)(x, false), (*model)(x, false)));
    EXPECT_TRUE(same_bits(m.predict(x), freeze(*model)(x)));
    EXPECT_TRUE(all_close(m.predict(x), (*model)(x, false), 1e-5, 1e-5));
    // Optimizer: same step count and slots, so one more step lands on the same weights.
    EXPECT_EQ(m.optimizer->iterations(), adam.iterations());
    EXPECT_EQ(m.optimizer->name(), "adam");
    train_a_little(*model, adam, 1);
    train_a_little(*m.model, *m.optimizer, 1);
    for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(same_bits(a[k].value(), b[k].value()));
  }
}

TEST(ModelFile, FrozenGraphIsSharedWithWeightsOnDisk) {
  TempDir dir;
  auto model = make_mlp();
  const std::string with = dir.path() + "/with.kiln", without = dir.path() + "/without.kiln";
  save_model(*model, with);
  save_model(*model, without, {.frozen = false});
  // The frozen mlp's constants are its weights: stored once (safetensors aliases).
  const auto a = std::filesystem::file_size(with), b = std::filesystem::file_size(without);
  EXPECT_LT(a, b + b / 20) << a << " vs " << b;
  EXPECT_TRUE(load_model(without).graph.empty());
}

// A model class without a config: saved as its traced graph.
class Doubler : public Model {
 public:
  Doubler() : Model("doubler") { dense_ = &add_layer<Dense>(4); }

 protected:
  Tensor call(const Tensor& x, bool training) override { return (*dense_)(x, training) * 2.0; }

 private:
  Dense* dense_;
};

TEST(ModelFile, ModelWithoutConfigIsSavedAsItsGraph) {
  TempDir dir;
  Doubler model;
  model.output_shape(Shape{1, 3});
  const std::string path = dir.path() + "/d.kiln";
  save_model(model, path);
  LoadedModel m = load_model(path);
  EXPECT_FALSE(m.model);
  EXPECT_FALSE(m.info.has_config);
  Tensor x = random_tensor({7, 3});
  EXPECT_TRUE(all_close(m.predict(x), model(x, false)));
  expect_error<StateError>(
      [&] { m.trainable_model(); },
      {"'doubler'", "inference graph", "cannot be trained further", "KILN_REGISTER_LAYER"});
  Adam adam;
  expect_error<ValueError>([&] { save_model(model, path, {.optimizer = &adam}); },
                           {"no config", "optimizer state cannot be saved"});
}

// Rewrites `path` with `edit` applied to its safetensors metadata.
void edit_metadata(const std::string& path,
                   const std::function<void(std::map<std::string, std::string>&)>& edit) {
  SafetensorsFile f = load_safetensors(path);
  std::map<std::string, std::string> md = f.metadata;
  edit(md);
  save_safetensors(path, f.all(), md);
}

TEST(ModelFile, BadFilesGetOneErrorNamingFileAndField) {
  TempDir dir;
  auto model = make_mlp();
  Adam adam;
  train_a_little(*model, adam, 1);
  const std::string good = dir.path() + "/good.kiln";
  save_model(*model, good, {.optimizer = &adam});
  const std::string bad = dir.path() + "/bad.kiln";
  auto fresh = [&] {
    std::filesystem::copy_file(good, bad, std::filesystem::copy_options::overwrite_existing);
  };

  fresh();
  std::filesystem::resize_file(bad, std::filesystem::file_size(bad) - 100);
  expect_error<FormatError>([&] { load_model(bad); }, {bad});

  fresh();
  edit_metadata(bad, [](auto& md) { md["kiln.format_version"] = "7"; });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "format version 7", "newer"});

  fresh();
  edit_metadata(bad, [](auto& md) { md.erase("kiln.metadata"); });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "'kiln.metadata' is missing"});

  fresh();
  edit_metadata(bad, [](auto& md) { md["kiln.metadata"] = "{\"kiln_version\": 1"; });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "kiln.metadata", "not valid JSON"});

  fresh();
  edit_metadata(
      bad, [](auto& md) { md["kiln.metadata"] = std::string(200, '[') + std::string(200, ']'); });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "nests deeper"});

  fresh();
  edit_metadata(bad, [](auto& md) {
    nlohmann::json c = nlohmann::json::parse(md["kiln.config"]);
    c["config"]["layers"][1]["class_name"] = "Frobnicator";
    md["kiln.config"] = c.dump();
  });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "Frobnicator"});

  fresh();
  edit_metadata(bad, [](auto& md) {
    nlohmann::json g = nlohmann::json::parse(md["kiln.graph"]);
    g["nodes"][0]["op"] = "teleport";
    md["kiln.graph"] = g.dump();
  });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "unknown op \"teleport\""});

  // Ports that do not fit the graph (found by model_fuzz: the message lacked the file).
  fresh();
  edit_metadata(bad, [](auto& md) {
    nlohmann::json g = nlohmann::json::parse(md["kiln.graph"]);
    g["output_ports"][0]["shape"] = {nullptr, 4};
    md["kiln.graph"] = g.dump();
  });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "output 'output'", "[?, 4]"});

  fresh();
  edit_metadata(bad, [](auto& md) { md.erase("kiln.format"); });
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "not a kiln model file"});

  // A weights checkpoint is not a model file.
  save_weights(*model, bad);
  expect_error<FormatError>([&] { load_model(bad); }, {"not a kiln model file", "load_weights"});

  // Weights that do not fit the architecture.
  fresh();
  {
    SafetensorsFile f = load_safetensors(bad);
    std::vector<std::pair<std::string, Tensor>> t;
    for (auto& [name, v] : f.all()) t.emplace_back(name, name == "weights/1/bias" ? zeros({3}) : v);
    save_safetensors(bad, t, f.metadata);
  }
  expect_error<Error>([&] { load_model(bad); }, {bad, "[3]"});

  // An optimizer slot for no variable.
  fresh();
  {
    SafetensorsFile f = load_safetensors(bad);
    auto t = f.all();
    t.emplace_back("optimizer/9/kernel/m", zeros({2}));
    save_safetensors(bad, t, f.metadata);
  }
  expect_error<FormatError>([&] { load_model(bad); }, {bad, "optimizer/9/kernel/m", "no variable"});
}

TEST(ModelFile, FailedSaveLeavesTheOldFile) {
  TempDir dir;
  auto model = make_mlp();
  const std::string path = dir.path() + "/m.kiln";
  save_model(*model, path);
  const auto size = std::filesystem::file_size(path);
  Sequential unbuilt("unbuilt");
  unbuilt.emplace<Dense>(3);
  expect_error<StateError>([&] { save_model(unbuilt, path); }, {"'unbuilt'", "not built"});
  EXPECT_EQ(std::filesystem::file_size(path), size);
  EXPECT_NO_THROW(load_model(path));
}

}  // namespace
}  // namespace kiln
