// ONNX's backend node tests (libonnx-testdata): every model whose ops kiln maps is imported, run
// on each test_data_set and compared with the expected outputs at ONNX's tolerances (rtol 1e-3,
// atol 1e-7, as its backend runner). A model with an op kiln does not map must be refused at
// import with a message naming the op. Skips when the data directory is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "kiln/error.h"
#include "kiln/onnx.h"
#include "kiln/ops.h"
#include "onnx/import_context.h"

namespace {

namespace fs = std::filesystem;

const char* kNodeTests = "/usr/share/libonnx-testdata/data/node";

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The expected tensor of an output_*.pb / input_*.pb file; false for non-tensor data
// (sequences, optionals) or dtypes kiln lacks.
bool read_tensor(const fs::path& p, kiln::Tensor& out) {
  onnx::TensorProto t;
  const std::string bytes = read_bytes(p);
  if (!t.ParseFromString(bytes)) return false;
  try {
    out = kiln::onnx_import::tensor_from_proto(t, p.string());
  } catch (const kiln::Error&) {
    return false;
  }
  return true;
}

// "" when close (ONNX's np.testing.assert_allclose(rtol=1e-3, atol=1e-7)), else what differs.
std::string compare(const kiln::Tensor& got, const kiln::Tensor& want) {
  if (got.shape() != want.shape()) {
    return "shape " + kiln::to_string(got.shape()) + " vs expected " +
           kiln::to_string(want.shape());
  }
  if (got.dtype() != want.dtype()) {
    return "dtype " + std::string(kiln::dtype_name(got.dtype())) + " vs expected " +
           std::string(kiln::dtype_name(want.dtype()));
  }
  const std::vector<double> a = kiln::cast(got, kiln::float64).to_vector<double>();
  const std::vector<double> b = kiln::cast(want, kiln::float64).to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (a[i] == b[i]) continue;  // equal infinities
    if (!(std::abs(a[i] - b[i]) <= 1e-7 + 1e-3 * std::abs(b[i]))) {
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs expected " +
             std::to_string(b[i]);
    }
  }
  return "";
}

// The input a "... (input 'NAME') must be a constant" refusal names, else "".
std::string parameter_name(const std::string& msg) {
  const size_t end = msg.find("') must be a constant");
  if (end == std::string::npos) return "";
  const size_t begin = msg.rfind("(input '", end);
  return begin == std::string::npos ? "" : msg.substr(begin + 8, end - begin - 8);
}

