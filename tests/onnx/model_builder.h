// Builds small ONNX models in tests with protobuf's generated classes.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "kiln/onnx.h"

namespace kiln::testing {

class ModelBuilder {
 public:
  explicit ModelBuilder(int64_t opset = 13) {
    model_.set_ir_version(8);
    auto* o = model_.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g_ = model_.mutable_graph();
    g_->set_name("test");
  }
  // dims: -1 is a symbolic dim named "N<k>".
  void input(const std::string& name, std::vector<int64_t> dims,
             int elem = onnx::TensorProto::FLOAT) {
    auto* vi = g_->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* shape = tt->mutable_shape();
    int k = 0;
    for (int64_t d : dims) {
      auto* dim = shape->add_dim();
      if (d < 0) {
        dim->set_dim_param("N" + std::to_string(k++));
      } else {
        dim->set_dim_value(d);
      }
    }
  }
  void output(const std::string& name) {
    auto* vi = g_->add_output();
    vi->set_name(name);
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  void init(const std::string& name, const std::vector<float>& v, std::vector<int64_t> dims) {
    auto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : v) t->add_float_data(x);
  }
  void init_ints(const std::string& name, const std::vector<int64_t>& v) {
    auto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in,
                        std::vector<std::string> out, const std::string& name = "") {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + std::to_string(g_->node_size()) : name);
    for (const auto& s : in) n->add_input(s);
    for (const auto& s : out) n->add_output(s);
    return n;
  }
  static void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_ints(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void attr_string(onnx::NodeProto* n, const std::string& name, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  onnx::ModelProto& proto() { return model_; }
  kiln::GraphModel import(const kiln::OnnxImportOptions& options = {}) const {
    const std::string bytes = model_.SerializeAsString();
    return kiln::import_onnx_bytes(bytes.data(), bytes.size(), "m.onnx", options);
  }

 private:
  onnx::ModelProto model_;
  onnx::GraphProto* g_;
};

}  // namespace kiln::testing
