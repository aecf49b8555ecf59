// make_mlp / make_cnn: the two reference models the CLI trains.
#include "kiln/nn/models.h"

#include "kiln/nn/layers.h"

namespace kiln {

std::shared_ptr<Sequential> make_mlp() {
  auto m = std::make_shared<Sequential>(unique_layer_name("mlp"));
  m->emplace<Flatten>();
  m->emplace<Dense>(256, "relu");
  m->emplace<Dense>(128, "relu");
  m->emplace<Dense>(10);
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

std::shared_ptr<Sequential> make_cnn() {
  auto m = std::make_shared<Sequential>(unique_layer_name("cnn"));
  m->emplace<Conv2D>(32, std::array<int64_t, 2>{3, 3}, same_relu());
  m->emplace<MaxPool2D>();
  m->emplace<Conv2D>(64, std::array<int64_t, 2>{3, 3}, same_relu());
  m->emplace<MaxPool2D>();
  m->emplace<Flatten>();
  m->emplace<Dense>(128, "relu");
  m->emplace<Dense>(10);
  return m;
}

}  // namespace kiln
