// Weight checkpoints in the safetensors format (kiln/io.h). save_weights/load_weights key each
// weight by its place in the layer tree ("2/kernel": weight "kernel" of sublayer 2; "0/1/bias"
// nests), not by its unique name ("dense_7/kernel" in one process may be "dense/kernel" in the
// next), so a model built by the same code loads the file, as with PyTorch's state_dict. A
// variable shared by several layers is stored once (the other places are aliases in the file)
// and tied again on load. Writes are atomic: a failed save never leaves a half-written file,
// and an existing file survives.
//
//   kiln::save_weights(*model, "model.safetensors");
//   auto fresh = kiln::make_mlp();                  // built for [28, 28, 1] already
//   kiln::load_weights(*fresh, "model.safetensors");
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/nn/variable.h"

namespace kiln {

class Layer;

// Writes every weight of `model` (Layer::weights(): trainable and not, shared ones once).
// Throws StateError when the model is not built, kiln::Error when the file cannot be written.
void save_weights(const Layer& model, const std::string& path);

// Loads into the weights of a built `model` (StateError otherwise) from `path`. Everything is
// checked before any variable changes: the file must hold exactly the model's weights by
// tree key (a tensor or alias in the file counts). Throws FormatError naming the file and the
// variables missing from it or unexpected in it (and for a malformed or truncated file),
// ShapeError naming the variable, the file and both shapes, DTypeError likewise for dtypes.
void load_weights(Layer& model, const std::string& path);

// The same for an explicit list of variables (e.g. an optimizer's slots), keyed by their full
// names. Duplicate handles of one variable are written once. `metadata` goes into the file's
// __metadata__.
void save_variables(const std::vector<Variable>& variables, const std::string& path,
                    const std::map<std::string, std::string>& metadata = {});
void load_variables(const std::vector<Variable>& variables, const std::string& path);

}  // namespace kiln
