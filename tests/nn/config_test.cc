// Layer configs: round trips of every built-in layer, Sequential, the built-in and example
// models, a registered subclassed model, shared weights, and every error path's message.
#include "kiln/nn/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

// Copies `from`'s weights into `to` (same architecture, same creation order).
void copy_weights(const Layer& from, Layer& to) {
  std::vector<Variable> a = from.weights(), b = to.weights();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) b[i].assign(a[i].value());
}

// Calls `layer` on `xs` (one input: a single-tensor call).
Tensor call_layer(Layer& layer, const std::vector<Tensor>& xs, bool training = false) {
  return xs.size() == 1 ? layer(xs[0], training) : layer(xs, training);
}

// serialize -> text -> deserialize: the same config, the same serialized form (build_config
// included), and the same outputs for the same weights. Returns the copy.
std::shared_ptr<Layer> expect_round_trip(const std::shared_ptr<Layer>& layer,
                                         const std::vector<Tensor>& xs, bool training = false) {
  VariableStore s1(3), s2(5);  // different seeds: equal outputs come from copied weights
  if (!layer->built()) layer->set_store(s1);  // a built model keeps its store
  Tensor y = call_layer(*layer, xs, training);
  const json serialized = serialize_layer(*layer);
  EXPECT_EQ(serialized["class_name"], layer->type_name());
  std::shared_ptr<Layer> copy = deserialize_layer(json::parse(serialized.dump()), &s2);
  EXPECT_TRUE(copy->built()) << layer->type_name() << ": the build_config builds it";
  EXPECT_EQ(copy->type_name(), layer->type_name());
  EXPECT_EQ(copy->name(), layer->name());
  EXPECT_EQ(copy->get_config(), layer->get_config()) << serialized.dump(2);
  EXPECT_EQ(serialize_layer(*copy), serialized);
  copy_weights(*layer, *copy);
  EXPECT_TRUE(all_close(call_layer(*copy, xs, training), y, 0, 0)) << layer->type_name();
  return copy;
}

std::filesystem::path example_configs() {
  // Tests run in the build tree, which lies inside the source tree.
  for (auto p = std::filesystem::current_path(); !p.empty(); p = p.parent_path()) {
    if (std::filesystem::exists(p / "examples/configs/mlp.json")) return p / "examples/configs";
    if (p == p.parent_path()) break;
  }
  ADD_FAILURE() << "examples/configs not found above " << std::filesystem::current_path();
  return {};
}

// ---- every built-in layer ------------------------------------------------------------------

TEST(LayerConfig, DenseRoundTripsWithKerasFields) {
  auto d = std::make_shared<Dense>(
      4, DenseOptions{.activation = "tanh",
                      .kernel_initializer = initializers::he_normal(),
                      .bias_initializer = initializers::random_uniform(-0.1, 0.2),
                      .name = "proj"});
  expect_round_trip(d, {random_tensor({2, 3}, float32, 1)});
  const json c = d->get_config();
  EXPECT_EQ(c["name"], "proj");
  EXPECT_EQ(c["trainable"], true);
  EXPECT_EQ(c["dtype"], "float32");
  EXPECT_EQ(c["units"], 4);
  EXPECT_EQ(c["activation"], "tanh");
  EXPECT_EQ(c["use_bias"], true);
  EXPECT_EQ(c["kernel_initializer"], json::parse(R"({"class_name": "HeNormal",
                                                      "config": {"seed": null}})"));
  EXPECT_EQ(c["bias_initializer"]["class_name"], "RandomUniform");
  EXPECT_DOUBLE_EQ(c["bias_initializer"]["config"]["minval"].get<double>(), -0.1);
  EXPECT_TRUE(c["kernel_regularizer"].is_null());
}

TEST(LayerConfig, DenseWithoutBiasAndRank3Input) {
  expect_round_trip(std::make_shared<Dense>(3, "linear", false),
                    {random_tensor({2, 5, 4}, float32, 2)});
}

TEST(LayerConfig, ActivationFlattenDropoutRoundTrip) {
  expect_round_trip(std::make_shared<Activation>("gelu"), {random_tensor({2, 3}, float32, 3)});
  expect_round_trip(std::make_shared<Flatten>(), {random_tensor({2, 3, 4, 2}, float32, 4)});
  // A seeded dropout draws the same masks after the round trip.
  auto drop = std::make_shared<Dropout>(0.4, 17);
  expect_round_trip(drop, {random_tensor({4, 8}, float32, 5)}, /*training=*/true);
  EXPECT_EQ(drop->get_config()["seed"], 17);
  EXPECT_DOUBLE_EQ(drop->get_config()["rate"].get<double>(), 0.4);
  EXPECT_TRUE(Dropout(0.1).get_config()["seed"].is_null());
}

TEST(LayerConfig, EmbeddingRoundTrips) {
  auto e = std::make_shared<Embedding>(10, 3);
  expect_round_trip(e, {from_vector<int32_t>({1, 4, 9, 0}, {2, 2})});
  const json c = e->get_config();
  EXPECT_EQ(c["input_dim"], 10);
  EXPECT_EQ(c["output_dim"], 3);
  EXPECT_EQ(c["embeddings_initializer"]["class_name"], "RandomUniform");
}

