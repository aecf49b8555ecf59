// export_onnx, judged by tools kiln did not write: every exported model must pass ONNX's
// checker (full_check, python3-onnx) and give kiln's outputs to 1e-5 in ONNX Runtime
// (bench/peers/ort/run.mjs over npm onnxruntime-node) on Fashion-MNIST test images at batch 1
// and 64. The peer checks skip with a message where node, the npm package, python3-onnx or the
// data set is absent; CI installs them all.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "graph/fusion.h"
#include "graph/graph.h"
#include "graph/tracer.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "run_command.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

const std::string kSource = KILN_SOURCE_DIR;
// The npm prefix holding onnxruntime-node: $KILN_ORT_DIR, else the build tree's peers/ort.
const std::string kOrtDir =
    std::getenv("KILN_ORT_DIR") ? std::getenv("KILN_ORT_DIR") : KILN_ORT_DIR;

using testing::CommandResult;
CommandResult run(const std::string& cmd) { return testing::run_command(cmd); }

// ---- the peers ----------------------------------------------------------------------------

// The first n Fashion-MNIST test images, [n, 28, 28, 1] in [0, 1]; undefined when absent.
Tensor test_images(int64_t n) {
  const std::string file = default_fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz";
  if (!std::filesystem::exists(file)) return Tensor();
  Tensor raw = read_idx(file);
  const uint8_t* p = static_cast<const uint8_t*>(raw.raw_data());
  std::vector<float> v(p, p + n * 784);
  for (float& x : v) x /= 255.0f;
  return from_vector(v, Shape{n, 28, 28, 1});
}

struct Peers {
  std::string skip;  // why the peer checks cannot run ("" when they can)
  Tensor x1, x64;
};

const Peers& peers() {
  static const Peers p = [] {
    Peers r;
    r.x1 = test_images(1);
    r.x64 = test_images(64);
    if (!r.x64.defined()) {
      r.skip = "Fashion-MNIST test images not found under " + default_fashion_mnist_dir() +
               " (Debian: apt-get install dataset-fashion-mnist)";
      return r;
    }
    CommandResult py = run("/usr/bin/python3 -c 'import onnx'");
    if (py.rc != 0) {
      r.skip =
          "python3-onnx not available to /usr/bin/python3 (Debian: apt-get install python3-onnx)";
      return r;
    }
    CommandResult ort =
        run("node " + kSource + "/bench/peers/ort/run.mjs --self-test --ort " + kOrtDir);
    if (ort.rc != 0) {
      r.skip = "ONNX Runtime peer unavailable (install node and run bench/peers/ort/install.sh " +
               kOrtDir + "): " + ort.out;
    }
    return r;
  }();
  return p;
}

#define SKIP_WITHOUT_PEERS()                                 \
  do {                                                       \
    if (!peers().skip.empty()) GTEST_SKIP() << peers().skip; \
  } while (0)

// export_check.py's verdict on one file.
nlohmann::json onnx_check(const std::string& file) {
  CommandResult r = run("/usr/bin/python3 " + kSource + "/tests/onnx/export_check.py " + file);
  EXPECT_EQ(r.rc, 0) << r.out;
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "export_check.py printed: " << r.out;
    return {};
  }
}

// Runs `onnx_file` in ONNX Runtime on x and expects kiln's `want` to 1e-5 (relative above 1).
void expect_ort_matches(const std::string& dir, const std::string& onnx_file, const Tensor& x,
                        const Tensor& want) {
  const std::string tag = std::to_string(x.shape()[0]);
  const std::string xin = dir + "/x" + tag + ".npy", yout = dir + "/y" + tag + ".npy";
  save_npy(xin, x);
  CommandResult r = run("node " + kSource + "/bench/peers/ort/run.mjs --ort " + kOrtDir +
                        " --model " + onnx_file + " --input " + xin + " --output " + yout);
  ASSERT_EQ(r.rc, 0) << r.out;
  const Tensor got = load_npy(yout);  // kiln's reader: checks what run.mjs wrote
  ASSERT_EQ(got.dtype(), float32);
  ASSERT_EQ(got.shape(), want.shape()) << onnx_file;
  const float* g = static_cast<const float*>(got.raw_data());
  const float* w = static_cast<const float*>(want.raw_data());
  double worst = 0;
  for (int64_t k = 0; k < got.numel(); ++k) {
    worst = std::max(worst, std::abs(double(g[k]) - w[k]) / std::max(1.0, std::abs(double(w[k]))));
  }
  EXPECT_LE(worst, 1e-5) << onnx_file << " at batch " << tag;
  std::printf("  %s at batch %s: %zu outputs, largest difference %.3g\n",
              std::filesystem::path(onnx_file).filename().c_str(), tag.c_str(),
              static_cast<size_t>(got.numel()), worst);
}

