// save_weights / load_weights: round trips (also across differently named models), the
// layer-tree keys, tied weights, and every validation error.
#include "kiln/nn/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/io.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"
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
  static const TempDir temp("kiln_checkpoint_test_");
  return temp.path(name);
}

// A built 4-8-3 MLP named "net" in `store`; `hidden` units configurable for shape mismatches.
std::shared_ptr<Sequential> mlp(VariableStore& store, int64_t hidden = 8) {
  auto m = std::make_shared<Sequential>("net");
  DenseOptions h;
  h.activation = "relu";
  h.name = "hidden";
  m->emplace<Dense>(hidden, h);
  DenseOptions o;
  o.name = "out";
  m->emplace<Dense>(3, o);
  m->set_store(store);
  m->output_shape({1, 4});
  return m;
}

// Two Dense(4) layers, the second sharing the first's kernel and bias.
std::shared_ptr<Sequential> tied(VariableStore& store) {
  auto m = std::make_shared<Sequential>("tied");
  DenseOptions a;
  a.name = "a";
  auto& first = m->emplace<Dense>(4, a);
  DenseOptions b;
  b.name = "b";
  b.share_weights_with = &first;
  m->emplace<Dense>(4, b);
  m->set_store(store);
  m->output_shape({1, 4});
  return m;
}

// Dense 8 relu, then a nested Sequential (Dense 6 relu, Dense 3), all with default (unique,
// process-wide counted) names: each call names its layers differently.
std::shared_ptr<Sequential> default_named(VariableStore& store) {
  auto m = std::make_shared<Sequential>();
  m->emplace<Dense>(8, "relu");
  auto& inner = m->emplace<Sequential>();
  inner.emplace<Dense>(6, "relu");
  inner.emplace<Dense>(3);
  m->set_store(store);
  m->output_shape({1, 4});
  return m;
}

// Built for [1, 4]: Dense layers of the given units, nested in `depth` Sequentials.
std::shared_ptr<Sequential> dense_stack(VariableStore& store, const std::vector<int64_t>& units,
                                        int depth = 0) {
  auto m = std::make_shared<Sequential>();
  Sequential* s = m.get();
  for (int d = 0; d < depth; ++d) s = &s->emplace<Sequential>();
  for (int64_t u : units) s->emplace<Dense>(u);
  m->set_store(store);
  m->output_shape({1, 4});
  return m;
}

std::vector<std::string> tensor_names(const SafetensorsFile& f) {
  std::vector<std::string> names;
  for (const auto& [name, t] : f.tensors) names.push_back(name);
  return names;
}

std::vector<std::string> variable_names(const Layer& model) {
  std::vector<std::string> names;
  for (const Variable& v : model.weights()) names.push_back(v.name());
  return names;
}

TEST(Checkpoint, RoundTripGivesEqualPredictions) {
  VariableStore s1(1), s2(2);
  auto a = mlp(s1);
  auto b = mlp(s2);
  Tensor x = random_normal({5, 4}, 0, 1, 3);
  Tensor pa = predict(*a, x);
  ASSERT_FALSE(testing::all_close(pa, predict(*b, x)));  // different seeds differ
  std::string path = temp_path("round_trip.safetensors");
  save_weights(*a, path);
  uint64_t v = b->weights()[0].version();
  load_weights(*b, path);
  EXPECT_TRUE(testing::all_close(predict(*b, x), pa, 0, 0));
  EXPECT_GT(b->weights()[0].version(), v);  // caches see the change
  // Keyed by place in the layer tree, not by the variables' names ("net/hidden/kernel").
  SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(tensor_names(f),
            (std::vector<std::string>{"0/kernel", "0/bias", "1/kernel", "1/bias"}));
  EXPECT_TRUE(f.aliases.empty());
  EXPECT_EQ(f.metadata.at("model"), "net");
  EXPECT_TRUE(testing::all_close(f.at("1/bias"), a->weights()[3].value(), 0, 0));
}