TEST(LayerConfig, Conv2DRoundTripsEveryOption) {
  auto c = std::make_shared<Conv2D>(
      4, std::array<int64_t, 2>{3, 2},
      Conv2DLayerOptions{.strides = {2, 1},
                         .padding = Padding::kSame,
                         .dilation = {1, 2},
                         .groups = 2,
                         .activation = "relu",
                         .kernel_initializer = initializers::lecun_uniform()});
  expect_round_trip(c, {random_tensor({2, 7, 6, 4}, float32, 6)});
  const json j = c->get_config();
  EXPECT_EQ(j["filters"], 4);
  EXPECT_EQ(j["kernel_size"], json::parse("[3, 2]"));
  EXPECT_EQ(j["strides"], json::parse("[2, 1]"));
  EXPECT_EQ(j["padding"], "same");
  EXPECT_EQ(j["dilation_rate"], json::parse("[1, 2]"));
  EXPECT_EQ(j["groups"], 2);
  EXPECT_EQ(j["data_format"], "channels_last");
}

TEST(LayerConfig, PoolingRoundTrips) {
  Tensor x = random_tensor({2, 6, 5, 3}, float32, 7);
  auto mp = std::make_shared<MaxPool2D>(Pool2DLayerOptions{.pool_size = {3, 2}});
  expect_round_trip(mp, {x});
  EXPECT_EQ(mp->get_config()["strides"], json::parse("[3, 2]"));  // resolved, as Keras
  expect_round_trip(std::make_shared<AvgPool2D>(Pool2DLayerOptions{
                        .pool_size = {2, 2}, .strides = {1, 2}, .padding = Padding::kSame}),
                    {x});
  expect_round_trip(std::make_shared<GlobalAveragePooling2D>(), {x});
}

TEST(LayerConfig, KerasPoolingClassNamesAreAccepted) {
  auto mp = deserialize_layer(json::parse(
      R"({"class_name": "MaxPooling2D", "config": {"name": "mp", "pool_size": [2, 2]}})"));
  EXPECT_EQ(mp->type_name(), "MaxPool2D");
  auto ap = deserialize_layer(json::parse(R"({"class_name": "AveragePooling2D",
      "config": {"pool_size": 2, "strides": null, "padding": "valid"}})"));
  EXPECT_EQ(ap->type_name(), "AvgPool2D");
  EXPECT_EQ(ap->get_config()["strides"], json::parse("[2, 2]"));
}

TEST(LayerConfig, NormalizationRoundTrips) {
  Tensor x = random_tensor({4, 3, 5}, float32, 8);
  auto bn = std::make_shared<BatchNormalization>(
      BatchNormOptions{.momentum = 0.9, .epsilon = 1e-2, .center = false});
  expect_round_trip(bn, {x}, /*training=*/true);
  const json c = bn->get_config();
  EXPECT_EQ(c["axis"], -1);
  EXPECT_DOUBLE_EQ(c["momentum"].get<double>(), 0.9);
  EXPECT_EQ(c["center"], false);
  EXPECT_EQ(c["moving_variance_initializer"]["class_name"], "Ones");
  expect_round_trip(std::make_shared<LayerNormalization>(LayerNormOptions{.scale = false}), {x});
}

TEST(LayerConfig, MergeLayersRoundTrip) {
  Tensor a = random_tensor({2, 3}, float32, 9), b = random_tensor({2, 3}, float32, 10);
  expect_round_trip(std::make_shared<Add>(), {a, b});
  auto cat = std::make_shared<Concatenate>(0);
  expect_round_trip(cat, {a, b});
  EXPECT_EQ(cat->get_config()["axis"], 0);
}

TEST(LayerConfig, MissingOptionalFieldsTakeKerasDefaults) {
  auto d = deserialize_layer(json::parse(R"({"class_name": "Dense", "config": {"units": 3}})"));
  const json c = d->get_config();
  EXPECT_EQ(c["activation"], "linear");
  EXPECT_EQ(c["use_bias"], true);
  EXPECT_EQ(c["kernel_initializer"]["class_name"], "GlorotUniform");
  EXPECT_EQ(c["bias_initializer"]["class_name"], "Zeros");
  EXPECT_FALSE(d->built());  // no build_config: built on first call
}

TEST(LayerConfig, TrainableFalseComesBackFrozen) {
  auto d = std::make_shared<Dense>(2);
  d->set_trainable(false);
  auto copy = expect_round_trip(d, {random_tensor({1, 3})});
  EXPECT_FALSE(copy->trainable());
  EXPECT_TRUE(copy->trainable_weights().empty());
}

TEST(LayerConfig, KerasThreeFieldsAreAccepted) {
  // As Keras 3 writes it: module, registered_name, a DTypePolicy, build_config.
  auto d = deserialize_layer(json::parse(R"({
    "module": "keras.layers", "class_name": "Dense", "registered_name": null,
    "config": {"name": "dense", "trainable": true,
               "dtype": {"module": "keras", "class_name": "DTypePolicy",
                         "config": {"name": "float32"}, "registered_name": null},
               "units": 2, "activation": "relu", "use_bias": true,
               "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                      "config": {"seed": null}, "registered_name": null},
               "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                    "config": {}, "registered_name": null},
               "kernel_regularizer": null, "bias_regularizer": null,
               "kernel_constraint": null, "bias_constraint": null},
    "build_config": {"input_shape": [null, 5]}})"));
  EXPECT_TRUE(d->built());
  EXPECT_EQ(d->count_params(), 12);
}

TEST(LayerConfig, ADropoutSeedKeepsAll64Bits) {
  auto drop = std::make_shared<Dropout>(0.5, ~uint64_t(0));
  expect_round_trip(drop, {random_tensor({4, 8}, float32, 5)}, /*training=*/true);
  EXPECT_EQ(drop->get_config()["seed"].get<uint64_t>(), ~uint64_t(0));
}