// Exports `frozen`, checks it with ONNX's checker and runs it in ONNX Runtime at batch 1 and
// 64 against kiln. Returns the checker's summary (ops, initializers).
nlohmann::json export_and_compare(const GraphModel& frozen, const std::string& name,
                                  int opset = 13) {
  testing::TempDir dir("kiln_onnx_export_");
  const std::string file = dir.path() + "/" + name + ".onnx";
  export_onnx(frozen, file, {.opset = opset});
  nlohmann::json summary = onnx_check(file);
  EXPECT_EQ(summary.value("opset", 0), opset);
  // The batch dim is symbolic; the rest are kiln's.
  EXPECT_EQ(summary["port_dims"][0].dump(), R"(["N",28,28,1])");
  for (const Tensor& x : {peers().x1, peers().x64}) {
    expect_ort_matches(dir.path(), file, x, frozen(x));
  }
  return summary;
}

int count(const nlohmann::json& s, const char* op) { return s["ops"].value(op, 0); }

// ---- models -------------------------------------------------------------------------------

// Conv (strided, same) + BatchNorm + relu, max pool, dropout, conv (valid) + BatchNorm, avg
// pool (same, uneven pads), global average pooling, dense: with moving statistics far from
// their initial values, so folding them matters.
std::shared_ptr<Sequential> bn_dropout_cnn() {
  auto m = std::make_shared<Sequential>();
  m->add(
      std::make_shared<Conv2D>(8, std::array<int64_t, 2>{3, 3},
                               Conv2DLayerOptions{.strides = {2, 2}, .padding = Padding::kSame}));
  auto bn1 = std::make_shared<BatchNormalization>();
  m->add(bn1);
  m->add(std::make_shared<Activation>("relu"));
  m->add(std::make_shared<MaxPool2D>());
  m->add(std::make_shared<Dropout>(0.5));
  m->add(std::make_shared<Conv2D>(16, std::array<int64_t, 2>{2, 2}));
  auto bn2 = std::make_shared<BatchNormalization>();
  m->add(bn2);
  m->add(std::make_shared<Activation>("relu"));
  m->add(std::make_shared<AvgPool2D>(
      Pool2DLayerOptions{.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame}));
  m->add(std::make_shared<GlobalAveragePooling2D>());
  m->add(std::make_shared<Dropout>(0.2));
  m->add(std::make_shared<Dense>(10));
  (*m)(zeros({1, 28, 28, 1}));
  uint64_t seed = 100;
  for (auto* bn : {bn1.get(), bn2.get()}) {
    const Shape c = bn->gamma().value().shape();
    bn->gamma().assign(random_uniform(c, 0.5, 1.5, ++seed));
    bn->beta().assign(random_normal(c, 0, 0.5, ++seed));
    bn->moving_mean().assign(random_normal(c, 0, 0.3, ++seed));
    bn->moving_variance().assign(random_uniform(c, 0.2, 2.0, ++seed));
  }
  return m;
}

// A conv and a dense layer each used twice (share_weights_with): stored once in the file.
std::shared_ptr<Sequential> shared_weights_model() {
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Conv2D>(
      8, std::array<int64_t, 2>{3, 3},
      Conv2DLayerOptions{.padding = Padding::kSame, .activation = "relu"}));
  auto conv =
      std::make_shared<Conv2D>(8, std::array<int64_t, 2>{3, 3},
                               Conv2DLayerOptions{.padding = Padding::kSame, .activation = "relu"});
  m->add(conv);
  m->add(std::make_shared<Conv2D>(
      8, std::array<int64_t, 2>{3, 3},
      Conv2DLayerOptions{
          .padding = Padding::kSame, .activation = "relu", .share_weights_with = conv.get()}));
  m->add(std::make_shared<MaxPool2D>());
  m->add(std::make_shared<Flatten>());
  m->add(std::make_shared<Dense>(32, "relu"));
  auto dense = std::make_shared<Dense>(32, "tanh");
  m->add(dense);
  m->add(std::make_shared<Dense>(
      32, DenseOptions{.activation = "sigmoid", .share_weights_with = dense.get()}));
  m->add(std::make_shared<Dense>(10, "softmax"));
  (*m)(zeros({1, 28, 28, 1}));
  return m;
}

