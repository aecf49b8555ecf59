// Model: a Layer made of layers. Subclass it and track sublayers with one call each:
//
//   class Mlp : public kiln::Model {
//    public:
//     Mlp() : Model("mlp") {
//       hidden_ = &add_layer<kiln::Dense>(64, "relu");        // constructed and tracked
//       out_ = &track(std::make_shared<kiln::Dense>(10));    // or track an existing one
//     }
//    protected:
//     kiln::Tensor call(const kiln::Tensor& x, bool training) override {
//       return (*out_)((*hidden_)(x, training), training);
//     }
//    private:
//     kiln::Dense* hidden_;
//     kiln::Dense* out_;
//   };
//
// Sequential: a stack owned through shared_ptr<Layer> (a layer may sit in two models, and its
// weights are then shared):
//
//   kiln::Sequential seq;
//   seq.add(std::make_shared<kiln::Flatten>());
//   seq.emplace<kiln::Dense>(10);
//   std::cout << seq.summary({28, 28, 1});
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kiln/nn/layer.h"

namespace kiln {

// A Model subclass has no config unless it writes one (get_config + a registered static
// from_config, kiln/nn/config.h); without it save_model keeps the traced graph.
class Model : public Layer {
 public:
  explicit Model(std::string name = "", const std::string& default_base = "model");
  std::string type_name() const override { return "Model"; }

  // A Keras-like table: one row per direct sublayer ("name (Type)", output shape with the batch
  // dim shown as None, param count), then Total / Trainable / Non-trainable params. A variable
  // shared by several rows is counted once in the totals and its later rows are marked
  // "(shared)". `input_shape` is one example's shape (no batch dim); the model is built for
  // batch 1 from shapes alone if it is not built yet (no data needed).
  std::string summary(const Shape& input_shape);
  // Same, for a model already built (from its built input shape).
  std::string summary();
  void print_summary(const Shape& input_shape, std::ostream& os);

  // Weights are read from and written to variables in place: save/load can use weights().
 protected:
  // Sublayer output shapes for summary(); default: run the model on zeros of `input_shape`
  // (batch 1) and read each sublayer's last_output_shape().
  virtual std::vector<Shape> sublayer_output_shapes(const Shape& input_shape);

 private:
  std::string render_summary(const std::vector<Shape>& shapes) const;
};

class Sequential : public Model {
 public:
  explicit Sequential(std::string name = "");
  Sequential(std::vector<std::shared_ptr<Layer>> layers, std::string name = "");
  std::string type_name() const override { return "Sequential"; }
  // Keras' {"name", "trainable", "dtype", "layers": [...]}, with kiln's sharing fields
  // (kiln/nn/config.h). ValueError when a layer shares weights with one outside this model, or
  // a name it must refer to is used by two different layers of the model.
  nlohmann::json get_config() const override;
  static std::shared_ptr<Layer> from_config(const nlohmann::json& config);

  // Appends a layer; StateError once the model is built (the stack is then fixed).
  Sequential& add(std::shared_ptr<Layer> layer);
  template <typename L, typename... Args>
  L& emplace(Args&&... args) {
    auto layer = std::make_shared<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    add(std::move(layer));
    return ref;
  }
  size_t size() const { return layers().size(); }

  // The example shape (batch dim excluded) declared by a Keras "InputLayer" entry of the
  // config this model was made from (deserialize_layer builds the model for it), else nullopt.
  const std::optional<Shape>& input_shape() const { return input_shape_; }

 protected:
  // StateError when there are no layers.
  void build(const Shape& input_shape) override;
  Tensor call(const Tensor& x, bool training) override;
  // Chains the layers' output_shape(), so summary needs no data at all.
  Shape compute_output_shape(const Shape& input_shape) override;
  std::vector<Shape> sublayer_output_shapes(const Shape& input_shape) override;

 private:
  std::optional<Shape> input_shape_;
  std::string input_layer_name_;
};

}  // namespace kiln