TEST(LayerConfig, Keras2SequentialFormatLoads) {
  // As tf.keras 2 writes it: batch_input_shape in the first layer, build_input_shape, Keras 2
  // fields (activity_regularizer, renorm, fused) at their neutral values.
  auto m = deserialize_layer(json::parse(R"({"class_name": "Sequential", "config": {
      "name": "k2", "layers": [
        {"class_name": "Flatten", "config": {"name": "flatten", "trainable": true,
          "batch_input_shape": [null, 4, 4], "dtype": "float32", "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "dense", "trainable": true, "dtype": "float32",
          "units": 3, "activation": "relu", "use_bias": true,
          "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}},
          "bias_initializer": {"class_name": "Zeros", "config": {}},
          "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
          "kernel_constraint": null, "bias_constraint": null}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": [1],
          "momentum": 0.99, "epsilon": 0.001, "renorm": false, "fused": null}}],
      "build_input_shape": [null, 4, 4]}})"));
  ASSERT_TRUE(m->built());
  EXPECT_EQ(m->count_params(), 16 * 3 + 3 + 4 * 3);
  EXPECT_EQ(m->get_config()["layers"][0]["class_name"], "InputLayer");
}

TEST(LayerConfig, BuildInputShapeAloneBuildsASequential) {
  auto m = deserialize_layer(json::parse(R"({"class_name": "Sequential", "config": {
      "name": "b", "layers": [{"class_name": "Dense", "config": {"units": 2}}],
      "build_input_shape": [null, 6]}})"));
  ASSERT_TRUE(m->built());
  EXPECT_EQ(m->count_params(), 14);
}

// ---- initializers --------------------------------------------------------------------------

TEST(InitializerConfig, EveryInitializerRoundTrips) {
  using namespace initializers;
  const std::vector<Initializer> all = {
      variance_scaling(2.0, FanMode::kFanOut, Distribution::kUniform),
      glorot_uniform(),
      glorot_normal(),
      he_normal(),
      he_uniform(),
      lecun_normal(),
      lecun_uniform(),
      zeros(),
      ones(),
      constant(0.25),
      random_uniform(-1, 2),
      random_normal(0.5, 0.1),
      truncated_normal(-0.5, 0.2),
      orthogonal(1.5),
      identity(2.0)};
  for (const Initializer& init : all) {
    const json j = serialize(init);
    Initializer back = deserialize(json::parse(j.dump()));
    EXPECT_EQ(serialize(back), j) << init.name();
    EXPECT_EQ(back.name(), init.name());
    EXPECT_TRUE(all_close(back({4, 4}, float32, 9), init({4, 4}, float32, 9), 0, 0)) << init.name();
  }
  EXPECT_EQ(serialize(variance_scaling(2.0, FanMode::kFanOut, Distribution::kUniform)),
            json::parse(R"({"class_name": "VarianceScaling", "config": {"scale": 2.0,
                "mode": "fan_out", "distribution": "uniform", "seed": null}})"));
  EXPECT_EQ(serialize(constant(0.25)),
            json::parse(R"({"class_name": "Constant", "config": {"value": 0.25}})"));
}

TEST(InitializerConfig, NamesAndKerasAliasesDeserialize) {
  EXPECT_EQ(initializers::deserialize("he_uniform").name(), "he_uniform");
  EXPECT_EQ(initializers::deserialize(json::parse(R"({"class_name": "OrthogonalInitializer",
      "config": {"gain": 2.0, "seed": null}})"))
                .name(),
            "orthogonal");
  // Keras' "normal" distribution is its truncated normal.
  EXPECT_EQ(initializers::deserialize(json::parse(R"({"class_name": "VarianceScaling",
      "config": {"distribution": "normal"}})"))
                .name(),
            initializers::variance_scaling().name());
}

TEST(InitializerConfig, ErrorsNameTheClassAndField) {
  using initializers::deserialize;
  expect_error<ValueError>(
      [] {
        initializers::serialize(
            Initializer("mine", [](const Shape& s, DType d, uint64_t) { return zeros(s, d); }));
      },
      {"'mine'", "bare function"});
  expect_error<FormatError>([] { deserialize(json::parse(R"({"class_name": "Nope"})")); },
                            {"unknown initializer class 'Nope'", "GlorotUniform"});
  expect_error<FormatError>([] { deserialize(json::parse(R"({"config": {}})")); }, {"class_name"});
  expect_error<FormatError>(
      [] { deserialize(json::parse(R"({"class_name": "Constant", "config": {"value": "x"}})")); },
      {"Constant", "'value'", "a number", "\"x\""});
  expect_error<FormatError>(
      [] { deserialize(json::parse(R"({"class_name": "Zeros", "config": {"valu": 1}})")); },
      {"Zeros", "unknown config field 'valu'"});
  expect_error<ValueError>(
      [] { deserialize(json::parse(R"({"class_name": "HeNormal", "config": {"seed": 3}})")); },
      {"HeNormal", "'seed'", "null"});
  expect_error<ValueError>(
      [] {
        deserialize(json::parse(R"({"class_name": "VarianceScaling",
                                       "config": {"mode": "fan_sideways"}})"));
      },
      {"mode", "fan_sideways"});
  expect_error<FormatError>([] { deserialize(json::parse("3")); }, {"initializer", "3"});
  expect_error<ValueError>([] { deserialize("glorot"); }, {"unknown initializer 'glorot'"});
}

// ---- Sequential and the built-in models ----------------------------------------------------