// ---- the peer checks ------------------------------------------------------------------------

TEST(OnnxExportPeer, MlpMatchesOnnxRuntime) {
  SKIP_WITHOUT_PEERS();
  VariableStore store(11);
  auto mlp = make_mlp(&store);
  nlohmann::json s = export_and_compare(freeze(*mlp), "mlp");
  EXPECT_EQ(count(s, "Gemm"), 3) << s.dump();  // bias adds folded into Gemm's C
  EXPECT_EQ(count(s, "Transpose"), 0) << s.dump();
  EXPECT_EQ(s.value("float_params", 0), mlp->count_params());
}

TEST(OnnxExportPeer, CnnMatchesOnnxRuntimeWithTransposesOnlyAtTheEdges) {
  SKIP_WITHOUT_PEERS();
  VariableStore store(12);
  auto cnn = make_cnn(&store);
  nlohmann::json s = export_and_compare(freeze(*cnn), "cnn");
  // NCHW inside: one Transpose after the input, one before Flatten's reshape.
  EXPECT_EQ(count(s, "Transpose"), 2) << s.dump();
  EXPECT_EQ(count(s, "Conv"), 2) << s.dump();
  EXPECT_EQ(count(s, "Add"), 0) << s.dump();  // conv biases are Conv's B input
  EXPECT_EQ(s.value("float_params", 0), cnn->count_params());
}

TEST(OnnxExportPeer, CnnAtOpset17) {
  SKIP_WITHOUT_PEERS();
  VariableStore store(13);
  auto cnn = make_cnn(&store);
  export_and_compare(freeze(*cnn), "cnn17", 17);
}

TEST(OnnxExportPeer, BatchNormDropoutCnnFoldedAndUnfolded) {
  SKIP_WITHOUT_PEERS();
  auto m = bn_dropout_cnn();
  nlohmann::json folded = export_and_compare(freeze(*m), "bn_folded");
  EXPECT_EQ(count(folded, "Sqrt"), 0) << folded.dump();
  EXPECT_EQ(count(folded, "Dropout"), 0) << folded.dump();
  // Unfolded: BatchNorm's elementwise ops run on NCHW with [1, C, 1, 1] constants.
  nlohmann::json unfolded =
      export_and_compare(freeze(*m, {.fold_batch_norm = false}), "bn_unfolded");
  EXPECT_EQ(count(unfolded, "Transpose"), 1) << unfolded.dump();  // global pooling gives [N, C]
}

TEST(OnnxExportPeer, SharedWeightsAreStoredOnce) {
  SKIP_WITHOUT_PEERS();
  auto m = shared_weights_model();
  nlohmann::json s = export_and_compare(freeze(*m), "shared");
  EXPECT_EQ(s.value("float_params", 0), m->count_params()) << s.dump();
  EXPECT_EQ(count(s, "Conv"), 3) << s.dump();
}

TEST(OnnxExportPeer, LayerOverloadFreezesFirst) {
  SKIP_WITHOUT_PEERS();
  VariableStore store(15);
  auto mlp = make_mlp(&store);
  testing::TempDir dir("kiln_onnx_export_");
  export_onnx(*mlp, dir.path() + "/m.onnx", {.opset = 17});
  EXPECT_EQ(onnx_check(dir.path() + "/m.onnx").value("opset", 0), 17);
  expect_ort_matches(dir.path(), dir.path() + "/m.onnx", peers().x64, (*mlp)(peers().x64));
}

