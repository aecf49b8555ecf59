// save_weights / load_weights: round trips, tied weights, and every validation error.
#include "kiln/nn/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/io.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/training.h"
#include "kiln/nn/variable_store.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;
namespace fs = std::filesystem;

// A per-process directory, removed at exit.
struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("kiln_checkpoint_test_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string temp_path(const std::string& name) {
  static TempDir temp;
  return (temp.dir / name).string();
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
  SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.tensors[0].first, "net/hidden/kernel");
  EXPECT_EQ(f.metadata.at("model"), "net");
}

TEST(Checkpoint, TiedWeightsAreStoredOnceAndStayTied) {
  VariableStore s1(1), s2(2);
  auto a = tied(s1);
  std::string path = temp_path("tied.safetensors");
  save_weights(*a, path);
  SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.tensors.size(), 2u);  // one kernel and one bias for both layers
  auto b = tied(s2);
  load_weights(*b, path);
  auto& la = static_cast<Dense&>(*b->layers()[0]);
  auto& lb = static_cast<Dense&>(*b->layers()[1]);
  EXPECT_EQ(la.kernel(), lb.kernel());
  EXPECT_TRUE(testing::all_close(lb.kernel().value(), f.at("tied/a/kernel"), 0, 0));
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
  auto other = tied(s2);
  expect_error<FormatError>([&] { load_weights(*other, path); },
                            {path, "missing tied/a/kernel", "unexpected net/hidden/kernel"});
  Variable extra("extra", zeros({1}));
  auto ws = a->weights();
  ws.push_back(extra);
  expect_error<FormatError>([&] { load_variables(ws, path); }, {path, "missing extra"});
  ws.pop_back();
  ws.pop_back();
  expect_error<FormatError>([&] { load_variables(ws, path); }, {"unexpected net/out/bias"});
  Variable wrong("net/out/bias", zeros({3}, float64));
  ws.push_back(wrong);
  expect_error<DTypeError>([&] { load_variables(ws, path); }, {"net/out/bias", "float64"});
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