TEST(SequentialConfig, KerasFormatAndRoundTrip) {
  auto seq = std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Layer>>{std::make_shared<Dense>(4, "relu"),
                                          std::make_shared<Dropout>(0.2, 1),
                                          std::make_shared<Dense>(2)},
      "stack");
  expect_round_trip(seq, {random_tensor({3, 5}, float32, 11)});
  const json c = seq->get_config();
  EXPECT_EQ(c["name"], "stack");
  ASSERT_EQ(c["layers"].size(), 3u);
  EXPECT_EQ(c["layers"][1]["class_name"], "Dropout");
  EXPECT_FALSE(c["layers"][0].contains("build_config"));  // the model builds its layers
  EXPECT_EQ(serialize_layer(*seq)["build_config"], json::parse(R"({"input_shape": [null, 5]})"));
}

TEST(SequentialConfig, NestedSequentialRoundTrips) {
  auto inner = std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Layer>>{std::make_shared<Dense>(3, "relu")}, "inner");
  auto outer = std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Layer>>{inner, std::make_shared<Dense>(2)}, "outer");
  expect_round_trip(outer, {random_tensor({2, 4}, float32, 12)});
}

TEST(SequentialConfig, MlpAndCnnRoundTrip) {
  VariableStore s(1);
  auto mlp = make_mlp(&s);
  auto mlp_copy = expect_round_trip(mlp, {random_tensor({2, 28, 28, 1}, float32, 13)});
  EXPECT_EQ(mlp_copy->count_params(), 235146);
  auto cnn = make_cnn(&s);
  auto cnn_copy = expect_round_trip(cnn, {random_tensor({2, 28, 28, 1}, float32, 14)});
  EXPECT_EQ(cnn_copy->count_params(), 421642);
}

TEST(SequentialConfig, ExampleConfigsBuildWithTheExpectedParameterCounts) {
  const auto dir = example_configs();
  struct Case {
    const char* file;
    int64_t params;
  };
  for (const Case& c :
       {Case{"mlp.json", 235146}, Case{"cnn.json", 421642}, Case{"cnn_bn_dropout.json", 421930}}) {
    VariableStore store(2);
    auto model = model_from_json((dir / c.file).string(), &store);
    ASSERT_TRUE(model->built()) << c.file << ": its InputLayer builds it";
    EXPECT_EQ(model->count_params(), c.params) << c.file;
    EXPECT_EQ(model->output_shape(Shape{3, 28, 28, 1}), (Shape{3, 10})) << c.file;
    // And it round-trips again.
    expect_round_trip(model, {random_tensor({2, 28, 28, 1}, float32, 15)});
  }
}

TEST(SequentialConfig, BnDropoutExampleTrainsItsStatistics) {
  VariableStore store(2);
  auto model = model_from_json((example_configs() / "cnn_bn_dropout.json").string(), &store);
  const json c = model->get_config();
  EXPECT_EQ(c["layers"][0]["class_name"], "InputLayer");
  EXPECT_EQ(c["layers"][2]["class_name"], "BatchNormalization");
  EXPECT_EQ(c["layers"][9]["class_name"], "Dropout");
  EXPECT_EQ(model->non_trainable_weights().size(), 4u);  // two BNs' moving statistics
}

TEST(SequentialConfig, ModelToJsonAndFromText) {
  VariableStore s1(1), s2(1);
  auto mlp = make_mlp(&s1);
  const std::string text = model_to_json(*mlp);
  auto copy = model_from_json(text, &s2);
  EXPECT_EQ(copy->get_config(), mlp->get_config());
  EXPECT_EQ(copy->count_params(), 235146);
}

// ---- sharing -------------------------------------------------------------------------------

TEST(SharingConfig, OneInstanceTwiceComesBackAsOneInstance) {
  auto d = std::make_shared<Dense>(4, DenseOptions{.activation = "tanh", .name = "twice"});
  auto seq = std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Layer>>{d, d, std::make_shared<Dense>(2)}, "shared_a");
  auto copy = expect_round_trip(seq, {random_tensor({2, 4}, float32, 16)});
  const json c = seq->get_config();
  EXPECT_EQ(c["layers"][1], json::parse(R"({"class_name": "Dense", "shared_with": "twice"})"));
  ASSERT_EQ(copy->layers().size(), 3u);
  EXPECT_EQ(copy->layers()[0].get(), copy->layers()[1].get());
  EXPECT_EQ(copy->weights().size(), 4u);
}

TEST(SharingConfig, ShareWeightsFromIsRelinked) {
  auto a = std::make_shared<Dense>(4, DenseOptions{.name = "a"});
  auto b = std::make_shared<Dense>(
      4, DenseOptions{.activation = "relu", .name = "b", .share_weights_with = a.get()});
  auto seq = std::make_shared<Sequential>(std::vector<std::shared_ptr<Layer>>{a, b}, "shared_b");
  auto copy = expect_round_trip(seq, {random_tensor({2, 4}, float32, 17)});
  EXPECT_EQ(seq->get_config()["layers"][1]["share_weights_with"], "a");
  ASSERT_EQ(copy->layers().size(), 2u);
  EXPECT_EQ(copy->layers()[1]->weights_shared_from(), copy->layers()[0].get());
  EXPECT_EQ(copy->layers()[1]->weight("kernel").id(), copy->layers()[0]->weight("kernel").id());
  EXPECT_EQ(copy->weights().size(), 2u);
}

