// `kiln inspect`: the report after eager and graph steps, as text and JSON, and every error path.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "kiln/dtype_policy.h"
#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "testing/run_cli.h"
#include "testing/temp_dir.h"
#include "testing/tiny_fashion_mnist.h"

namespace kiln {
namespace {

using Result = testing::CliResult;
using testing::run_cli;

TEST(Inspect, TextReportAfterEagerAndGraphSteps) {
  Result r = run_cli({"inspect", "--model", "cnn", "--cache", "--threads", "1", "--steps", "2",
                      "--batch-size", "8"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("kiln inspect: cnn, batches of 8 (synthetic data): eager 2 training "
                       "steps and 2 inference batches; graph 3 inference calls and 2 training "
                       "steps (fit with graph = true)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Functions: 2"), std::string::npos) << r.out;  // forward and train step
  EXPECT_NE(r.out.find("cnn_forward"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("last retrace: arg 0: shape [8, 28, 28, 1] -> [4, 28, 28, 1]"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("conv2d filter in oneDNN layout (forward)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Model::summary"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Kernels (oneDNN primitives)"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(Inspect, JsonReport) {
  Result r = run_cli({"inspect", "--model", "mlp", "--cache", "--json", "--threads", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  EXPECT_EQ(keys, (std::set<std::string>{"variables", "functions", "folded_constants", "instances",
                                         "kernels", "arenas", "allocator"}));
  bool found = false;
  for (const auto& f : j["functions"]) {
    if (f["name"] == "mlp_forward") {
      found = true;
      EXPECT_EQ(f["traces"], 2);
      EXPECT_EQ(f["hits"], 2);  // 3 batches of 32 (1 trace, 2 hits) and one of 16
    }
  }
  EXPECT_TRUE(found) << r.out;
  EXPECT_GE(j["variables"]["count"].get<int>(), 6);
  EXPECT_GT(j["kernels"]["primitives"].get<int>(), 0);
}

TEST(Inspect, HelpListsItsOptions) {
  Result r = run_cli({"inspect", "--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* opt : {"--model", "--cache", "--json", "--steps", "--data", "--profile",
                          "--train", "--trace", "--batch"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << " in " << r.out;
  }
}

TEST(Inspect, BadArgumentsGiveOneLineAndExit2) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"inspect", "--cache"}, "kiln inspect: --model is required"},
           {{"inspect", "--model", "resnet", "--cache"}, "resnet"},
           {{"inspect", "--model", "mlp"}, "kiln inspect: give one of --cache and --profile"},
           {{"inspect", "--model", "mlp", "--cache", "--profile"},
            "kiln inspect: give one of --cache and --profile"},
           {{"inspect", "--model", "/no/such.kiln", "--profile"},
            "/no/such.kiln: not mlp, cnn or an existing model file"},
           {{"inspect", "--model", "mlp", "--cache", "--train"}, "--train requires --profile"},
           {{"inspect", "--model", "mlp", "--cache", "--trace", "t.json"},
            "--trace requires --profile"},
           {{"inspect", "--model", "mlp", "--cache", "--steps", "0"}, "--steps"},
           {{"inspect", "--model", "mlp", "--cache", "--batch-size", "x"}, "--batch-size"},
           {{"inspect", "--model", "mlp", "--cache", "--data", "/no/such/dir"}, "/no/such/dir"},
           {{"inspect", "--model", "mlp", "--cache", "--bogus"}, "--bogus"},
           {{"inspect", "--model", "mlp", "--cache", "--precision", "bf16"},
            "--precision requires --profile"},
           {{"inspect", "--model", "mlp", "--profile", "--precision", "fp16"}, "fp16"},
       }) {
    Result r = run_cli(c.args);
    EXPECT_EQ(r.code, 2) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty());
  }
}

TEST(Inspect, MissingDataSetIsAnErrorExit1) {
  testing::TempDir dir("kiln_inspect_test_");
  Result r = run_cli({"inspect", "--model", "mlp", "--cache", "--data", dir.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("kiln: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("dataset-fashion-mnist"), std::string::npos) << r.err;
}

TEST(Inspect, ASliceOfARealDataSet) {
  testing::TempDir dir("kiln_inspect_test_");
  testing::write_tiny_fashion_mnist(dir.path(), "train", 40);
  testing::write_tiny_fashion_mnist(dir.path(), "t10k", 10);
  Result ok = run_cli({"inspect", "--model", "mlp", "--cache", "--data", dir.path(), "--steps", "2",
                       "--batch-size", "16", "--threads", "1"});
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find(dir.path()), std::string::npos) << ok.out;
  Result small = run_cli({"inspect", "--model", "mlp", "--cache", "--data", dir.path(), "--steps",
                          "3", "--batch-size", "16"});
  EXPECT_EQ(small.code, 1);
  EXPECT_NE(small.err.find("kiln: error: --data " + dir.path() +
                           ": 40 training images, fewer than the 48 that --steps and "
                           "--batch-size ask for"),
            std::string::npos)
      << small.err;
}

TEST(InspectProfile, Bf16PrecisionIsNamedAndRestoredOrRefused) {
  Result r = run_cli({"inspect", "--profile", "--model", "mlp", "--train", "--batch", "8",
                      "--steps", "2", "--threads", "1", "--precision", "bf16"});
  if (!bf16_unsupported_reason().empty()) {  // refused by name, exit 1
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("mixed_bfloat16"), std::string::npos) << r.err;
    return;
  }
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(1 thread, bf16 mixed precision)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dtype_policy=mixed_bfloat16"), std::string::npos) << r.out;
  EXPECT_STREQ(dtype_policy(), "float32");  // the command leaves the process as it found it
}

TEST(InspectProfile, CnnTrainingStepsByOpWithATrace) {
  testing::TempDir dir("kiln_inspect_test_");
  const std::string trace = dir.path() + "/step.json";
  Result r = run_cli({"inspect", "--profile", "--model", "cnn", "--train", "--batch", "8",
                      "--steps", "2", "--threads", "1", "--trace", trace});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("kiln inspect --profile: cnn, batch 8, 2 training steps recorded (1 "
                       "thread)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("2 x train_step (float32 [8, 28, 28, 1], int32 [8], training=true)"),
            std::string::npos)
      << r.out;
  for (const char* op : {"fused_conv2d", "conv2d_backward_filter", "conv2d_backward_input",
                         "adam_update", "x floor"}) {
    EXPECT_NE(r.out.find(op), std::string::npos) << op << " in\n" << r.out;
  }
  EXPECT_NE(r.out.find("Chrome trace of 2 runs written to " + trace), std::string::npos) << r.out;
  std::ifstream in(trace);
  nlohmann::json doc = nlohmann::json::parse(in);
  EXPECT_GT(doc["traceEvents"].size(), 20u);
}

TEST(InspectProfile, InferenceAsJsonAndOfAModelFile) {
  Result r = run_cli({"inspect", "--profile", "--json", "--threads", "1", "--steps", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["runs"][0]["function"], "mlp_forward (float32 [32, 28, 28, 1], training=false)");

  testing::TempDir dir("kiln_inspect_test_");
  const std::string file = dir.path() + "/m.kiln";
  auto model = make_mlp();
  model->output_shape(Shape{1, 28, 28, 1});  // builds it
  save_model(*model, file);
  Result m = run_cli({"inspect", "--profile", "--model", file, "--batch", "4", "--per-step"});
  ASSERT_EQ(m.code, 0) << m.err;
  EXPECT_NE(m.out.find("inference calls (frozen graph)"), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("fused_matmul"), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("steps of "), std::string::npos) << m.out;
  Result mt = run_cli({"inspect", "--profile", "--model", file, "--train", "--batch", "4"});
  ASSERT_EQ(mt.code, 0) << mt.err;
  EXPECT_NE(mt.out.find("adam_update"), std::string::npos) << mt.out;
}

TEST(InspectProfile, AnUnwritableTraceIsOneErrorAndNoFile) {
  testing::TempDir dir("kiln_inspect_test_");
  const std::string trace = dir.path() + "/missing/step.json";
  Result r = run_cli({"inspect", "--profile", "--threads", "1", "--steps", "1", "--trace", trace});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("kiln: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(trace), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(std::filesystem::exists(trace));
}

TEST(Inspect, UnknownCommandListsInspect) {
  Result r = run_cli({"inspekt"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("commands: train, eval, predict, summary, freeze, export, import, optimize, "
                       "inspect"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace kiln
