// export_onnx of int8 graphs (kiln::quantize_model's) in ONNX's QDQ format: the form of the file
// (int8 weights with per-channel DequantizeLinear, int32 biases, QuantizeLinear ->
// DequantizeLinear between layers), ONNX's checker (python3-onnx), ONNX Runtime fusing it into
// its integer kernels and agreeing with kiln's int8 model within one step of the output, the
// importer's answer to the file, and the refusals.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "graph/tracer.h"
#include "kiln/compress.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/model_file.h"
#include "kiln/nn/models.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "run_command.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

const std::string kSource = KILN_SOURCE_DIR;
const std::string kOrtDir =
    std::getenv("KILN_ORT_DIR") ? std::getenv("KILN_ORT_DIR") : KILN_ORT_DIR;

using testing::CommandResult;
CommandResult run(const std::string& cmd) { return testing::run_command(cmd); }

// Fashion-MNIST test images [n, 28, 28, 1] in [0, 1] when installed, else seeded noise.
Tensor images(int64_t n) {
  const std::string file = default_fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz";
  if (!std::filesystem::exists(file)) return random_uniform({n, 28, 28, 1}, 0, 1, 11);
  Tensor raw = read_idx(file);
  const uint8_t* p = static_cast<const uint8_t*>(raw.raw_data());
  std::vector<float> v(p, p + n * 784);
  for (float& x : v) x /= 255.0f;
  return from_vector(v, Shape{n, 28, 28, 1});
}

// Why ONNX Runtime and ONNX's checker cannot run here ("" when they can).
const std::string& peer_skip() {
  static const std::string why = [] {
    if (run("/usr/bin/python3 -c 'import onnx'").rc != 0) {
      return std::string("python3-onnx not available (Debian: apt-get install python3-onnx)");
    }
    CommandResult ort =
        run("node " + kSource + "/bench/peers/ort/run.mjs --self-test --ort " + kOrtDir);
    if (ort.rc != 0) {
      return "ONNX Runtime peer unavailable (bench/peers/ort/install.sh " + kOrtDir +
             "): " + ort.out;
    }
    return std::string();
  }();
  return why;
}

// The int8 version of a seeded mlp/cnn, every layer int8 (no timing decisions), calibrated on
// 256 images.
GraphModel int8_model(std::shared_ptr<Sequential> (*make)(VariableStore*)) {
  VariableStore store(23);
  GraphModel f = freeze(*make(&store));
  QuantizeOptions o;
  o.keep_slower_float = false;
  o.timing_repeats = 1;
  QuantizeReport report;
  GraphModel q = quantize_model(f, images(256), o, &report);
  for (const QuantizedLayerReport& l : report.layers) EXPECT_TRUE(l.int8) << l.name << l.reason;
  return q;
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::string op_sequence(const onnx::ModelProto& m) {
  std::string s;
  for (const onnx::NodeProto& n : m.graph().node()) s += (s.empty() ? "" : " ") + n.op_type();
  return s;
}

const onnx::TensorProto* initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const onnx::TensorProto& t : m.graph().initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

int64_t attr(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  for (const onnx::AttributeProto& a : n.attribute()) {
    if (a.name() == name) return a.i();
  }
  return dflt;
}

// ---- the form of the file ------------------------------------------------------------------

TEST(OnnxExportQdq, CnnIsWrittenInQdqForm) {
  const GraphModel q = int8_model(make_cnn);
  const onnx::ModelProto m = parse(export_onnx_bytes(q));
  // input -> Q -> (NCHW) -> [DQ, DQ w, DQ b, Conv, Q] -> [DQ MaxPool Q] x2 -> NHWC -> [DQ
  // Reshape Q] -> [DQ w, DQ b, DQ, Gemm, Q] -> [... Gemm] (float logits). ReLUs are the
  // QuantizeLinear's clamp at zero point 0.
  const std::string ops = op_sequence(m);
  EXPECT_EQ(ops.find("Relu"), std::string::npos) << ops;
  std::map<std::string, int> count;
  for (const onnx::NodeProto& n : m.graph().node()) ++count[n.op_type()];
  EXPECT_EQ(count["Conv"], 2) << ops;
  EXPECT_EQ(count["Gemm"], 2) << ops;
  EXPECT_EQ(count["MaxPool"], 2) << ops;
  EXPECT_EQ(count["Reshape"], 1) << ops;
  EXPECT_EQ(count["Transpose"], 2) << ops;       // NHWC -> NCHW at the input, back at Flatten
  EXPECT_EQ(count["QuantizeLinear"], 7) << ops;  // input, 2 convs, 2 pools, reshape, dense 0
  EXPECT_EQ(count["DequantizeLinear"], 7 + 4 * 2) << ops;  // per Q one, per layer w and b
  int per_axis = 0;
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "DequantizeLinear") continue;
    const onnx::TensorProto* t = initializer(m, n.input(0));
    if (!t) {  // an activation: uint8 with a uint8 zero point
      EXPECT_EQ(initializer(m, n.input(2))->data_type(), onnx::TensorProto::UINT8);
      continue;
    }
    ++per_axis;
    if (t->data_type() == onnx::TensorProto::INT8) {  // weights: axis = the output channel
      const onnx::TensorProto* zp = initializer(m, n.input(2));
      ASSERT_NE(zp, nullptr);
      EXPECT_EQ(zp->data_type(), onnx::TensorProto::INT8);
      EXPECT_EQ(zp->raw_data(), std::string(zp->raw_data().size(), '\0'));
      EXPECT_EQ(attr(n, "axis", 1), t->dims_size() == 4 ? 0 : 1) << n.input(0);
      EXPECT_EQ(initializer(m, n.input(1))->dims(0), t->dims(t->dims_size() == 4 ? 0 : 1));
    } else {  // biases: int32 at the accumulator's scale
      EXPECT_EQ(t->data_type(), onnx::TensorProto::INT32) << n.input(0);
      EXPECT_EQ(attr(n, "axis", 1), 0);
    }
  }
  EXPECT_EQ(per_axis, 8);
  // No float weights: the only float initializers are scales.
  for (const onnx::TensorProto& t : m.graph().initializer()) {
    if (t.data_type() == onnx::TensorProto::FLOAT && t.dims_size() > 0) {
      EXPECT_NE(t.name().find("scale"), std::string::npos) << t.name();
    }
  }
}