TEST(SharingConfig, ScopeReuseIsTiedAgainByTheStore) {
  // Way (c): two layers of one name in one model reuse their variables through the store.
  VariableStore s1(1), s2(1);
  auto seq = std::make_shared<Sequential>(
      std::vector<std::shared_ptr<Layer>>{std::make_shared<Dense>(3, DenseOptions{.name = "p"}),
                                          std::make_shared<Dense>(3, DenseOptions{.name = "p"})},
      "shared_c");
  seq->set_store(s1);
  Tensor x = random_tensor({2, 3}, float32, 18);
  {
    VariableStore::Scope reuse(s1, "outer", /*reuse=*/true);
    (*seq)(x);
  }
  EXPECT_EQ(seq->weights().size(), 2u);
  auto copy = deserialize_layer(serialize_layer(*seq, false), &s2);
  {
    VariableStore::Scope reuse(s2, "outer", /*reuse=*/true);
    (*copy)(x);
  }
  EXPECT_EQ(copy->weights().size(), 2u);
  EXPECT_EQ(copy->get_config(), seq->get_config());
}

TEST(SharingConfig, ASourceOutsideTheModelCannotBeWritten) {
  auto outside = std::make_shared<Dense>(2, DenseOptions{.name = "outside"});
  auto b =
      std::make_shared<Dense>(2, DenseOptions{.name = "b", .share_weights_with = outside.get()});
  Sequential seq({b}, "lonely");
  std::string why;
  EXPECT_FALSE(has_config(seq, &why));
  EXPECT_NE(why.find("'outside'"), std::string::npos) << why;
  expect_error<ValueError>([&] { serialize_layer(seq); },
                           {"'b'", "'outside'", "not a layer of sequential model 'lonely'"});
}

TEST(SharingConfig, AmbiguousNamesAreRefused) {
  auto a = std::make_shared<Dense>(2, DenseOptions{.name = "same"});
  auto b = std::make_shared<Dense>(2, DenseOptions{.name = "same"});
  Sequential seq({a, b, a}, "ambiguous");
  expect_error<ValueError>([&] { serialize_layer(seq); },
                           {"two different layers are named 'same'"});
}

// ---- a registered subclassed model ---------------------------------------------------------

// A residual block with its own config (Keras' register_keras_serializable + get_config).
class ResidualMlp : public Model {
 public:
  ResidualMlp(int64_t units, std::string activation, std::string name = "")
      : Model(std::move(name), "residual_mlp"), units_(units), activation_(std::move(activation)) {
    in_ = &add_layer<Dense>(units, DenseOptions{.activation = activation_, .name = "in"});
    hidden_ = &add_layer<Dense>(units, DenseOptions{.activation = activation_, .name = "hidden"});
    out_ = &add_layer<Dense>(2, DenseOptions{.name = "out"});
  }
  std::string type_name() const override { return "ResidualMlp"; }

  json get_config() const override {
    json c = base_config();
    c["units"] = units_;
    c["activation"] = activation_;
    return c;
  }
  static std::shared_ptr<Layer> from_config(const json& config) {
    ConfigReader r(config, "ResidualMlp");
    auto m =
        std::make_shared<ResidualMlp>(r.integer("units"), r.activation("activation"), r.name());
    r.finish();
    return m;
  }

 protected:
  Tensor call(const Tensor& x, bool training) override {
    Tensor h = (*in_)(x, training);
    return (*out_)(h + (*hidden_)(h, training), training);
  }

 private:
  int64_t units_;
  std::string activation_;
  Dense *in_, *hidden_, *out_;
};
KILN_REGISTER_LAYER(ResidualMlp);

// Has no get_config.
class Unsaved : public Model {
 public:
  Unsaved() : Model("", "unsaved") { d_ = &add_layer<Dense>(2); }
  std::string type_name() const override { return "Unsaved"; }

 protected:
  Tensor call(const Tensor& x, bool training) override { return (*d_)(x, training); }

 private:
  Dense* d_;
};

TEST(SubclassedConfig, ARegisteredModelRoundTrips) {
  EXPECT_TRUE(is_layer_registered("ResidualMlp"));
  auto m = std::make_shared<ResidualMlp>(5, "gelu", "res");
  auto copy = expect_round_trip(m, {random_tensor({3, 4}, float32, 19)});
  EXPECT_EQ(copy->get_config()["units"], 5);
  EXPECT_EQ(copy->count_params(), m->count_params());
  // Inside a Sequential too.
  auto seq = std::make_shared<Sequential>(std::vector<std::shared_ptr<Layer>>{
      std::make_shared<ResidualMlp>(3, "relu"), std::make_shared<Activation>("softmax")});
  expect_round_trip(seq, {random_tensor({2, 4}, float32, 20)});
}

TEST(SubclassedConfig, AModelWithoutConfigSaysSo) {
  Unsaved u;
  std::string why;
  EXPECT_FALSE(has_config(u, &why));
  expect_error<StateError>([&] { u.get_config(); }, {u.name(), "(Unsaved)", "has no get_config",
                                                     "KILN_REGISTER_LAYER", "traced graph"});
  Sequential seq({std::make_shared<Unsaved>()});
  EXPECT_FALSE(has_config(seq));
  EXPECT_TRUE(has_config(*make_mlp()));
}

TEST(Registry, RegisteringTwiceOrEmptyIsRefused) {
  expect_error<ValueError>(
      [] { register_layer("Dense", [](const json& c) { return Dense::from_config(c); }); },
      {"'Dense'", "already registered"});
  expect_error<ValueError>([] { register_layer("", nullptr); }, {"empty class name"});
  // A factory must make the class it is registered for.
  register_layer("NotADense", [](const json& c) { return Dense::from_config(c); });
  expect_error<FormatError>(
      [] {
        deserialize_layer(json::parse(R"({"class_name": "NotADense", "config": {"units": 2}})"));
      },
      {"'NotADense'", "made a Dense", "type_name()"});
  std::vector<std::string> names = registered_layers();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_NE(std::find(names.begin(), names.end(), "Conv2D"), names.end());
}

