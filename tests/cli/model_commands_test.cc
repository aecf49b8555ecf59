// The model-file commands, in-process: train --out m.kiln, eval / predict / summary / freeze
// on it, --config, --resume (the same loss curve as an uninterrupted run), .npy data, and one
// clear line with exit 1 or 2 for each bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/io.h"
#include "kiln/ops.h"
#include "testing/run_cli.h"
#include "testing/temp_dir.h"
#include "testing/tiny_fashion_mnist.h"

namespace kiln {
namespace {

using testing::run_cli;
using testing::TempDir;
using testing::write_tiny_fashion_mnist;
namespace fs = std::filesystem;

class ModelCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny_fashion_mnist(dir_.path(), "train", 256);
    write_tiny_fashion_mnist(dir_.path(), "t10k", 64);
  }
  std::string path(const std::string& name) const { return dir_.path(name); }
  testing::CliResult train(std::vector<std::string> extra) {
    std::vector<std::string> args = {"train", "--batch-size", "32",       "--threads",
                                     "1",     "--data",       dir_.path()};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  std::vector<double> losses(const std::string& metrics) {
    std::ifstream f(metrics);
    std::vector<double> out;
    for (std::string line; std::getline(f, line);) {
      out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    }
    return out;
  }
  TempDir dir_{"kiln_model_cli_"};
};

TEST_F(ModelCommands, TrainWritesAModelFileThatEvalPredictAndSummaryRead) {
  auto r = train({"--model", "mlp", "--epochs", "1", "--out", path("m.kiln")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("model saved to " + path("m.kiln")), std::string::npos) << r.out;

  auto e = run_cli({"eval", path("m.kiln"), "--data", dir_.path(), "--threads", "1"});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("test accuracy"), std::string::npos) << e.out;

  // predict from .npy to .npy, at batch sizes 1 and 64: the same numbers.
  Tensor x = random_uniform({5, 28, 28, 1}, 0, 1, 1);
  save_npy(path("x.npy"), x);
  for (const char* batch : {"1", "64"}) {
    auto p = run_cli({"predict", path("m.kiln"), "--input", path("x.npy"), "--output",
                      path(std::string("y") + batch + ".npy"), "--batch-size", batch});
    ASSERT_EQ(p.code, 0) << p.err;
    EXPECT_NE(p.out.find("[5, 10] float32"), std::string::npos) << p.out;
  }
  Tensor y1 = load_npy(path("y1.npy")), y64 = load_npy(path("y64.npy"));
  ASSERT_EQ(y1.shape(), (Shape{5, 10}));
  for (int64_t i = 0; i < y1.numel(); ++i) {
    EXPECT_NEAR(y1.data<float>()[i], y64.data<float>()[i], 1e-5);
  }

  auto s = run_cli({"summary", path("m.kiln")});
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("Sequential"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("235,146"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("optimizer state"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("FLOPs per sample"), std::string::npos) << s.out;

  auto f = run_cli({"freeze", path("m.kiln"), "-o", path("f.kiln")});
  ASSERT_EQ(f.code, 0) << f.err;
  auto pf =
      run_cli({"predict", path("f.kiln"), "--input", path("x.npy"), "--output", path("yf.npy")});
  ASSERT_EQ(pf.code, 0) << pf.err;
  Tensor yf = load_npy(path("yf.npy"));
  for (int64_t i = 0; i < y1.numel(); ++i)
    EXPECT_NEAR(yf.data<float>()[i], y64.data<float>()[i], 1e-5);
  auto sf = run_cli({"summary", path("f.kiln")});
  EXPECT_NE(sf.out.find("no config (inference only)"), std::string::npos) << sf.out;
  // A frozen-only file cannot be trained further: one line saying why.
  auto rf = train({"--resume", path("f.kiln"), "--epochs", "2"});
  EXPECT_EQ(rf.code, 1);
  EXPECT_NE(rf.err.find("cannot be trained further"), std::string::npos) << rf.err;
}

TEST_F(ModelCommands, ResumeContinuesTheSameLossCurve) {
  ASSERT_EQ(train({"--model", "mlp", "--epochs", "3", "--out", path("full.kiln"), "--metrics-out",
                   path("full.jsonl")})
                .code,
            0);
  ASSERT_EQ(train({"--model", "mlp", "--epochs", "1", "--out", path("part.kiln"), "--metrics-out",
                   path("part1.jsonl")})
                .code,
            0);
  auto r = train({"--resume", path("part.kiln"), "--epochs", "3", "--out", path("part.kiln"),
                  "--metrics-out", path("part2.jsonl")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("resuming after epoch 1"), std::string::npos) << r.out;
  std::vector<double> full = losses(path("full.jsonl")), a = losses(path("part1.jsonl")),
                      b = losses(path("part2.jsonl"));
  ASSERT_EQ(full.size(), 3u);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(a[0], full[0]);
  EXPECT_EQ(b[0], full[1]);
  EXPECT_EQ(b[1], full[2]);
  auto again = train({"--resume", path("part.kiln"), "--epochs", "3"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("has trained 3 epochs already"), std::string::npos) << again.err;
}

TEST_F(ModelCommands, TrainsAnArchitectureFromAConfigAndNpyData) {
  const std::string config = path("model.json");
  std::ofstream(config) << R"({"class_name": "Sequential", "config": {"name": "tiny", "layers": [
      {"class_name": "Flatten", "config": {"name": "flatten"}},
      {"class_name": "Dense", "config": {"name": "hidden", "units": 16, "activation": "relu"}},
      {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.2}},
      {"class_name": "Dense", "config": {"name": "logits", "units": 10}}]}})";
  Tensor x = random_uniform({64, 28, 28, 1}, 0, 1, 2);
  Tensor y = cast(random_uniform({64}, 0, 9.99, 3), DType::kInt64);
  save_npy(path("x.npy"), x);
  save_npy(path("y.npy"), y);
  auto r = train({"--config", config, "--x", path("x.npy"), "--y", path("y.npy"), "--epochs", "2",
                  "--out", path("tiny.kiln")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("tiny on " + path("x.npy")), std::string::npos) << r.out;
  auto e = run_cli({"eval", path("tiny.kiln"), "--x", path("x.npy"), "--y", path("y.npy")});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("(64 examples)"), std::string::npos) << e.out;
}