TEST(Checkpoint, LoadsIntoAModelWhoseLayersGotOtherUniqueNames) {
  // "Process" A saves; "process" B creates other layers first, so every default name shifts
  // (dense vs dense_3): the tree keys still match.
  VariableStore s1(1), s2(2);
  auto a = default_named(s1);
  std::string path = temp_path("renamed.safetensors");
  save_weights(*a, path);
  Dense shift1(2), shift2(2), shift3(2);
  auto b = default_named(s2);
  std::vector<std::string> names_a = variable_names(*a), names_b = variable_names(*b);
  ASSERT_EQ(names_a.size(), 6u);
  for (size_t i = 0; i < names_a.size(); ++i) EXPECT_NE(names_a[i], names_b[i]) << i;
  SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(tensor_names(f), (std::vector<std::string>{"0/kernel", "0/bias", "1/0/kernel",
                                                       "1/0/bias", "1/1/kernel", "1/1/bias"}));
  Tensor x = random_normal({5, 4}, 0, 1, 3);
  Tensor pa = predict(*a, x);
  ASSERT_FALSE(testing::all_close(pa, predict(*b, x)));
  load_weights(*b, path);
  EXPECT_TRUE(testing::all_close(predict(*b, x), pa, 0, 0));
  EXPECT_EQ(variable_names(*b), names_b);  // the variables keep their own names
  // By full names (load_variables) the same weights do not match: the reason for tree keys.
  std::string by_name = temp_path("renamed_by_name.safetensors");
  save_variables(a->weights(), by_name);
  expect_error<FormatError>([&] { load_variables(b->weights(), by_name); },
                            {"missing " + names_b[0], "unexpected " + names_a[0]});
}

TEST(Checkpoint, MakeMlpTwiceRoundTripsPredictions) {
  // As in `kiln eval` and the example: a second make_mlp() (mlp_1, other layer names, same
  // store) loads what the first saved.
  VariableStore store(4);
  auto a = make_mlp(&store);
  auto b = make_mlp(&store);
  ASSERT_NE(a->name(), b->name());
  Tensor x = random_normal({3, 28, 28, 1}, 0, 1, 5);
  Tensor pa = predict(*a, x);
  ASSERT_FALSE(testing::all_close(pa, predict(*b, x)));
  std::string path = temp_path("mlp.safetensors");
  save_weights(*a, path);
  load_weights(*b, path);
  EXPECT_TRUE(testing::all_close(predict(*b, x), pa, 0, 0));
  EXPECT_EQ(load_safetensors(path).tensors.size(), 6u);  // 3 Dense layers (Flatten has none)
}

TEST(Checkpoint, TiedWeightsAreStoredOnceAndStayTied) {
  VariableStore s1(1), s2(2);
  auto a = tied(s1);
  std::string path = temp_path("tied.safetensors");
  save_weights(*a, path);
  SafetensorsFile f = load_safetensors(path);
  // One kernel and one bias for both layers; layer 1's keys are aliases of layer 0's.
  EXPECT_EQ(tensor_names(f), (std::vector<std::string>{"0/kernel", "0/bias"}));
  EXPECT_EQ(f.aliases,
            (std::map<std::string, std::string>{{"1/kernel", "0/kernel"}, {"1/bias", "0/bias"}}));
  auto b = tied(s2);
  load_weights(*b, path);
  auto& la = static_cast<Dense&>(*b->layers()[0]);
  auto& lb = static_cast<Dense&>(*b->layers()[1]);
  EXPECT_EQ(la.kernel(), lb.kernel());
  EXPECT_EQ(la.bias(), lb.bias());
  EXPECT_EQ(b->weights().size(), 2u);
  EXPECT_TRUE(testing::all_close(lb.kernel().value(), f.at("0/kernel"), 0, 0));
  EXPECT_TRUE(testing::all_close(lb.bias().value(), f.at("1/bias"), 0, 0));
  Tensor x = random_normal({2, 4}, 0, 1, 3);
  EXPECT_TRUE(testing::all_close(predict(*b, x), predict(*a, x), 0, 0));
}

