"""kiln.keras.layers: Layer to subclass in Python, and kiln's built-in layers with Keras' names.

    class Linear(kiln.keras.layers.Layer):
        def __init__(self, units=32):
            super().__init__()
            self.units = units

        def build(self, input_shape):                  # once, on the first call
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="random_normal", trainable=True)

        def call(self, inputs, training=False):        # `training` is optional
            return kiln.matmul(inputs, self.w)

The layer is a kiln::Layer: C++ models own it, fit() trains it, kiln.function traces it, and
its Python half stays alive as long as any C++ model holds it.
"""

import inspect
import re

from kiln import _kiln
from kiln._kiln import (  # noqa: F401  (built-in layers, Keras' argument names)
    Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Activation,
    Dropout, Embedding, BatchNormalization, LayerNormalization, Add, Concatenate,
)

MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D


def _snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


_takes_training = {}


def _call_takes_training(cls):
    t = _takes_training.get(cls)
    if t is None:
        try:
            params = inspect.signature(cls.call).parameters
            t = "training" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError, AttributeError):
            t = False
        _takes_training[cls] = t
    return t


def _is_layer(value):
    return isinstance(value, _kiln.Layer)


class LayerMixin:
    """What Keras adds to a layer written in Python: the Keras constructor, add_weight with
    Keras' arguments, `call(inputs, training=False)` with `training` optional, and tracking of
    layers set as attributes (also in lists and tuples)."""

    def _kiln_init(self, base, name, trainable):
        base.__init__(self, name or "", _snake_case(type(self).__name__))
        object.__setattr__(self, "_kiln_weight_names", set())
        if not trainable:
            self.trainable = False

    def _kiln_type_name(self):
        return type(self).__name__

    def _kiln_call(self, inputs, training):
        if _call_takes_training(type(self)):
            out = self.call(inputs, training=training)
        else:
            out = self.call(inputs)
        return out if isinstance(out, _kiln.Tensor) else _kiln.convert_to_tensor(out)

    def add_weight(self, name=None, shape=None, dtype=None, initializer=None, trainable=True,
                   **kwargs):
        """Keras' add_weight, valid inside build(): shape, initializer by name ("uniform",
        "glorot_uniform", default glorot_uniform) or kiln.Initializer, trainable. dtype
        defaults to the input's floating dtype (float64 inputs build float64 weights)."""
        if isinstance(name, (tuple, list)) and shape is None:  # Keras 3: add_weight(shape, ...)
            name, shape = None, name
        if shape is None:
            shape = ()
        if name is None:
            names = self.__dict__.setdefault("_kiln_weight_names", set())
            name, k = "variable", 1
            while name in names:
                name, k = f"variable_{k}", k + 1
        self.__dict__.setdefault("_kiln_weight_names", set()).add(name)
        dtype = self._build_dtype() if dtype is None else dtype
        return self._add_weight(name, tuple(shape), initializer or "glorot_uniform",
                                trainable, dtype)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            if _is_layer(value):
                self._track(value)
            elif isinstance(value, (list, tuple)) and value and all(map(_is_layer, value)):
                for layer in value:
                    self._track(layer)
        super().__setattr__(name, value)


class Layer(LayerMixin, _kiln.Layer):
    """Subclass with build(input_shape) and call(inputs, training=False)."""

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        self._kiln_init(_kiln.Layer, name, trainable)