// ---- error paths ---------------------------------------------------------------------------

void expect_format_error(const std::string& text, const std::vector<std::string>& parts) {
  expect_error<FormatError>([&] { deserialize_layer(json::parse(text)); }, parts);
}
void expect_value_error(const std::string& text, const std::vector<std::string>& parts) {
  expect_error<ValueError>([&] { deserialize_layer(json::parse(text)); }, parts);
}

TEST(ConfigErrors, UnknownClassListsTheRegisteredOnes) {
  expect_format_error(R"({"class_name": "Dense3D", "config": {"name": "d"}})",
                      {"unknown layer class 'Dense3D'", "layer 'd'", "KILN_REGISTER_LAYER",
                       "Registered:", "Conv2D", "Dense"});
}

TEST(ConfigErrors, MalformedEntries) {
  expect_error<FormatError>([] { deserialize_layer(json::parse("[1]")); }, {"object"});
  expect_format_error(R"({"config": {}})", {"class_name"});
  expect_format_error(R"({"class_name": "Dense"})", {"Dense", "missing field 'config'"});
  expect_format_error(R"({"class_name": "Dense", "config": 3})", {"Dense", "'config'", "object"});
  expect_format_error(R"({"class_name": "Dense", "config": {"units": 2}, "extra": 1})",
                      {"Dense", "unexpected field 'extra'"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2}, "build_config": {"input_shape": [null, "x"]}})",
      {"Dense layer 'd'", "build_config.input_shape", "dim 1"});
}

TEST(ConfigErrors, MissingAndMistypedFieldsNameClassLayerAndField) {
  expect_format_error(R"({"class_name": "Dense", "config": {"name": "d"}})",
                      {"Dense config of layer 'd'", "missing field 'units'"});
  expect_format_error(R"({"class_name": "Dense", "config": {"name": "d", "units": "10"}})",
                      {"Dense config of layer 'd'", "field 'units'", "an integer", "\"10\""});
  expect_format_error(R"({"class_name": "Dense", "config": {"name": "d", "units": 2.5}})",
                      {"field 'units'", "an integer"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "use_bias": 1}})",
      {"field 'use_bias'", "a boolean"});
  expect_format_error(R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "unitz": 3}})",
                      {"Dense config of layer 'd'", "unknown field 'unitz'", "units"});
  expect_format_error(R"({"class_name": "Dense", "config": {"name": 5, "units": 2}})",
                      {"field 'name'", "a string"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "trainable": "yes"}})",
      {"field 'trainable'", "a boolean"});
  expect_format_error(R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2}})",
                      {"Conv2D config of layer 'c'", "missing field 'kernel_size'"});
  expect_format_error(
      R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": [1, 2, 3]}})",
      {"field 'kernel_size'", "a list of two integers"});
  expect_format_error(R"({"class_name": "Dropout", "config": {"name": "dr"}})",
                      {"Dropout config of layer 'dr'", "missing field 'rate'"});
  expect_format_error(R"({"class_name": "Activation", "config": {"name": "a"}})",
                      {"Activation config of layer 'a'", "missing field 'activation'"});
  expect_format_error(R"({"class_name": "Embedding", "config": {"name": "e", "input_dim": 3}})",
                      {"Embedding config of layer 'e'", "missing field 'output_dim'"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "kernel_initializer": {"class_name": "Nope"}}})",
      {"Dense config of layer 'd'", "field 'kernel_initializer'",
       "unknown initializer class 'Nope'"});
}

TEST(ConfigErrors, UnsupportedKerasValuesAreValueErrors) {
  expect_value_error(
      R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "data_format": "channels_first"}})",
      {"Conv2D config of layer 'c'", "field 'data_format'", "channels_first", "channels_last"});
  expect_value_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}})",
      {"Dense config of layer 'd'", "field 'kernel_regularizer'", "not supported"});
  expect_value_error(
      R"({"class_name": "BatchNormalization", "config": {"name": "bn", "axis": -2}})",
      {"BatchNormalization config of layer 'bn'", "field 'axis'", "last axis"});
  expect_value_error(
      R"({"class_name": "LayerNormalization", "config": {"name": "ln", "axis": [1, 2]}})",
      {"LayerNormalization config of layer 'ln'", "field 'axis'", "last axis"});
  // tf.keras 2 writes the last axis's index; another axis is refused when the layer builds.
  expect_value_error(
      R"({"class_name": "BatchNormalization", "config": {"name": "bn", "axis": 1}, "build_config": {"input_shape": [null, 4, 3]}})",
      {"layer 'bn' (BatchNormalization)", "configured with axis 1", "last axis only"});
  expect_value_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": "float16"}})",
      {"Dense config of layer 'd'", "field 'dtype'", "float16"});
  expect_value_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "swish"}})",
      {"Dense config of layer 'd'", "field 'activation'", "unknown activation 'swish'"});
  expect_value_error(
      R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "padding": "causal"}})",
      {"Conv2D config of layer 'c'", "field 'padding'", "causal"});
  expect_value_error(R"({"class_name": "Dropout", "config": {"name": "dr", "rate": 1.5}})",
                     {"'dr'", "rate must be in [0, 1)"});
  expect_value_error(R"({"class_name": "Dense", "config": {"name": "d", "units": 0}})",
                     {"'d'", "units must be positive"});
  expect_value_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": 42}}}})",
      {"Dense config of layer 'd'", "field 'kernel_initializer'", "'seed'"});
}

