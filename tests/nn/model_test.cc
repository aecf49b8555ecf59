// Model and Sequential: tracking, nesting, summary before any data, the reference models,
// gradients through a stack, and seeded initial weights.
#include <gtest/gtest.h>

#include <sstream>

#include "kiln/autograd.h"
#include "kiln/nn.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::expect_error;
using testing::random_tensor;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Summary, MlpBeforeAnyData) {
  VariableStore store(1);
  auto m = make_mlp(&store);
  // Built from shapes alone for [1, 28, 28, 1] (no data), its weights in the given store.
  EXPECT_TRUE(m->built());
  EXPECT_EQ(m->built_input_shapes(), std::vector<Shape>({Shape{1, 28, 28, 1}}));
  EXPECT_EQ(store.count_params(), 235146);
  std::string s = m->summary({28, 28, 1});
  for (const char* part :
       {"(Flatten)", "(None, 784)", "(Dense)", "(None, 256)", "200,960", "(None, 128)", "32,896",
        "(None, 10)", "1,290", "Total params: 235,146", "Trainable params: 235,146",
        "Non-trainable params: 0", "Layer (type)", "Output Shape", "Param #"}) {
    EXPECT_TRUE(contains(s, part)) << "summary lacks \"" << part << "\":\n" << s;
  }
  EXPECT_FALSE(contains(s, "multiple"));
  EXPECT_FALSE(contains(s, "(shared)"));
  EXPECT_EQ(m->count_params(), 235146);
  EXPECT_EQ(m->size(), 4u);
  // The model then runs on data of that shape, any batch size.
  EXPECT_EQ((*m)(zeros({3, 28, 28, 1})).shape(), Shape({3, 10}));
  EXPECT_EQ(m->summary(), s);
}

TEST(Summary, CnnBeforeAnyData) {
  VariableStore store(1);
  auto m = make_cnn(&store);
  EXPECT_TRUE(m->built());
  EXPECT_EQ(store.count_params(), 421642);
  std::ostringstream os;
  m->print_summary({28, 28, 1}, os);
  std::string s = os.str();
  for (const char* part :
       {"(Conv2D)", "(None, 28, 28, 32)", "320", "(MaxPool2D)", "(None, 14, 14, 32)",
        "(None, 14, 14, 64)", "18,496", "(None, 7, 7, 64)", "(None, 3136)", "401,536",
        "(None, 128)", "(None, 10)", "Total params: 421,642", "Trainable params: 421,642"}) {
    EXPECT_TRUE(contains(s, part)) << "summary lacks \"" << part << "\":\n" << s;
  }
  EXPECT_EQ(m->count_params(), 421642);
}

TEST(Summary, SharedWeightsAreMarkedAndCountedOnce) {
  VariableStore store(1);
  auto d = std::make_shared<Dense>(4, DenseOptions{.name = "twice"});
  Sequential seq({std::make_shared<Flatten>(), d, d}, "tied");
  seq.set_store(store);
  std::string s = seq.summary({4});
  EXPECT_TRUE(contains(s, "20 (shared)")) << s;
  EXPECT_TRUE(contains(s, "Total params: 20")) << s;
  EXPECT_EQ(seq.count_params(), 20);
}

TEST(Summary, CountsNonTrainableParams) {
  VariableStore store(1);
  Sequential seq;
  seq.set_store(store);
  seq.emplace<Dense>(8);
  seq.emplace<BatchNormalization>();
  std::string s = seq.summary({3});
  EXPECT_TRUE(contains(s, "Total params: 64")) << s;  // 3*8+8 + 4*8
  EXPECT_TRUE(contains(s, "Trainable params: 48")) << s;
  EXPECT_TRUE(contains(s, "Non-trainable params: 16")) << s;
}

TEST(Summary, UnbuiltModelWithoutAShapeIsAStateError) {
  Sequential seq({std::make_shared<Dense>(2)}, "never_built");
  expect_error<StateError>([&] { seq.summary(); }, {"'never_built'", "summary(input_shape)"});
}

class Block : public Model {
 public:
  Block() : Model("block") {
    dense_ = &add_layer<Dense>(6, "relu");
    norm_ = &track(std::make_shared<LayerNormalization>());
  }
  Dense* dense_;
  LayerNormalization* norm_;

 protected:
  Tensor call(const Tensor& x, bool training) override {
    return (*norm_)((*dense_)(x, training), training);
  }
};

class Net : public Model {
 public:
  Net() : Model("net") {
    block_ = &add_layer<Block>();
    head_ = &add_layer<Dense>(2);
  }
  Block* block_;
  Dense* head_;