// A GraphModel of f over [N, 28, 28, 1] images, traced with kiln's ops.
GraphModel traced(const std::function<Tensor(const Tensor&)>& f) {
  graph::Graph g;
  {
    graph::Tracer t;
    Tensor x = t.add_input(Shape{2, 28, 28, 1}, float32);
    t.set_outputs({f(x)});
    g = t.take();
  }
  std::vector<int64_t> out = g.values[g.outputs[0]].meta.shape.vec();
  out[0] = kUnknownDim;
  return GraphModel(std::move(g), {{"input", {{kUnknownDim, 28, 28, 1}, float32}}},
                    {{"output", {out, float32}}});
}

// Every mapped op beyond the built-in models': layout-free ops met in NCHW (softmax, concat,
// reductions keeping or dropping dims, transposes composed with the layout change), grouped
// and dilated convs, strided same pools, slices, pads, gathers, batched matmuls with
// transposes, comparisons, where, gelu both ways.
Tensor many_ops(const Tensor& x) {
  const Tensor w1 = random_normal({3, 3, 1, 4}, 0, 0.5, 1),
               w2 = random_normal({5, 5, 1, 4}, 0, 0.3, 2);
  const Tensor w3 = random_normal({3, 3, 4, 8}, 0, 0.3, 3);
  Tensor c = leaky_relu(conv2d(x, w1, {.padding = Padding::kSame}), 0.1);
  c = max_pool2d(c, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame});
  Tensor d = gelu(conv2d(x, w2, {.strides = {2, 2}, .padding = Padding::kSame}));
  Tensor s = softmax(concat({c, d}, 3), -1);  // [N, 14, 14, 8]
  s = s * random_uniform({8}, 0.5, 2, 4) + random_normal({1, 14, 1, 1}, 0, 1, 5);
  Tensor g = conv2d(s, w3, {.dilation = {2, 2}, .groups = 2});  // [N, 10, 10, 8]
  g = avg_pool2d(g, {.pool_size = {2, 2}, .strides = {1, 1}, .padding = Padding::kSame});
  Tensor t = transpose(g, {0, 3, 1, 2});                                           // [N, 8, 10, 10]
  Tensor sl = slice(t, {0, 1, 0}, {1000, 7, 10}, {1, 2, 3});                       // [N, 3, 10, 4]
  Tensor p = pad(sl, {{0, 0}, {1, 0}, {0, 2}}, 0.5);                               // [N, 4, 12, 4]
  Tensor r1 = mean(p, {2, 3});                                                     // [N, 4]
  Tensor r2 = max(g, {1, 2});                                                      // [N, 8]
  Tensor r3 = sum(g, {3});                                                         // [N, 10, 10]
  Tensor r4 = reshape(sum(g, {1}, true), {-1, 80});                                // [N, 80]
  Tensor e = gather(r2, from_vector<int64_t>({0, 3, 5}), 1);                       // [N, 3]
  Tensor m = gelu(matmul(r1, random_normal({6, 4}, 0, 1, 6), false, true), true);  // [N, 6]
  Tensor b = reshape(matmul(r3, random_normal({10, 5}, 0, 1, 7), true), {-1, 50});  // [N, 50]
  Tensor all = concat({r1, r2, reshape(r3, {-1, 100}), r4, e, m, b}, 1);
  Tensor y =
      where(greater(all, scalar(0.1)), sqrt(abs(all) + 1.0), neg(exp(minimum(all, scalar(1.0)))));
  y = y + square(sigmoid(all)) / maximum(tanh(all), scalar(0.5)) - pow(abs(all) + 1.0, scalar(0.5));
  Tensor mask = cast(not_equal(argmax(all, 1, true), scalar(3, int64)), float32);
  return log_softmax(concat({y, mask}, 1), 1);
}

TEST(OnnxExportPeer, ManyOpsMatchOnnxRuntime) {
  SKIP_WITHOUT_PEERS();
  nlohmann::json s = export_and_compare(traced(many_ops), "many_ops");
  export_and_compare(traced(many_ops), "many_ops17", 17);
  EXPECT_EQ(count(s, "Erf"), 1) << s.dump();
  // After the input, matmul's transpose_a, and before the reshape of an NCHW [N, 1, 10, 8]; the
  // explicit NHWC -> NCHW transpose costs nothing (the value already is NCHW).
  EXPECT_EQ(count(s, "Transpose"), 3) << s.dump();
}