TEST(ConfigErrors, SequentialEntriesNameTheirIndex) {
  expect_format_error(R"({"class_name": "Sequential", "config": {"name": "s"}})",
                      {"Sequential config of layer 's'", "missing field 'layers'"});
  expect_format_error(R"({"class_name": "Sequential", "config": {"name": "s", "layers": {}}})",
                      {"field 'layers'", "a list"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "config": {"name": "d"}}]}})",
      {"Sequential config of layer 's': layers[0]", "Dense config of layer 'd'",
       "missing field 'units'"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "shared_with": "ghost"}]}})",
      {"layers[0]", "shared_with 'ghost'", "no earlier layer"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "Dense", "config": {"name": "d", "units": 2}},
          {"class_name": "Flatten", "shared_with": "d"}]}})",
      {"layers[1]", "shared_with 'd' is a Dense, not a Flatten"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "Dense", "config": {"name": "d", "units": 2}, "share_weights_with": "ghost"}]}})",
      {"layer 'd'", "share_weights_with 'ghost'", "names no layer"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "Dense", "config": {"name": "d", "units": 2}},
          {"class_name": "InputLayer", "config": {"batch_shape": [null, 3]}}]}})",
      {"layers[1]", "InputLayer must come first"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "InputLayer", "config": {"batch_shape": [null, -3]}}]}})",
      {"InputLayer", "batch_shape", "dim 1"});
  expect_value_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "data_format": "channels_first"}}]}})",
      {"Sequential config of layer 's': layers[0]", "Conv2D config of layer 'c'", "data_format"});
}

TEST(ConfigErrors, HugeOrDeepConfigsAreRefusedBeforeAllocating) {
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2}, "build_config": {"input_shape": [null, 4294967296]}})",
      {"build_config.input_shape", "dim 1", "2^31"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2}, "build_config": {"input_shape": [null, 2000000000, 2000000000]}})",
      {"build_config.input_shape", "2^40"});
  expect_format_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 2}, "build_config": {"input_shape": [null, 1, 1, 1, 1, 1, 1, 1, 1]}})",
      {"build_config.input_shape", "rank 9"});
  expect_value_error(
      R"({"class_name": "Dense", "config": {"name": "d", "units": 4000000000000}, "build_config": {"input_shape": [null, 1000000]}})",
      {"layer 'd' (Dense)", "weight 'kernel'", "too large"});
  expect_value_error(
      R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 4611686018427387904, "kernel_size": 4611686018427387904}, "build_config": {"input_shape": [null, 1, 1, 1]}})",
      {"layer 'c' (Conv2D)", "weight 'kernel'", "too large"});
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "InputLayer", "config": {"batch_shape": [null, 2000000000, 2000000000]}}]}})",
      {"InputLayer", "batch_shape", "2^40"});
  json deep = json::parse(R"({"class_name": "Dense", "config": {"units": 1}})");
  for (int i = 0; i < 100; ++i) {
    deep = json{{"class_name", "Sequential"}, {"config", {{"layers", json::array({deep})}}}};
  }
  expect_error<FormatError>([&] { deserialize_layer(deep); }, {"nested more than 64 deep"});
}

// A user's from_config that reads the json directly.
class Careless : public Layer {
 public:
  explicit Careless(int64_t n) : Layer("", "careless"), n_(n) {}
  std::string type_name() const override { return "Careless"; }
  json get_config() const override {
    json c = base_config();
    c["n"] = n_;
    return c;
  }
  static std::shared_ptr<Layer> from_config(const json& config) {
    return std::make_shared<Careless>(config.at("n").get<int64_t>());
  }

 protected:
  Tensor call(const Tensor& x, bool) override { return x; }

 private:
  int64_t n_;
};
KILN_REGISTER_LAYER(Careless);

TEST(ConfigErrors, AUserFactorysJsonErrorBecomesAFormatError) {
  expect_format_error(R"({"class_name": "Careless", "config": {"name": "c"}})",
                      {"Careless layer 'c'", "bad config", "'n'"});
  expect_format_error(R"({"class_name": "Careless", "config": {"name": "c", "n": "x"}})",
                      {"Careless layer 'c'", "bad config"});
  auto ok = deserialize_layer(json::parse(R"({"class_name": "Careless", "config": {"n": 3}})"));
  EXPECT_EQ(ok->get_config()["n"], 3);
}