// ---- the peers: ONNX's checker, ONNX Runtime -------------------------------------------------

// Exports q at `opset`, checks it, runs it in ONNX Runtime at batch 1 and 64 against kiln's
// int8 outputs (max |diff| <= one output step: the logits' calibration range / 255), and
// returns the op types of the graph ONNX Runtime optimized it into.
std::map<std::string, int> export_and_compare_int8(const GraphModel& q, const std::string& name,
                                                   int opset = 13) {
  testing::TempDir dir("kiln_onnx_qdq_");
  const std::string file = dir.path() + "/" + name + ".onnx";
  export_onnx(q, file, {.opset = opset});
  CommandResult chk = run("/usr/bin/python3 " + kSource + "/tests/onnx/export_check.py " + file);
  EXPECT_EQ(chk.rc, 0) << chk.out;
  const nlohmann::json summary = nlohmann::json::parse(chk.out, nullptr, false);
  EXPECT_EQ(summary.value("opset", 0), opset) << chk.out;

  const Tensor calib = q(images(256));
  const float* c = static_cast<const float*>(calib.raw_data());
  const auto [lo, hi] = std::minmax_element(c, c + calib.numel());
  const double step = (*hi - *lo) / 255.0;
  std::map<std::string, int> fused;
  for (int64_t b : {1, 64}) {
    const Tensor x = images(b);
    const Tensor want = q(x);
    const std::string xin = dir.path() + "/x.npy", yout = dir.path() + "/y.npy";
    const std::string opt = dir.path() + "/optimized.onnx";
    save_npy(xin, x);
    CommandResult r =
        run("node " + kSource + "/bench/peers/ort/run.mjs --ort " + kOrtDir + " --model " + file +
            " --input " + xin + " --output " + yout + " --save-optimized " + opt);
    EXPECT_EQ(r.rc, 0) << r.out;
    if (r.rc != 0) return fused;
    const Tensor got = load_npy(yout);
    EXPECT_EQ(got.shape(), want.shape());
    const float* g = static_cast<const float*>(got.raw_data());
    const float* w = static_cast<const float*>(want.raw_data());
    double worst = 0;
    for (int64_t k = 0; k < got.numel(); ++k)
      worst = std::max(worst, std::abs(double(g[k]) - w[k]));
    EXPECT_LE(worst, step) << name << " at batch " << b;
    std::printf("  %s at batch %lld: largest |kiln int8 - ORT| %.4g, one output step %.4g\n",
                name.c_str(), static_cast<long long>(b), worst, step);
    CommandResult ops =
        run("/usr/bin/python3 -c \"import onnx, sys, collections; "
            "m = onnx.load(sys.argv[1]); "
            "c = collections.Counter(n.op_type for n in m.graph.node); "
            "print(' '.join(f'{k}={v}' for k, v in sorted(c.items())))\" " +
            opt);
    EXPECT_EQ(ops.rc, 0) << ops.out;
    fused.clear();
    std::string tok;
    for (char ch : ops.out + " ") {
      if (ch != ' ' && ch != '\n') {
        tok += ch;
      } else if (!tok.empty()) {
        const size_t eq = tok.find('=');
        fused[tok.substr(0, eq)] = std::stoi(tok.substr(eq + 1));
        tok.clear();
      }
    }
  }
  std::printf("  %s as ONNX Runtime runs it:", name.c_str());
  for (const auto& [op, k] : fused) std::printf(" %s=%d", op.c_str(), k);
  std::printf("\n");
  return fused;
}

#define SKIP_WITHOUT_PEERS()                               \
  do {                                                     \
    if (!peer_skip().empty()) GTEST_SKIP() << peer_skip(); \
  } while (0)