 protected:
  Tensor call(const Tensor& x, bool training) override {
    return (*head_)((*block_)(x, training), training);
  }
};

TEST(Model, NestedModelsFindEveryWeightUnderNestedNames) {
  VariableStore store(1);
  Net net;
  net.set_store(store);
  Tensor y = net(random_tensor({3, 4}, float32, 1));
  EXPECT_EQ(y.shape(), Shape({3, 2}));
  EXPECT_EQ(net.layers().size(), 2u);
  EXPECT_EQ(net.weights().size(), 6u);  // dense kernel+bias, norm gamma+beta, head kernel+bias
  EXPECT_EQ(net.trainable_weights().size(), 6u);
  EXPECT_EQ(net.count_params(), 4 * 6 + 6 + 12 + 6 * 2 + 2);
  EXPECT_EQ(store.count_params(), net.count_params());
  EXPECT_EQ(net.block_->dense_->kernel().name(),
            "net/block/" + net.block_->dense_->name() + "/kernel");
  expect_error<ShapeError>([&] { net(ones({3, 5})); }, {"'net'", "[None, 4]", "[3, 5]"});
}

TEST(Model, SubclassedSummaryUsesAShapeOnlyProbe) {
  VariableStore store(1);
  Net net;
  net.set_store(store);
  GradientTape tape;  // the probe must not land on a tape
  std::string s = net.summary({4});
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_TRUE(contains(s, "block (Model)")) << s;
  EXPECT_TRUE(contains(s, "(None, 6)")) << s;
  EXPECT_TRUE(contains(s, "(None, 2)")) << s;
  EXPECT_TRUE(contains(s, "Total params: 56")) << s;
  EXPECT_FALSE(contains(s, "multiple"));
}

TEST(Sequential, ForwardIsTheChainOfItsLayers) {
  VariableStore store(1);
  Sequential seq;
  seq.set_store(store);
  Dense& a = seq.emplace<Dense>(5, "relu");
  seq.add(std::make_shared<Dense>(2));
  Tensor x = random_tensor({3, 4}, float32, 2);
  Tensor y = seq(x);
  Dense& b = static_cast<Dense&>(*seq.layers()[1]);
  EXPECT_TRUE(all_close(
      y, matmul(relu(matmul(x, a.kernel().value()) + a.bias().value()), b.kernel().value()) +
             b.bias().value()));
  EXPECT_EQ(a.kernel().name(), seq.name() + "/" + a.name() + "/kernel");
  expect_error<StateError>([&] { seq.add(std::make_shared<Flatten>()); },
                           {seq.name(), "already built"});
  Sequential empty(std::vector<std::shared_ptr<Layer>>{}, "empty");
  empty.set_store(store);
  expect_error<StateError>([&] { empty(x); }, {"'empty'", "no layers"});
  EXPECT_FALSE(empty.built());
  expect_error<ValueError>([&] { empty.add(nullptr); }, {"null"});
}

TEST(Sequential, GradientsThroughTheStackMatchFiniteDifferences) {
  VariableStore store(1);
  Sequential seq;
  seq.set_store(store);
  seq.emplace<Dense>(4, "tanh");
  seq.emplace<LayerNormalization>();
  seq.emplace<Dense>(3, "sigmoid");
  Tensor x = random_tensor({2, 3}, float64, 3);
  testing::check_gradients([&](const std::vector<Tensor>& in) { return seq(in[0]); }, {x});
  // Every trainable weight gets a gradient of its own shape.
  GradientTape tape;
  Tensor loss = sum(seq(x));
  std::vector<Tensor> sources;
  for (const Variable& v : seq.trainable_weights()) sources.push_back(v.value());
  std::vector<Tensor> grads = tape.gradient(loss, sources);
  ASSERT_EQ(grads.size(), 6u);
  for (size_t i = 0; i < grads.size(); ++i) {
    ASSERT_TRUE(grads[i].defined()) << i;
    EXPECT_EQ(grads[i].shape(), sources[i].shape());
  }
}

std::vector<std::vector<float>> initial_weights(uint64_t seed) {
  reset_layer_names();  // same default names each time; each run has its own store
  VariableStore store(seed);
  auto m = make_cnn(&store);  // built for [1, 28, 28, 1], its weights drawn from `store`
  std::vector<std::vector<float>> out;
  for (const Variable& v : m->weights()) out.push_back(v.value().to_vector<float>());
  return out;
}

TEST(Model, InitialWeightsDependOnlyOnTheSeed) {
  auto a = initial_weights(7), b = initial_weights(7), c = initial_weights(8);
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], c[0]);
  EXPECT_NE(a[4], c[4]);
}

}  // namespace
}  // namespace kiln
