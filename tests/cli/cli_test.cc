// The `kiln` program, run in-process through kiln::cli::run on a tiny Fashion-MNIST-shaped data
// set written here (the real one is exercised by the slow tests and the README's main job).
#include "cli/cli.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/distributed.h"
#include "kiln/dtype_policy.h"
#include "ops/dtype_policy.h"
#include "testing/run_cli.h"
#include "testing/temp_dir.h"
#include "testing/tiny_fashion_mnist.h"

namespace kiln {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

using Result = testing::CliResult;
using testing::run_cli;

using testing::write_tiny_fashion_mnist;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny_fashion_mnist(dir_.path(), "train", 320);
    write_tiny_fashion_mnist(dir_.path(), "t10k", 100);
  }
  std::string path(const std::string& name) const { return dir_.path(name); }
  TempDir dir_{"kiln_cli_test_"};  // removed after each test
};

TEST_F(CliTest, TrainWritesWeightsAndMetricsThenEvalReadsThem) {
  Result r = run_cli({"train", "--model", "mlp", "--epochs", "2", "--batch-size", "32", "--threads",
                      "1", "--data", dir_.path(), "--out", path("w.safetensors"), "--metrics-out",
                      path("m.jsonl")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("weights saved to"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(path("w.safetensors")));

  std::ifstream m(path("m.jsonl"));
  std::string line;
  int epochs = 0;
  while (std::getline(m, line)) {
    auto j = nlohmann::json::parse(line);
    ++epochs;
    EXPECT_EQ(j["epoch"], epochs);
    for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}) {
      EXPECT_TRUE(j[key].is_number()) << key << " in " << line;
    }
    if (epochs == 2) EXPECT_GT(j["val_accuracy"].get<double>(), 0.5) << line;
  }
  EXPECT_EQ(epochs, 2);

  Result e = run_cli({"eval", "--model", "mlp", "--weights", path("w.safetensors"), "--data",
                      dir_.path(), "--threads", "1"});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("test accuracy"), std::string::npos) << e.out;

  // Weights of the other model do not fit: a clear error, exit 1.
  Result bad = run_cli(
      {"eval", "--model", "cnn", "--weights", path("w.safetensors"), "--data", dir_.path()});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err.rfind("kiln: error: ", 0), 0u) << bad.err;
  EXPECT_NE(bad.err.find("w.safetensors"), std::string::npos) << bad.err;
}

TEST_F(CliTest, GraphModeTrainsAndEvaluatesLikeEager) {
  auto train = [&](const std::string& out, bool graph_mode) {
    std::vector<std::string> args = {"train",        "--model", "mlp",       "--epochs", "1",
                                     "--batch-size", "32",      "--threads", "1",        "--data",
                                     dir_.path(),    "--out",   path(out)};
    if (graph_mode) args.push_back("--graph");
    return run_cli(args);
  };
  // (Eager and graph training from one seed match: tests/nn/graph_training_test.cc. Here two
  // models in one process get different unique layer names, hence different initial values.)
  Result graph = train("graph.safetensors", true);
  ASSERT_EQ(graph.code, 0) << graph.err;
  EXPECT_NE(graph.out.find("graph mode"), std::string::npos) << graph.out;
  EXPECT_NE(graph.out.find("test accuracy 1.0000"), std::string::npos) << graph.out;
  // Evaluating in graph mode prints what eager evaluation prints.
  Result e1 = run_cli({"eval", "--model", "mlp", "--weights", path("graph.safetensors"), "--data",
                       dir_.path(), "--threads", "1"});
  Result e2 = run_cli({"eval", "--model", "mlp", "--weights", path("graph.safetensors"), "--data",
                       dir_.path(), "--threads", "1", "--graph"});
  ASSERT_EQ(e2.code, 0) << e2.err;
  EXPECT_EQ(e2.out, e1.out);
}

