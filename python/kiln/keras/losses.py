"""kiln.keras.losses: Keras' loss classes and functions (from_logits=False by default, as
Keras)."""

from kiln import _kiln
from kiln._kiln import (  # noqa: F401
    Loss, SparseCategoricalCrossentropy, MeanSquaredError, BinaryCrossentropy,
    sparse_categorical_crossentropy, mean_squared_error, binary_crossentropy,
)

MSE = mse = mean_squared_error

_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
}


def get(identifier):
    """A loss from a Keras name or a loss object."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise _kiln.ValueError(f"unknown loss {identifier!r} (kiln has {sorted(_BY_NAME)})")
