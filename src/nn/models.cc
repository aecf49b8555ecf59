// make_mlp / make_cnn: the two reference models the CLI trains.
#include "kiln/nn/models.h"

#include "kiln/nn/layers.h"

namespace kiln {

std::shared_ptr<Sequential> make_mlp(VariableStore* store) {
  auto m = std::make_shared<Sequential>(unique_layer_name("mlp"));
  m->emplace<Flatten>();
  m->emplace<Dense>(256, "relu");
  m->emplace<Dense>(128, "relu");
  m->emplace<Dense>(10);
  if (store) m->set_store(*store);       // before building: the weights are created in it
  m->output_shape(Shape{1, 28, 28, 1});  // built (shapes only): weights exist, loads work
  return m;
}

namespace {
Conv2DLayerOptions same_relu() {
  Conv2DLayerOptions o;
  o.padding = Padding::kSame;
  o.activation = "relu";
  return o;
}
}  // namespace

std::shared_ptr<Sequential> make_cnn(VariableStore* store) {
  auto m = std::make_shared<Sequential>(unique_layer_name("cnn"));
  m->emplace<Conv2D>(32, std::array<int64_t, 2>{3, 3}, same_relu());
  m->emplace<MaxPool2D>();
  m->emplace<Conv2D>(64, std::array<int64_t, 2>{3, 3}, same_relu());
  m->emplace<MaxPool2D>();
  m->emplace<Flatten>();
  m->emplace<Dense>(128, "relu");
  m->emplace<Dense>(10);
  if (store) m->set_store(*store);
  m->output_shape(Shape{1, 28, 28, 1});
  return m;
}

}  // namespace kiln