TEST(Checkpoint, AliasesInTheFileLoadIntoEachVariable) {
  // A file whose writer tied two names to one tensor fills two separate variables.
  std::string path = temp_path("aliased.safetensors");
  Tensor t = from_vector(std::vector<float>{1, 2, 3});
  save_safetensors(path, {{"x", t}, {"y", t}});
  ASSERT_EQ(load_safetensors(path).aliases.size(), 1u);
  Variable x("x", zeros({3})), y("y", zeros({3}));
  load_variables({x, y}, path);
  EXPECT_EQ(y.value().to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(x.value().to_vector<float>(), (std::vector<float>{1, 2, 3}));
}

TEST(Checkpoint, ShapeMismatchNamesTheVariableAndBothShapesAndChangesNothing) {
  VariableStore s1(1), s2(2);
  auto small = mlp(s1, 8);
  auto big = mlp(s2, 5);
  std::string path = temp_path("shapes.safetensors");
  save_weights(*small, path);
  Tensor before = big->weights()[0].value().clone();
  expect_error<ShapeError>([&] { load_weights(*big, path); },
                           {"net/hidden/kernel", "[4, 5]", "[4, 8]", path});
  EXPECT_TRUE(testing::all_close(big->weights()[0].value(), before, 0, 0));
}

TEST(Checkpoint, MissingAndUnexpectedVariablesAreFormatErrors) {
  VariableStore s1(1), s2(2);
  auto a = mlp(s1);
  std::string path = temp_path("names.safetensors");
  save_weights(*a, path);
  // The same layers one level deeper: every key differs ("0/0/kernel" vs "0/kernel").
  auto deeper = dense_stack(s2, {8, 3}, 1);
  Tensor before = deeper->weights()[0].value().clone();
  expect_error<FormatError>([&] { load_weights(*deeper, path); },
                            {path, "missing 0/0/kernel, 0/0/bias, 0/1/kernel, 0/1/bias",
                             "unexpected 0/kernel, 0/bias, 1/kernel, 1/bias"});
  EXPECT_TRUE(testing::all_close(deeper->weights()[0].value(), before, 0, 0));
  // Fewer layers than the file: only unexpected keys; more: only missing ones.
  auto one = dense_stack(s2, {8});
  expect_error<FormatError>([&] { load_weights(*one, path); },
                            {path, "unexpected 1/kernel, 1/bias"});
  auto three = dense_stack(s2, {8, 3, 2});
  expect_error<FormatError>([&] { load_weights(*three, path); },
                            {path, "missing 2/kernel, 2/bias"});
  // load_variables keys by full names.
  std::string by_name = temp_path("names_by_name.safetensors");
  save_variables(a->weights(), by_name);
  Variable extra("extra", zeros({1}));
  auto ws = a->weights();
  ws.push_back(extra);
  expect_error<FormatError>([&] { load_variables(ws, by_name); }, {by_name, "missing extra"});
  ws.pop_back();
  ws.pop_back();
  expect_error<FormatError>([&] { load_variables(ws, by_name); }, {"unexpected net/out/bias"});
  Variable wrong("net/out/bias", zeros({3}, float64));
  ws.push_back(wrong);
  expect_error<DTypeError>([&] { load_variables(ws, by_name); }, {"net/out/bias", "float64"});
}

// Names come from the file: a 100 kB name is cut in the message, which stays one short line.
TEST(Checkpoint, UnexpectedLongNamesAreCutInTheMessage) {
  VariableStore s1(1);
  auto a = mlp(s1);
  std::string path = temp_path("long_names.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Variable& v : a->weights()) tensors.emplace_back(v.name(), v.value());
  tensors.emplace_back(std::string(100000, 'x'), zeros({1}));
  save_safetensors(path, tensors);
  try {
    load_weights(*a, path);
    ADD_FAILURE() << "loaded";
  } catch (const FormatError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find("missing 0/kernel"), std::string::npos) << what;
    EXPECT_NE(what.find("unexpected net/hidden/kernel"), std::string::npos) << what;
    EXPECT_TRUE(what.ends_with(", " + std::string(80, 'x') + "...")) << what;
    EXPECT_LT(what.size(), 600u) << what;
  }
}

TEST(Checkpoint, TruncatedFileIsAFormatErrorNamingTheFile) {
  VariableStore s1(1);
  auto a = mlp(s1);
  std::string path = temp_path("truncated.safetensors");
  save_weights(*a, path);
  fs::resize_file(path, fs::file_size(path) - 10);
  expect_error<FormatError>([&] { load_weights(*a, path); }, {path});
  expect_error<FormatError>([&] { load_weights(*a, temp_path("absent.safetensors")); },
                            {"absent.safetensors"});
}

TEST(Checkpoint, UnbuiltModelIsAStateError) {
  auto m = std::make_shared<Sequential>("unbuilt");
  m->emplace<Dense>(2);
  expect_error<StateError>([&] { save_weights(*m, temp_path("unbuilt.safetensors")); }, {});
  expect_error<StateError>([&] { load_weights(*m, temp_path("unbuilt.safetensors")); }, {});
}

TEST(Checkpoint, FailedSaveLeavesTheOldFile) {
  VariableStore s1(1);
  auto a = mlp(s1);
  std::string path = temp_path("keep.safetensors");
  save_weights(*a, path);
  auto size = fs::file_size(path);
  Variable dup("net/out/bias", zeros({3}));  // a duplicate name makes the save throw
  auto ws = a->weights();
  ws.push_back(dup);
  EXPECT_THROW(save_variables(ws, path), ValueError);
  EXPECT_EQ(fs::file_size(path), size);
  load_weights(*a, path);  // still a valid file
}

}  // namespace
}  // namespace kiln
