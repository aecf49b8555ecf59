// `kiln optimize`, in-process on a tiny Fashion-MNIST: pruning (the result keeps its config and
// trains on), int8 (a graph-only file), both, JSON output, .onnx input, and one clear line with
// exit 1 or 2 for each bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/graph_model.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "testing/run_cli.h"
#include "testing/temp_dir.h"
#include "testing/tiny_fashion_mnist.h"

namespace kiln {
namespace {

using testing::run_cli;
using testing::TempDir;
namespace fs = std::filesystem;

class Optimize : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_tiny_fashion_mnist(dir_.path(), "train", 256);
    testing::write_tiny_fashion_mnist(dir_.path(), "t10k", 64);
    auto r = run_cli({"train", "--model", "mlp", "--epochs", "1", "--batch-size", "32", "--threads",
                      "1", "--data", dir_.path(), "--out", path("m.kiln")});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  std::string path(const std::string& name) const { return dir_.path(name); }
  testing::CliResult optimize(std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "optimize", path("m.kiln"),    "--data", dir_.path(),   "--threads",
        "1",        "--latency-calls", "16",     "--calibrate", "64"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  TempDir dir_{"kiln_optimize_cli_"};
};

TEST_F(Optimize, PruningHalvesTheUnitsAndKeepsATrainableModel) {
  auto r = optimize({"--prune", "0.5", "--finetune-epochs", "1", "-o", path("p.kiln")});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* row : {"parameters", "bytes on disk", "FLOPs per sample", "accuracy (%)",
                          "batch 1 p50 (ms)", "batch 64 p99 (ms)", "peak memory (bytes)",
                          "256 ->    128 units", "with its config: trainable"}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  }
  LoadedModel m = load_model(path("p.kiln"));
  ASSERT_TRUE(m.model);  // pruned float models keep their architecture
  const GraphSummary s = m.graph.summary();
  EXPECT_EQ(s.parameters, 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
  // Multiply-adds x 2, plus at most one per element for the elementwise ops.
  const int64_t matmul_flops = 2 * (784 * 128 + 128 * 64 + 64 * 10);
  EXPECT_GE(s.flops_per_sample, matmul_flops);
  EXPECT_LE(s.flops_per_sample, matmul_flops + 784 + 2 * (128 + 64) + 10);
  // And it trains on from the file (its epoch count is the original's).
  auto t = run_cli({"train", "--resume", path("p.kiln"), "--epochs", "2", "--batch-size", "32",
                    "--threads", "1", "--data", dir_.path(), "--out", path("p2.kiln")});
  EXPECT_EQ(t.code, 0) << t.err;
}

TEST_F(Optimize, Int8WritesAGraphOnlyModelAndThePerLayerTable) {
  // Every layer int8 whatever its speed here (the per-layer timing differs under sanitizers).
  auto r = optimize(
      {"--int8", "--keep-slower-int8", "--max-drop", "100", "-o", path("q.kiln"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["int8"]["layers"].size(), 3u) << r.out;
  for (const auto& layer : j["int8"]["layers"]) EXPECT_TRUE(layer["int8"].get<bool>()) << r.out;
  // int8 weights count as parameters; the per-channel scales add a few.
  const int64_t before = j["before"]["parameters"], after = j["after"]["parameters"];
  EXPECT_GE(after, before) << r.out;
  EXPECT_LE(after, before + 256 + 128 + 10 + 16) << r.out;
  EXPECT_LT(j["after"]["bytes"].get<int64_t>(), j["before"]["bytes"].get<int64_t>() / 2) << r.out;
  EXPECT_GT(j["after"]["batch1_p50_ms"].get<double>(), 0) << r.out;
  EXPECT_EQ(j["out_file_bytes"].get<int64_t>(),
            static_cast<int64_t>(fs::file_size(path("q.kiln"))));
  LoadedModel m = load_model(path("q.kiln"));
  EXPECT_FALSE(m.model);
  EXPECT_EQ(m.predict(random_uniform({3, 28, 28, 1}, 0, 1, 2)).shape(), (Shape{3, 10}));
}

TEST_F(Optimize, PruningAndInt8Together) {
  auto r = optimize({"--prune", "0.5", "--finetune-epochs", "0", "--int8", "--max-drop", "100",
                     "--calibration", "percentile", "-o", path("pq.kiln")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("structured pruning"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("calibration percentile"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("graph only"), std::string::npos) << r.out;
}

TEST_F(Optimize, QuantizationAwareTrainingAndAQdqOnnxFile) {
  auto r = optimize({"--int8", "--qat-epochs", "1", "--max-drop", "100", "-o", path("qat.kiln"),
                     "--onnx", path("qat.onnx")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("quantization-aware training, 1 epoch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ONNX: " + path("qat.onnx")), std::string::npos) << r.out;
  // The ONNX file is the int8 model in QDQ form: it imports back and agrees with the .kiln.
  const GraphModel q = load_model(path("qat.kiln")).graph;
  const GraphModel back = import_onnx(path("qat.onnx"));
  const Tensor x = random_uniform({4, 28, 28, 1}, 0, 1, 3);
  const Tensor a = q(x), b = back(x);
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_NEAR(a.data<float>()[i], b.data<float>()[i], 0.5);
}

TEST_F(Optimize, TakesAnOnnxModelForInt8ButNotForPruning) {
  export_onnx(load_model(path("m.kiln")).graph, path("m.onnx"));
  auto q = run_cli({"optimize", path("m.onnx"), "--int8", "--max-drop", "100", "--data",
                    dir_.path(), "--threads", "1", "--latency-calls", "8", "-o", path("o.kiln")});
  EXPECT_EQ(q.code, 0) << q.err;
  auto p = run_cli(
      {"optimize", path("m.onnx"), "--prune", "0.5", "--data", dir_.path(), "-o", path("o2.kiln")});
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("--prune needs the model's architecture; " + path("m.onnx") +
                       " holds only a graph"),
            std::string::npos)
      << p.err;
  EXPECT_FALSE(fs::exists(path("o2.kiln")));
}

TEST_F(Optimize, BadRequestsAreOneClearLine) {
  auto none = optimize({"-o", path("x.kiln")});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("nothing to do: give --prune FRACTION and/or --int8"), std::string::npos)
      << none.err;
  auto range = optimize({"--prune", "1.5", "-o", path("x.kiln")});
  EXPECT_EQ(range.code, 2);
  EXPECT_NE(range.err.find("--prune"), std::string::npos) << range.err;
  auto calib = optimize({"--int8", "--calibration", "kl", "-o", path("x.kiln")});
  EXPECT_EQ(calib.code, 2);
  EXPECT_NE(calib.err.find("--calibration"), std::string::npos) << calib.err;
  auto qat = optimize({"--qat-epochs", "1", "-o", path("x.kiln")});
  EXPECT_EQ(qat.code, 1);
  EXPECT_NE(qat.err.find("--qat-epochs trains for int8: give --int8 too"), std::string::npos)
      << qat.err;
  auto missing_out = optimize({"--int8"});
  EXPECT_EQ(missing_out.code, 2);
  EXPECT_NE(missing_out.err.find("--out"), std::string::npos) << missing_out.err;
  EXPECT_FALSE(fs::exists(path("x.kiln")));
}

}  // namespace
}  // namespace kiln