TEST(ConfigErrors, EveryOtherFieldCheck) {
  struct Case {
    const char* text;
    std::vector<std::string> parts;
  };
  const Case format_errors[] = {
      {R"({"class_name": "Dense", "config": {"units": 2}, "module": 3})", {"'module'", "string"}},
      {R"({"class_name": "Dense", "config": {"units": 2}, "build_config": [1]})",
       {"build_config must be"}},
      {R"({"class_name": "Dense", "config": {"units": 2}, "build_config": {"input_shape": [null, 2], "x": 1}})",
       {"build_config must be"}},
      {R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": 3}})",
       {"Dense config of layer 'd'", "field 'dtype'", "DTypePolicy"}},
      {R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": 1}})",
       {"field 'activation'", "a string"}},
      {R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "padding": 0}})",
       {"field 'padding'", "a string"}},
      {R"({"class_name": "Dropout", "config": {"name": "dr", "rate": 0.5, "seed": -1}})",
       {"Dropout config of layer 'dr'", "field 'seed'", "[0, 2^64)"}},
      {R"({"class_name": "Dropout", "config": {"name": "dr", "rate": "half"}})",
       {"field 'rate'", "a number"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [3]}})",
       {"layers[0]", "string 'class_name'"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "InputLayer"}]}})",
       {"layers[0]", "InputLayer must come first and have a config"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "shared_with": 3}]}})",
       {"layers[0]", "a shared entry is"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "config": {"units": 1}, "share_weights_with": 3}]}})",
       {"layers[0]", "'share_weights_with' must be a layer name"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [], "build_input_shape": "x"}})",
       {"field 'build_input_shape'", "shape"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Flatten", "config": {"batch_input_shape": [null, -1]}}]}})",
       {"layers[0]", "batch_input_shape", "dim 1"}},
  };
  for (const Case& c : format_errors) expect_format_error(c.text, c.parts);
  expect_format_error(
      R"({"class_name": "Sequential", "config": {"name": "s", "layers": [], "build_input_shape": [null, 3]}})",
      {"Sequential layer 's'", "building for input shape [1, 3]", "has no layers"});
  expect_error<ShapeError>(
      [] {
        deserialize_layer(json::parse(
            R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3}, "build_config": {"input_shape": [null, 5]}})"));
      },
      {"Conv2D layer 'c'", "building for input shape [1, 5]", "rank 4"});
  const Case value_errors[] = {
      {R"({"class_name": "Flatten", "config": {"name": "f", "data_format": "channels_first"}})",
       {"Flatten config of layer 'f'", "data_format"}},
      {R"({"class_name": "MaxPool2D", "config": {"name": "m", "padding": "full"}})",
       {"MaxPool2D config of layer 'm'", "field 'padding'", "full"}},
      {R"({"class_name": "AvgPool2D", "config": {"name": "m", "pool_size": 0}})",
       {"'m'", "pool_size must be positive"}},
      {R"({"class_name": "GlobalAveragePooling2D", "config": {"name": "g", "keepdims": true}})",
       {"GlobalAveragePooling2D config of layer 'g'", "field 'keepdims'"}},
      {R"({"class_name": "Embedding", "config": {"name": "e", "input_dim": 3, "output_dim": 2, "mask_zero": true}})",
       {"Embedding config of layer 'e'", "field 'mask_zero'"}},
      {R"({"class_name": "Concatenate", "config": {"name": "c", "axis": 100}})",
       {"Concatenate config of layer 'c'", "field 'axis'", "out of range"}},
      {R"({"class_name": "LayerNormalization", "config": {"name": "l", "rms_scaling": true}})",
       {"LayerNormalization config of layer 'l'", "field 'rms_scaling'"}},
      {R"({"class_name": "BatchNormalization", "config": {"name": "b", "synchronized": true}})",
       {"BatchNormalization config of layer 'b'", "field 'synchronized'"}},
      {R"({"class_name": "BatchNormalization", "config": {"name": "b", "momentum": 2}})",
       {"'b'", "momentum must be in [0, 1]"}},
      {R"({"class_name": "Dropout", "config": {"name": "dr", "rate": 0.5, "noise_shape": [1, 2]}})",
       {"Dropout config of layer 'dr'", "field 'noise_shape'"}},
      {R"({"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}}})",
       {"Dense config of layer 'd'", "field 'dtype'", "mixed_float16"}},
      {R"({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "InputLayer", "config": {"batch_shape": [null, 3], "sparse": true}}]}})",
       {"layers[0]", "InputLayer", "field 'sparse'"}},
  };
  for (const Case& c : value_errors) expect_value_error(c.text, c.parts);
  // A huge value is cut in the message.
  const std::string huge = R"({"class_name": "Dense", "config": {"name": "d", "units": ")" +
                           std::string(100000, 'x') + "\"}}";
  try {
    deserialize_layer(json::parse(huge));
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u) << e.what();
    EXPECT_NE(std::string(e.what()).find("100002 characters"), std::string::npos) << e.what();
  }
  expect_error<ValueError>([] { register_layer("Empty", nullptr); },
                           {"register_layer('Empty')", "empty factory"});
  // A user initializer has no config, so neither has its layer.
  Dense d(2,
          DenseOptions{.kernel_initializer = Initializer(
                           "mine", [](const Shape& s, DType t, uint64_t) { return zeros(s, t); })});
  std::string why;
  EXPECT_FALSE(has_config(d, &why));
  EXPECT_NE(why.find("'mine'"), std::string::npos) << why;
}

TEST(ConfigErrors, ModelFromJsonNamesTheFile) {
  expect_error<FormatError>([] { model_from_json("/nonexistent/model.json"); },
                            {"'/nonexistent/model.json'", "cannot open"});
  const auto path = std::filesystem::temp_directory_path() / "kiln_config_test_bad.json";
  { std::ofstream(path) << "{\"class_name\": \"Dense\", \"config\": {"; }
  expect_error<FormatError>([&] { model_from_json(path.string()); },
                            {path.string(), "not valid JSON"});
  { std::ofstream(path) << R"({"class_name": "Dense", "config": {"name": "d"}})"; }
  expect_error<FormatError>([&] { model_from_json(path.string()); },
                            {path.string(), "missing field 'units'"});
  std::filesystem::remove(path);
  expect_error<FormatError>([] { model_from_json("{\"class_name\": "); }, {"not valid JSON"});
  // nlohmann reports a number too large for a double as out_of_range, not parse_error.
  expect_error<FormatError>([] { model_from_json("{\"units\": 1" + std::string(400, '0') + "}"); },
                            {"not valid JSON", "number overflow"});
}

}  // namespace
}  // namespace kiln
