// Layer: Keras's layer model in C++.
//
//   class MyDense : public kiln::Layer {
//    public:
//     explicit MyDense(int64_t units) : Layer("", "my_dense"), units_(units) {}
//     std::string type_name() const override { return "MyDense"; }
//    protected:
//     void build(const kiln::Shape& in) override {          // once, on the first call
//       w_ = add_weight("kernel", {in.dim(-1), units_});   // "my_dense/kernel" in the store
//     }
//     kiln::Tensor call(const kiln::Tensor& x, bool training) override {
//       return kiln::matmul(x, w_.value());
//     }
//    private:
//     int64_t units_;
//     kiln::Variable w_;
//   };
//
// operator() builds lazily, then checks every input against the shape the layer was built for
// (all dims but the batch dim 0, which may vary) and throws ShapeError naming the layer and both
// shapes when it does not fit. While a layer builds and calls, its name is pushed as a name
// scope of its store, so weights are named "<outer scopes>/<layer>/<weight>" and sublayers of a
// model nest under it ("mlp/dense/kernel").
//
// Weights are shared in three ways, and a shared variable is one tensor, so a tape sums the
// gradients of all its users: (a) call one layer instance on several inputs; (b)
// share_weights_from(other) before the first call; (c) a VariableStore::Scope with reuse=true.
//
// Output shapes without data: output_shape(input_shape) builds the layer if needed (shape only,
// no data) and returns compute_output_shape(input_shape). Built-in layers compute it exactly
// from shapes; the default (used by Model subclasses) runs call() on a zero tensor of
// input_shape, so for those the batch dim should be small (summary uses 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kiln/instance_token.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/variable.h"
#include "kiln/nn/variable_store.h"
#include "kiln/tensor.h"

namespace kiln {

// `base` the first time, then "base_1", "base_2", ... (process-wide, thread-safe), like Keras.
std::string unique_layer_name(const std::string& base);
// Forgets the names handed out (Keras' clear_session for names). Later layers may then reuse
// names of earlier ones: use a fresh VariableStore for them.
void reset_layer_names();

// While alive, layers made on this thread without a name count names from scratch ("dense",
// "dense_1", ...) as in a fresh program, in counters of their own: the process-wide counters
// are neither read nor changed, so layers made elsewhere never clash with earlier names. Used
// where a run must not depend on what the process did before (the CLI, so a model's weights
// depend only on its seed). Put the variables in a fresh VariableStore: names may repeat
// those of layers made before the scope. Scopes nest; not shared between threads.
class LayerNameScope {
 public:
  LayerNameScope();
  ~LayerNameScope();
  LayerNameScope(const LayerNameScope&) = delete;
  LayerNameScope& operator=(const LayerNameScope&) = delete;

 private:
  void* saved_;
  void* counts_;
};

// What per-instance caches hold for a layer (Layer::cache_info()).
struct LayerCacheInfo {
  std::string layer;
  uint64_t variables = 0, variable_bytes = 0;  // this layer's and its sublayers' weights, once
  std::vector<Variable> own_weights;           // created or taken by this layer itself
  struct Entry {
    std::string cache;   // the per-instance cache's name
    std::string object;  // the layer's name, or the variable's
    uint64_t bytes = 0;
  };
  // Entries held for this layer, its sublayers and all their weights.
  std::vector<Entry> entries;
  uint64_t entry_bytes = 0;
};

class Layer {
 public:
  // `name` if non-empty, else unique_layer_name(default_base) ("dense", "dense_1", ...).
  Layer(std::string name, const std::string& default_base);
  virtual ~Layer();
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const std::string& name() const { return name_; }
  // The class name shown by summary(): "Dense", "Conv2D", ...; also the class name a config
  // is registered under (kiln/nn/config.h).
  virtual std::string type_name() const = 0;

  // Keras' get_config: the arguments that rebuild this layer (kiln/nn/config.h), starting from
  // base_config(). Every built-in layer and Sequential override it. The default throws
  // StateError "layer 'x' (MyType) has no get_config: ...", so a model holding such a layer is
  // saved as its traced graph instead (has_config in kiln/nn/config.h asks without throwing).
  virtual nlohmann::json get_config() const;

  // Single-input call. Builds on the first call, checks the input shape (see above).
  Tensor operator()(const Tensor& x, bool training = false);
  // Multi-input call (Add, Concatenate, user layers overriding call_multi).
  Tensor operator()(const std::vector<Tensor>& xs, bool training = false);

  bool built() const { return built_; }
  // The input shapes the layer was built for (batch dim as first seen). Empty before build.
  const std::vector<Shape>& built_input_shapes() const { return built_shapes_; }
  // The output shape of the last call (or output_shape()); rank 0 and empty before any.
  const Shape& last_output_shape() const { return last_output_shape_; }

  // Builds for `input_shape` (full shape, batch dim included) if not built, checks it against
  // the built shape, and returns the output shape, without input data (see above).
  Shape output_shape(const Shape& input_shape);
  Shape output_shape(const std::vector<Shape>& input_shapes);

  // This layer's and its sublayers' weights, deduplicated (a shared variable appears once), in
  // creation order; trainable_weights() is empty when !trainable(), and every weight is then
  // non-trainable, as in Keras. Throw StateError if the layer is not built.
  std::vector<Variable> weights() const;
  std::vector<Variable> trainable_weights() const;
  std::vector<Variable> non_trainable_weights() const;
  // Elements over weights() (shared variables once). StateError if not built.
  int64_t count_params() const;

