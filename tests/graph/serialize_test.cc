// Graph JSON: round trips by op name and attribute schema, and every way a file can be wrong.
#include "graph/serialize.h"

#include <gtest/gtest.h>

#include <limits>

#include <nlohmann/json.hpp>

#include "graph/tracer.h"
#include "kiln/graph_model.h"
#include "kiln/ops.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln::graph {
namespace {

using json = nlohmann::json;
using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

Graph conv_graph() {
  const Tensor filter = random_tensor({3, 3, 3, 4}, float32, 1);
  const Tensor bias = random_tensor({4}, float32, 2);  // made before tracing: constants
  Tracer t;
  Tensor x = t.add_input(Shape{2, 8, 8, 3}, float32);
  Tensor y = conv2d(x, filter, {.strides = {2, 2}, .padding = Padding::kSame});
  y = max_pool2d(relu(y + bias));
  t.set_outputs({softmax(reshape(y, {-1, 16}))});
  return t.take();
}

std::map<std::string, Tensor> as_map(const std::vector<std::pair<std::string, Tensor>>& v) {
  return {v.begin(), v.end()};
}

TEST(GraphJson, RoundTripsAndRunsTheSame) {
  Graph g = conv_graph();
  std::vector<std::pair<std::string, Tensor>> constants;
  json j = graph_to_json(g, "graph/", constants);
  EXPECT_EQ(j["nodes"][0]["op"], "conv2d");
  EXPECT_EQ(j["nodes"][0]["attrs"]["padding"], "same");
  EXPECT_EQ(j["nodes"][0]["attrs"]["strides"], json({2, 2}));
  EXPECT_EQ(constants.size(), 2u);
  // Through text, as a file holds it.
  Graph back = graph_from_json(json::parse(j.dump()), as_map(constants), "test");
  EXPECT_EQ(back.to_text(), g.to_text());
  Tensor x = random_tensor({2, 8, 8, 3}, float32, 3);
  EXPECT_TRUE(all_close(execute(back, {x})[0], execute(g, {x})[0], 0, 0));
}

TEST(GraphJson, AttrsOfEveryOpRoundTrip) {
  // Every registered op's schema: attrs built from the JSON of default-ish values come back.
  json a = attrs_to_json(ops::kMatmul, Attrs{0, 1});
  EXPECT_EQ(a, json({{"transpose_a", false}, {"transpose_b", true}}));
  EXPECT_TRUE(attrs_from_json(ops::kMatmul, a, "t") == (Attrs{0, 1}));
  Attrs cast;
  cast.add_int(static_cast<int64_t>(DType::kInt64));
  json c = attrs_to_json(ops::kCast, cast);
  EXPECT_EQ(c.dump(), R"({"dtype":"int64"})");
  EXPECT_TRUE(attrs_from_json(ops::kCast, c, "t") == cast);
}

TEST(GraphJson, NonFiniteFloatAttrsRoundTrip) {
  Attrs a;
  for (int k = 0; k < 4; ++k) a.add_int(k % 2);
  a.add_float(-std::numeric_limits<double>::infinity());
  json j = attrs_to_json(ops::kPad, a);
  EXPECT_EQ(j["value"], "-inf");
  EXPECT_TRUE(attrs_from_json(ops::kPad, json::parse(j.dump()), "t") == a);
  j["value"] = "minus infinity";
  expect_error<FormatError>([&] { attrs_from_json(ops::kPad, j, "t"); }, {"'value'", "\"-inf\""});
}

TEST(GraphJson, BadFilesAreFormatErrorsNamingWhatIsWrong) {
  Graph g = conv_graph();
  std::vector<std::pair<std::string, Tensor>> constants;
  const json good = graph_to_json(g, "graph/", constants);
  const auto consts = as_map(constants);
  auto expect_bad = [&](const std::function<void(json&)>& edit,
                        const std::vector<std::string>& parts) {
    json j = good;
    edit(j);
    expect_error<FormatError>([&] { graph_from_json(j, consts, "m.kiln"); }, parts);
  };
  expect_bad([](json& j) { j["nodes"][1]["op"] = "frobnicate"; },
             {"m.kiln", "node 1", "unknown op \"frobnicate\""});
  expect_bad([](json& j) { j["version"] = 2; }, {"version 2", "newer"});
  expect_bad([](json& j) { j.erase("nodes"); }, {"'nodes' is missing"});
  expect_bad([](json& j) { j["nodes"][0]["attrs"]["padding"] = "full"; },
             {"node 0 (conv2d)", "padding", "valid|same"});
  expect_bad([](json& j) { j["nodes"][0]["attrs"]["strides"] = {1}; },
             {"strides", "list of 2 values"});
  expect_bad([](json& j) { j["nodes"][0]["attrs"]["spin"] = 1; }, {"unknown attribute 'spin'"});
  expect_bad([](json& j) { j["nodes"][0]["attrs"].erase("groups"); }, {"'groups' is missing"});
  expect_bad([](json& j) { j["nodes"][0]["inputs"] = {0, 999}; }, {"999", "not a value id"});
  expect_bad([](json& j) { j["values"][1]["tensor"] = "graph/nope"; },
             {"graph/nope", "not in the file"});
  expect_bad(
      [](json& j) {
        j["values"][1]["shape"] = {3, 3, 3, 5};
      },
      {"value %1", "[3, 3, 3, 4]", "declared [3, 3, 3, 5]"});
  expect_bad([](json& j) { j["values"][0]["dtype"] = "complex64"; },
             {"complex64", "not a kiln dtype"});
  expect_bad([](json& j) { j["values"][0]["shape"] = {-2, 8}; }, {"not >= 0"});
  expect_bad([](json& j) { j["values"][0]["kind"] = "ghost"; }, {"kind \"ghost\""});
  expect_bad([](json& j) { j["nodes"][2]["outputs"] = j["nodes"][1]["outputs"]; },
             {"node 2", "not a fresh node value"});
  expect_bad([](json& j) { j["nodes"][0]["attrs"]["groups"] = "one"; }, {"groups", "an integer"});
}

}  // namespace
}  // namespace kiln::graph
