"""kiln.keras.optimizers: SGD, Adam, AdamW, RMSprop with Keras' arguments and defaults."""

from kiln import _kiln
from kiln._kiln import Optimizer, SGD, Adam, AdamW, RMSprop  # noqa: F401

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier):
    """An optimizer from a Keras name ("adam") or an optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise _kiln.ValueError(f"unknown optimizer {identifier!r} (kiln has {sorted(_BY_NAME)})")