TEST(OnnxExportPeer, EmbeddingLayerNormAndGelu) {
  SKIP_WITHOUT_PEERS();
  VariableStore store(18);
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Embedding>(2, 4));  // pixels cast to 0/1 pick one of two rows
  m->add(std::make_shared<Flatten>());
  m->add(std::make_shared<Dense>(16));
  m->add(std::make_shared<LayerNormalization>());
  m->add(std::make_shared<Dense>(10, "gelu"));
  (*m)(zeros({1, 28, 28, 1}));
  nlohmann::json s = export_and_compare(freeze(*m), "embedding");
  EXPECT_EQ(count(s, "Gather"), 1) << s.dump();
}

// Outputs that are the input itself, or one value twice, or an NCHW value: each port gets its
// own name (Identity or the edge Transpose), and ONNX Runtime returns all of them.
TEST(OnnxExportPeer, PortsThatShareValues) {
  SKIP_WITHOUT_PEERS();
  graph::Graph g;
  {
    graph::Tracer t;
    Tensor x = t.add_input(Shape{2, 28, 28, 1}, float32);
    Tensor y = max_pool2d(x);
    t.set_outputs({x, y, y, neg(y)});
    g = t.take();
  }
  const TensorSpec in{{kUnknownDim, 28, 28, 1}, float32}, pooled{{kUnknownDim, 14, 14, 1}, float32};
  GraphModel m(std::move(g), {{"images", in}},
               {{"same", in}, {"pooled", pooled}, {"again", pooled}, {"negated", pooled}});
  testing::TempDir dir("kiln_onnx_export_");
  const std::string d = dir.path(), file = d + "/ports.onnx", x = d + "/x.npy";
  export_onnx(m, file);
  nlohmann::json s = onnx_check(file);
  EXPECT_EQ(count(s, "Identity"), 2) << s.dump();
  save_npy(x, peers().x64);
  // By position, except "negated" by name (run.mjs binds NAME=FILE first).
  CommandResult r =
      run("node " + kSource + "/bench/peers/ort/run.mjs --ort " + kOrtDir + " --model " + file +
          " --input " + x + " --output " + d + "/a.npy --output negated=" + d + "/d.npy --output " +
          d + "/b.npy --output " + d + "/c.npy");
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::vector<Tensor> want = m(std::vector<Tensor>{peers().x64});
  const char* files[] = {"a", "b", "c", "d"};
  for (int k = 0; k < 4; ++k) {
    const Tensor got = load_npy(d + "/" + files[k] + ".npy");
    ASSERT_EQ(got.shape(), want[k].shape()) << files[k];
    EXPECT_EQ(0, std::memcmp(got.raw_data(), want[k].raw_data(), want[k].nbytes())) << files[k];
  }
}

// ---- errors -------------------------------------------------------------------------------

// A GraphModel computing one_hot (an op kiln has and ONNX export does not map).
GraphModel one_hot_model() {
  graph::Graph g;
  {
    graph::Tracer t;
    Tensor x = t.add_input(Shape{2}, int32);
    t.set_outputs({one_hot(x, 4)});
    g = t.take();
  }
  return GraphModel(std::move(g), {{"input", {{kUnknownDim}, int32}}},
                    {{"output", {{kUnknownDim, 4}, float32}}});
}

template <typename E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OnnxExport, UnmappedOpIsRefusedByName) {
  GraphModel m = one_hot_model();
  testing::TempDir dir("kiln_onnx_export_");
  EXPECT_EQ(error_of<ValueError>([&] { export_onnx(m, dir.path() + "/m.onnx"); }),
            "export_onnx: op 'one_hot' (node 0) has no ONNX mapping");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/m.onnx"));
}