TEST_F(ModelCommands, BadInputsGetOneLineAndExit1Or2) {
  ASSERT_EQ(train({"--model", "mlp", "--epochs", "1", "--out", path("m.kiln")}).code, 0);
  auto one_line = [](const testing::CliResult& r) {
    return std::count(r.err.begin(), r.err.end(), '\n') == 1;
  };
  // A truncated model file.
  fs::copy_file(path("m.kiln"), path("cut.kiln"));
  fs::resize_file(path("cut.kiln"), fs::file_size(path("cut.kiln")) / 2);
  auto cut = run_cli({"predict", path("cut.kiln"), "--input", path("m.kiln")});
  EXPECT_EQ(cut.code, 1);
  EXPECT_NE(cut.err.find("cut.kiln"), std::string::npos) << cut.err;
  EXPECT_TRUE(one_line(cut)) << cut.err;
  // A .npy of the wrong dtype.
  save_npy(path("x64.npy"), random_uniform({2, 28, 28, 1}, 0, 1, 4, DType::kFloat64));
  auto dt = run_cli({"predict", path("m.kiln"), "--input", path("x64.npy")});
  EXPECT_EQ(dt.code, 1);
  EXPECT_NE(dt.err.find("x64.npy holds float64"), std::string::npos) << dt.err;
  EXPECT_TRUE(one_line(dt)) << dt.err;
  // A .npy of the wrong shape.
  save_npy(path("x5.npy"), random_uniform({2, 5}, 0, 1, 4));
  auto sh = run_cli({"predict", path("m.kiln"), "--input", path("x5.npy")});
  EXPECT_EQ(sh.code, 1);
  EXPECT_NE(sh.err.find("[2, 5]"), std::string::npos) << sh.err;
  // Not a .npy at all.
  auto notnpy = run_cli({"predict", path("m.kiln"), "--input", path("m.kiln")});
  EXPECT_EQ(notnpy.code, 1);
  EXPECT_NE(notnpy.err.find("m.kiln"), std::string::npos) << notnpy.err;
  // An unknown layer type in a config.
  std::ofstream(path("bad.json")) << R"({"class_name": "Sequential", "config": {"name": "b",
      "layers": [{"class_name": "Frobnicate", "config": {"name": "f"}}]}})";
  auto unknown = train({"--config", path("bad.json")});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find("Frobnicate"), std::string::npos) << unknown.err;
  EXPECT_TRUE(one_line(unknown)) << unknown.err;
  // A missing field in the config.
  std::ofstream(path("nofield.json")) << R"({"class_name": "Sequential", "config": {"name": "b",
      "layers": [{"class_name": "Dense", "config": {"name": "d"}}]}})";
  auto missing = train({"--config", path("nofield.json")});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("units"), std::string::npos) << missing.err;
  // Argument errors: exit 2.
  EXPECT_EQ(run_cli({"predict", path("m.kiln")}).code, 2);  // --input is required
  EXPECT_EQ(run_cli({"train", "--model", "mlp", "--config", path("bad.json")}).code, 2);
  EXPECT_EQ(run_cli({"train", "--x", path("x5.npy")}).code, 2);  // --x needs --y
  EXPECT_EQ(run_cli({"eval"}).code, 2);
  EXPECT_EQ(run_cli({"freeze", path("m.kiln")}).code, 2);  // -o is required
  // Labels as floats: a clear dtype error.
  save_npy(path("yf.npy"), random_uniform({2}, 0, 1, 5));
  save_npy(path("x2.npy"), random_uniform({2, 28, 28, 1}, 0, 1, 5));
  auto labels = run_cli({"eval", path("m.kiln"), "--x", path("x2.npy"), "--y", path("yf.npy")});
  EXPECT_EQ(labels.code, 1);
  EXPECT_NE(labels.err.find("labels must be integer"), std::string::npos) << labels.err;
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