TEST(OnnxExportQdqPeer, CnnFusesIntoIntegerKernelsAndAgreesWithinOneStep) {
  SKIP_WITHOUT_PEERS();
  std::map<std::string, int> ops = export_and_compare_int8(int8_model(make_cnn), "cnn_int8");
  EXPECT_EQ(ops["QLinearConv"], 2);
  EXPECT_EQ(ops["QGemm"], 2);  // the last with float output
  EXPECT_EQ(ops["Conv"] + ops["Gemm"] + ops["FusedConv"] + ops["FusedGemm"], 0);
  EXPECT_EQ(ops["DequantizeLinear"], 0);  // nothing computes in float
}

TEST(OnnxExportQdqPeer, MlpFusesIntoIntegerKernelsAndAgreesWithinOneStep) {
  SKIP_WITHOUT_PEERS();
  std::map<std::string, int> ops = export_and_compare_int8(int8_model(make_mlp), "mlp_int8");
  EXPECT_EQ(ops["QGemm"], 3);
  EXPECT_EQ(ops["Gemm"] + ops["FusedGemm"] + ops["MatMul"], 0);
}

TEST(OnnxExportQdqPeer, CnnAtOpset17) {
  SKIP_WITHOUT_PEERS();
  std::map<std::string, int> ops = export_and_compare_int8(int8_model(make_cnn), "cnn_int8_17", 17);
  EXPECT_EQ(ops["QLinearConv"], 2);
}

// ---- refusals (import: tests/onnx/import_quantize_test.cc)
// ---------------------------------------------------------------------

// A traced int8 layer whose parameters are built by `f` from the input x [N, 784].
GraphModel traced_int8(const std::function<Tensor(const Tensor&)>& f) {
  graph::Graph g;
  {
    graph::Tracer t;
    Tensor x = t.add_input(Shape{2, 784}, float32);
    t.set_outputs({f(x)});
    g = t.take();
  }
  return GraphModel(std::move(g), {{"input", {{kUnknownDim, 784}, float32}}},
                    {{"output", {{kUnknownDim, 4}, float32}}});
}

std::string export_error(const GraphModel& m) {
  try {
    export_onnx_bytes(m);
  } catch (const ValueError& e) {
    return e.what();
  }
  return "(no error)";
}

QuantizedLinear constant_params() {
  QuantizedLinear p;
  p.x_scale = scalar(0.01);
  p.x_zero_point = scalar(3, DType::kUInt8);
  p.weights = cast(random_uniform({784, 4}, -100, 100, 5), DType::kInt8);
  p.weight_scales = full({4}, 0.01);
  p.bias = full({4}, 0.5);
  return p;
}

TEST(OnnxExportQdq, ComputedQuantizationParametersAreRefused) {
  const QuantizedLinear params = constant_params();  // made eagerly: constants of the traces
  const std::string scale_msg = export_error(traced_int8([&](const Tensor& x) {
    QuantizedLinear p = params;
    p.x_scale = add(scalar(0.01), mul(sum(x), scalar(0.0)));  // computed from x
    return quantized_matmul(quantize(x, scalar(0.01), scalar(3, DType::kUInt8)), p);
  }));
  EXPECT_NE(scale_msg.find("export_onnx: op 'quantized_matmul' (node "), std::string::npos)
      << scale_msg;
  EXPECT_NE(scale_msg.find(") has no ONNX mapping: its input scale is computed; QDQ export needs "
                           "constant quantization parameters"),
            std::string::npos)
      << scale_msg;
  const std::string bias_msg = export_error(traced_int8([&](const Tensor& x) {
    QuantizedLinear p = params;
    p.bias = add(p.bias, mul(sum(x), scalar(0.0)));
    return quantized_matmul(quantize(x, scalar(0.01), scalar(3, DType::kUInt8)), p);
  }));
  EXPECT_NE(bias_msg.find("has no ONNX mapping: its weights, weight scales and bias must be "
                          "constants for QDQ export"),
            std::string::npos)
      << bias_msg;
}

// A bias too large for int32 at the accumulator's scale stays float: a valid file that ONNX
// Runtime runs unfused.
TEST(OnnxExportQdq, HugeBiasStaysFloat) {
  QuantizedLinear params = constant_params();
  params.bias = full({4}, 1e9);
  const GraphModel m = traced_int8([&](const Tensor& x) {
    QuantizedLinear p = params;
    return quantized_matmul(quantize(x, scalar(0.01), scalar(3, DType::kUInt8)), p);
  });
  const onnx::ModelProto proto = parse(export_onnx_bytes(m));
  EXPECT_EQ(op_sequence(proto), "QuantizeLinear DequantizeLinear DequantizeLinear Gemm");
  const onnx::NodeProto& gemm = proto.graph().node(3);
  EXPECT_EQ(initializer(proto, gemm.input(2))->data_type(), onnx::TensorProto::FLOAT);
}

}  // namespace
}  // namespace kiln