  bool trainable() const { return trainable_; }
  // Also sets every sublayer's flag, like Keras.
  void set_trainable(bool on);

  // Before the first call: this layer's add_weight(name, ...) returns `other`'s weight of the
  // same name instead of creating one (its shape must match, else ShapeError naming both
  // layers, the weight and both shapes). If `other` is not built when this layer builds,
  // `other` is built first for the same input shape. `other` must outlive this layer's build.
  // StateError if this layer is already built.
  void share_weights_from(Layer& other);
  // The layer given to share_weights_from, or null.
  Layer* weights_shared_from() const { return share_from_; }

  // The store weights are created in (default: VariableStore::default_store()). Applies to the
  // sublayers too; StateError once built.
  void set_store(VariableStore& store);
  VariableStore& store() const { return *store_; }

  // Direct sublayers, in tracking order.
  const std::vector<std::shared_ptr<Layer>>& layers() const { return sublayers_; }
  // The weight this layer created or took under short name `name` ("kernel"), or undefined.
  Variable weight(const std::string& name) const;

  // The per-instance cache entries kept for this layer, its sublayers and their weights (e.g.
  // conv filters in oneDNN's layout); kiln::cache_report() has the process-wide view. Built or
  // not; call it while no other thread builds the layer.
  LayerCacheInfo cache_info() const;
  // This layer's identity for per-instance caches (kiln/cache.h).
  const InstanceToken& cache_token() const { return cache_token_; }

  // State that is neither a weight nor configuration but changes as the layer runs: random
  // generators' states (Dropout's), by short name. Model files save it and assign it back, so
  // training resumes with the same random draws. Default: none.
  virtual std::vector<std::pair<std::string, Tensor>> state_tensors() const { return {}; }

 protected:
  // Keras' base fields: {"name": name(), "trainable": trainable(), "dtype": "float32"}.
  nlohmann::json base_config() const;

  // Creates weights for `input_shape` (batch dim included); runs once. Default: nothing.
  virtual void build(const Shape& input_shape);
  // Multi-input build; default: build(shapes[0]) for one input, nothing for several.
  virtual void build_multi(const std::vector<Shape>& input_shapes);
  // The computation.
  virtual Tensor call(const Tensor& x, bool training) = 0;
  // Multi-input computation; default: call(xs[0]) for one input, else ValueError naming the
  // layer and the count.
  virtual Tensor call_multi(const std::vector<Tensor>& xs, bool training);
  // Output shape for a (built-for) input shape; default: run call() on zeros of that shape.
  virtual Shape compute_output_shape(const Shape& input_shape);
  // Default: compute_output_shape(shapes[0]) for one input, else call_multi on zeros.
  virtual Shape compute_output_shape_multi(const std::vector<Shape>& input_shapes);

  // The dtype weights should take while building: the first floating input's dtype (so a
  // float64 input builds float64 weights, for gradient checks), else float32 (integer inputs,
  // shape-only builds).
  DType build_dtype() const { return build_dtype_; }

  // Creates (or, when sharing, looks up) weight `name` under this layer's scope. Only valid
  // inside build() (StateError otherwise). A trainable weight's tensor has requires_grad set.
  // A shape over 2^40 elements (sizes may come from a config file) is a ValueError naming the
  // layer, the weight and the shape, raised before allocating.
  Variable add_weight(const std::string& name, const Shape& shape,
                      const Initializer& initializer = initializers::glorot_uniform(),
                      bool trainable = true, DType dtype = float32);
  // As above with the initializer named as in Keras: add_weight("w", {n}, "uniform") is Keras'
  // add_weight(shape=(n,), initializer="uniform"). ValueError listing the valid names for an
  // unknown one (initializers::get).
  Variable add_weight(const std::string& name, const Shape& shape, const std::string& initializer,
                      bool trainable = true, DType dtype = float32);

  // Tracks `layer` as a sublayer (its weights become ours; it uses our store) and returns it.
  template <typename L>
  L& track(std::shared_ptr<L> layer) {
    L& ref = *layer;
    track_layer(std::shared_ptr<Layer>(std::move(layer)));
    return ref;
  }
  // Constructs an L in place and tracks it: `dense_ = &add_layer<Dense>(10, "relu");`.
  template <typename L, typename... Args>
  L& add_layer(Args&&... args) {
    return track(std::make_shared<L>(std::forward<Args>(args)...));
  }
  void track_layer(std::shared_ptr<Layer> layer);

 private:
  Tensor run(const std::vector<Tensor>& xs, bool multi, bool training);
  void ensure_built(const std::vector<Shape>& shapes, bool multi, DType dtype);
  void check_input_shapes(const std::vector<Shape>& shapes, bool multi) const;
  void require_built(const char* what) const;
  void collect(std::vector<Variable>& out, int which, bool parent_trainable) const;

  std::string name_;
  bool built_ = false;
  bool building_ = false;
  bool called_ = false;
  bool trainable_ = true;
  bool built_multi_ = false;
  DType build_dtype_ = float32;
  std::vector<Shape> built_shapes_;
  Shape last_output_shape_;
  VariableStore* store_;
  Layer* share_from_ = nullptr;
  std::vector<std::pair<std::string, Variable>> own_weights_;
  std::vector<std::shared_ptr<Layer>> sublayers_;
  InstanceToken cache_token_;
};

}  // namespace kiln