TEST_F(ModelCommands, ExportImportAndPredictOnnx) {
  ASSERT_EQ(train({"--model", "cnn", "--epochs", "1", "--out", path("c.kiln")}).code, 0);
  auto ex = run_cli({"export", path("c.kiln"), "--onnx", path("c.onnx"), "--opset", "17"});
  ASSERT_EQ(ex.code, 0) << ex.err;
  Tensor x = random_uniform({3, 28, 28, 1}, 0, 1, 6);
  save_npy(path("x.npy"), x);
  auto a =
      run_cli({"predict", path("c.kiln"), "--input", path("x.npy"), "--output", path("a.npy")});
  auto b = run_cli(
      {"predict", path("c.onnx"), "--input", "input=" + path("x.npy"), "--output", path("b.npy")});
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  Tensor ya = load_npy(path("a.npy")), yb = load_npy(path("b.npy"));
  ASSERT_EQ(ya.shape(), yb.shape());
  for (int64_t i = 0; i < ya.numel(); ++i)
    EXPECT_NEAR(ya.data<float>()[i], yb.data<float>()[i], 1e-5);
  auto im = run_cli({"import", path("c.onnx"), "-o", path("i.kiln")});
  ASSERT_EQ(im.code, 0) << im.err;
  auto s = run_cli({"summary", path("c.onnx")});
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("input  input: [?, 28, 28, 1] float32"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("FLOPs per sample"), std::string::npos) << s.out;
  auto e = run_cli({"eval", path("i.kiln"), "--data", dir_.path()});
  ASSERT_EQ(e.code, 0) << e.err;
  // A bad opset and a wrong input name.
  EXPECT_EQ(run_cli({"export", path("c.kiln"), "--onnx", path("d.onnx"), "--opset", "9"}).code, 2);
  auto bad = run_cli({"predict", path("c.onnx"), "--input", "pixels=" + path("x.npy")});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("no input named 'pixels'"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace kiln