TEST(OnnxExport, FusedGraphIsRefusedPointingAtTheStoredOne) {
  const Tensor w = random_normal({3, 4}, 0, 1, 1), b = random_normal({4}, 0, 1, 2);
  graph::Graph g;
  {
    graph::Tracer t;
    t.set_outputs({relu(matmul(t.add_input(Shape{2, 3}, float32), w) + b)});
    g = t.take();
  }
  ASSERT_GT(graph::fuse(g), 0);
  GraphModel m(std::move(g), {{"x", {{kUnknownDim, 3}, float32}}},
               {{"y", {{kUnknownDim, 4}, float32}}});
  EXPECT_EQ(error_of<ValueError>([&] { export_onnx_bytes(m); }),
            "export_onnx: op 'fused_matmul' (node 0) has no ONNX mapping: fused ops appear only "
            "in the graph that runs; export the stored graph");
}

TEST(OnnxExport, Int8MatmulIsRefused) {
  const Tensor w = cast(ones({3, 4}), int8);
  graph::Graph g;
  {
    graph::Tracer t;
    Tensor x = t.add_input(Shape{2, 3}, int8);
    t.set_outputs({matmul(x, w)});
    g = t.take();
  }
  GraphModel m(std::move(g), {{"x", {{kUnknownDim, 3}, int8}}}, {{"y", {{kUnknownDim, 4}, int8}}});
  EXPECT_EQ(error_of<ValueError>([&] { export_onnx_bytes(m); }),
            "export_onnx: op 'matmul' (node 0) has no ONNX mapping for int8: ONNX's MatMul takes "
            "no 8-bit integers (MatMulInteger widens to int32)");
}

TEST(OnnxExport, FailedExportLeavesAnExistingFileUntouched) {
  testing::TempDir dir("kiln_onnx_export_");
  const std::string file = dir.path() + "/m.onnx";
  std::ofstream(file) << "before";
  EXPECT_THROW(export_onnx(one_hot_model(), file), ValueError);
  std::ifstream f(file);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "before");
  EXPECT_EQ(std::filesystem::directory_iterator(dir.path())->path(), file);  // no temp left
}

TEST(OnnxExport, OpsetOutsideTheWrittenRangeIsRefused) {
  VariableStore store(16);
  GraphModel g = freeze(*make_mlp(&store));
  EXPECT_EQ(error_of<ValueError>([&] { export_onnx_bytes(g, {.opset = 12}); }),
            "export_onnx: opset 12 is not supported; kiln writes opsets 13 to 17");
  EXPECT_EQ(error_of<ValueError>([&] { export_onnx_bytes(g, {.opset = 18}); }),
            "export_onnx: opset 18 is not supported; kiln writes opsets 13 to 17");
}

// A GraphModel y = relu(x) with the given port names.
GraphModel relu_model(const std::string& in, const std::string& out) {
  graph::Graph g;
  {
    graph::Tracer t;
    t.set_outputs({relu(t.add_input(Shape{2, 3}, float32))});
    g = t.take();
  }
  return GraphModel(std::move(g), {{in, {{kUnknownDim, 3}, float32}}},
                    {{out, {{kUnknownDim, 3}, float32}}});
}

TEST(OnnxExport, PortNamesMustBeUniqueAndNonEmpty) {
  EXPECT_EQ(error_of<ValueError>([] { export_onnx_bytes(relu_model("x", "x")); }),
            "export_onnx: the port name 'x' is used twice; ONNX needs unique input and output "
            "names");
  EXPECT_EQ(error_of<ValueError>([] { export_onnx_bytes(relu_model("x", "")); }),
            "export_onnx: a port of the model has no name");
  EXPECT_FALSE(export_onnx_bytes(relu_model("x", "y")).empty());
}

TEST(OnnxExport, EmptyGraphModelIsAStateError) {
  EXPECT_EQ(error_of<StateError>([&] { export_onnx_bytes(GraphModel()); }),
            "export_onnx: the GraphModel is empty");
}

TEST(OnnxExport, UnwritablePathNamesThePath) {
  VariableStore store(17);
  GraphModel g = freeze(*make_mlp(&store));
  const std::string msg = error_of<Error>([&] { export_onnx(g, "/nonexistent-dir-kiln/m.onnx"); });
  EXPECT_NE(msg.find("/nonexistent-dir-kiln/m.onnx"), std::string::npos) << msg;
}

TEST(OnnxExport, UnbuiltModelNeedsASignature) {
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Dense>(3));
  EXPECT_THROW(export_onnx(*m, "/tmp/never-written.onnx"), StateError);
}

}  // namespace
}  // namespace kiln