TEST(OnnxConformance, NodeTests) {
  if (!fs::is_directory(kNodeTests)) {
    GTEST_SKIP() << kNodeTests << " is absent (install libonnx-testdata)";
  }
  const std::vector<std::string> mapped = kiln::onnx_supported_ops();
  const std::set<std::string> supported(mapped.begin(), mapped.end());
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(kNodeTests)) {
    if (e.is_directory() && fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  const char* only = std::getenv("KILN_ONNX_TEST");  // run one test by name (debugging)

  int passed = 0, bound_models = 0, refused_unsupported = 0, refused_other = 0, skipped_data = 0;
  std::map<std::string, int> unsupported_ops;
  std::vector<std::string> refused_mapped, failures;
  for (const fs::path& dir : dirs) {
    const std::string name = dir.filename().string();
    if (only && name != only) continue;
    const std::string model_bytes = read_bytes(dir / "model.onnx");
    onnx::ModelProto proto;
    ASSERT_TRUE(proto.ParseFromString(model_bytes)) << name;
    std::set<std::string> missing;
    for (const onnx::NodeProto& n : proto.graph().node()) {
      const bool default_domain = n.domain().empty() || n.domain() == "ai.onnx";
      if (!default_domain || !supported.count(n.op_type())) missing.insert(n.op_type());
    }
    kiln::GraphModel model;
    // Parameters kiln needs at import (Slice's starts, Resize's scales) that the test passes
    // as graph inputs: bound as constants from each data set (OnnxImportOptions), one by one
    // as the importer names them.
    bool bind_parameters = false;
    try {
      model = kiln::import_onnx((dir / "model.onnx").string());
    } catch (const kiln::Error& e) {
      const std::string msg = e.what();
      if (missing.empty() && !parameter_name(msg).empty()) {
        bind_parameters = true;
      } else if (!missing.empty()) {
        bool named = false;
        for (const std::string& op : missing) named = named || msg.find(op) != std::string::npos;
        if (!named) failures.push_back(name + ": refused without naming its op: " + msg);
        ++refused_unsupported;
        for (const std::string& op : missing) ++unsupported_ops[op];
        continue;
      } else {
        ++refused_other;
        refused_mapped.push_back(name + ": " + msg);
        continue;
      }
    }
    if (!missing.empty()) {
      failures.push_back(name + ": imported although it uses unmapped ops");
      continue;
    }
    bool ok = true, ran = false;
    for (const auto& set : fs::directory_iterator(dir)) {
      if (!set.is_directory() || set.path().filename().string().rfind("test_data_set", 0) != 0)
        continue;
      std::vector<kiln::Tensor> inputs, expected;
      bool readable = true;
      std::vector<std::string> input_names;
      for (const onnx::ValueInfoProto& vi : proto.graph().input()) {
        bool init = false;
        for (const onnx::TensorProto& t : proto.graph().initializer())
          init = init || t.name() == vi.name();
        if (!init) input_names.push_back(vi.name());
      }
      std::map<std::string, kiln::Tensor> given;
      for (size_t k = 0; k < input_names.size(); ++k) {
        kiln::Tensor t;
        readable = readable && read_tensor(set.path() / ("input_" + std::to_string(k) + ".pb"), t);
        given[input_names[k]] = t;
      }
      if (!readable) continue;
      kiln::OnnxImportOptions bound;
      if (bind_parameters) {
        std::string error;
        for (size_t attempt = 0; attempt <= input_names.size(); ++attempt) {
          try {
            model = kiln::import_onnx((dir / "model.onnx").string(), bound);
            error.clear();
            break;
          } catch (const kiln::Error& e) {
            error = e.what();
            const std::string param = parameter_name(error);
            if (param.empty() || !given.count(param) || bound.constant_inputs.count(param)) break;
            bound.constant_inputs[param] = given[param];
          }
        }
        if (!error.empty()) {
          ++refused_other;
          refused_mapped.push_back(name + " (parameters bound): " + error);
          ok = false;
          break;
        }
      }
      for (const std::string& n : input_names) {
        if (!bound.constant_inputs.count(n)) inputs.push_back(given[n]);
      }
      for (size_t k = 0; k < model.outputs().size(); ++k) {
        kiln::Tensor t;
        readable = readable && read_tensor(set.path() / ("output_" + std::to_string(k) + ".pb"), t);
        expected.push_back(t);
      }
      if (!readable) continue;
      ran = true;
      try {
        const std::vector<kiln::Tensor> got = model(inputs);
        for (size_t k = 0; k < got.size(); ++k) {
          const std::string diff = compare(got[k], expected[k]);
          if (!diff.empty()) {
            failures.push_back(name + " " + set.path().filename().string() + " output " +
                               std::to_string(k) + ": " + diff);
            ok = false;
          }
        }
      } catch (const std::exception& e) {
        failures.push_back(name + " " + set.path().filename().string() +
                           ": run failed: " + e.what());
        ok = false;
      }
    }
    if (!ran) {
      if (ok) ++skipped_data;
      continue;
    }
    passed += ok;
    bound_models += ok && bind_parameters;
  }

  std::cout << "ONNX node tests: " << passed << " of " << dirs.size() << " passed; "
            << refused_unsupported << " refused for unmapped ops, " << refused_other
            << " refused for unsupported attributes/dtypes of mapped ops, " << skipped_data
            << " with non-tensor data, " << failures.size() << " failures; " << bound_models
            << " of the passes with parameter inputs bound as constants\n";
  std::cout << "unsupported ops (" << unsupported_ops.size() << "):";
  for (const auto& [op, n] : unsupported_ops) std::cout << " " << op;
  std::cout << "\n";
  if (std::getenv("KILN_ONNX_VERBOSE")) {
    for (const std::string& r : refused_mapped) std::cout << "  refused: " << r << "\n";
  }
  for (const std::string& f : failures) ADD_FAILURE() << f;
}

}  // namespace