// --precision bf16 trains under the mixed_bfloat16 policy (restored afterwards), or where the
// CPU lacks bf16 is refused with one line naming the missing feature.
TEST_F(CliTest, PrecisionBf16TrainsOrIsRefusedNamingTheMissingFeature) {
  const std::vector<std::string> args = {"train",
                                         "--model",
                                         "mlp",
                                         "--epochs",
                                         "1",
                                         "--batch-size",
                                         "32",
                                         "--threads",
                                         "1",
                                         "--data",
                                         dir_.path(),
                                         "--out",
                                         path("bf16.safetensors"),
                                         "--precision",
                                         "bf16"};
  if (bf16_unsupported_reason().empty()) {
    Result r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("bf16 mixed precision"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
    EXPECT_STREQ(dtype_policy(), "float32");
    detail::set_bf16_unsupported_for_testing(
        "this CPU lacks AVX512_BF16 and AMX-BF16 (oneDNN's ISA here is avx2)");
  }
  Result r = run_cli(args);
  detail::set_bf16_unsupported_for_testing("");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("kiln: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("mixed_bfloat16"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("AVX512_BF16"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_STREQ(dtype_policy(), "float32");
}

TEST_F(CliTest, SummaryNeedsNoData) {
  Result r = run_cli({"summary", "--model", "cnn"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("421,642"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(None, 14, 14, 32)"), std::string::npos) << r.out;
}

TEST_F(CliTest, HelpOnEveryCommand) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--help"}, {"train", "--help"}, {"eval", "--help"}, {"summary", "--help"}}) {
    Result r = run_cli(args);
    EXPECT_EQ(r.code, 0) << args[0];
    EXPECT_NE(r.out.find("--"), std::string::npos) << r.out;
  }
  EXPECT_NE(run_cli({"train", "--help"}).out.find("--metrics-out"), std::string::npos);
}

TEST_F(CliTest, BadArgumentsGiveOneClearLineAndExit2) {
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  for (const Case& c : std::vector<Case>{
           {{"train", "--model", "resnet"}, "resnet"},
           {{"train", "--model", "mlp", "--epochs", "0"}, "--epochs"},
           {{"train", "--model", "mlp", "--epochs", "two"}, "--epochs"},
           {{"train", "--model", "mlp", "--optimizer", "lbfgs"}, "lbfgs"},
           {{"train", "--model", "mlp", "--lr", "-1"}, "--lr"},
           {{"train", "--model", "mlp", "--data", "/no/such/dir"}, "/no/such/dir"},
           {{"train", "--model", "mlp", "--bogus"}, "--bogus"},
           {{"train", "--config", "/no/such.json"}, "/no/such.json"},
           {{"train", "--model", "mlp", "--resume", "/no/such.kiln"}, "/no/such.kiln"},
           {{"eval", "--model", "mlp"}, "--weights"},
           {{"eval", "--model", "mlp", "--weights", "/no/such/file"}, "/no/such/file"},
           {{"fly"}, "unknown command 'fly'"},
           {{"train", "--model", "mlp", "--batch-size", "2.5"}, "whole number"},
           {{"train", "--model", "mlp", "--bucket-mb", "0"}, "--bucket-mb"},
           {{"train", "--model", "mlp", "--timeout", "-3"}, "--timeout"},
           {{"train", "--model", "mlp", "--precision", "fp16"}, "fp16"},
           {{}, "A subcommand is required"},
       }) {
    Result r = run_cli(c.args);
    EXPECT_EQ(r.code, 2) << c.mentions;
    EXPECT_NE(r.err.find(c.mentions), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// Not launched by mpirun: with MPI, --distributed trains as the only rank; without, it is a
// clear error. (tests/distributed/cli_train_test.sh runs it under mpirun -np 2.)
TEST_F(CliTest, DistributedWithoutMpirunIsOneRankOrAClearError) {
  Result r = run_cli({"train", "--model", "mlp", "--distributed", "--threads", "1", "--data",
                      dir_.path(), "--out", path("w.safetensors")});
  if (distributed::built_with_mpi()) {
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("batch 64 over 1 rank, seed 0, 1 threads per rank"), std::string::npos)
        << r.out;
    EXPECT_TRUE(fs::exists(path("w.safetensors")));
  } else {
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err,
              "kiln: error: --distributed: this kiln was built without MPI (install "
              "libopenmpi-dev openmpi-bin and configure again)\n");
  }
}

TEST_F(CliTest, MissingDataNamesThePackage) {
  fs::create_directories(dir_.path("empty"));
  Result r = run_cli({"train", "--model", "mlp", "--data", dir_.path("empty")});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("dataset-fashion-mnist"), std::string::npos) << r.err;
}

TEST_F(CliTest, CorruptWeightsFileIsRefusedCleanly) {
  std::ofstream(path("bad.safetensors")) << "not a safetensors file";
  Result r = run_cli(
      {"eval", "--model", "mlp", "--weights", path("bad.safetensors"), "--data", dir_.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bad.safetensors"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kiln
