"""kiln.keras: tf.keras' names for what kiln has (layers, Model, Sequential, optimizers, losses,
callbacks, initializers, the mixed-precision policy)."""

from kiln.keras import (  # noqa: F401
    layers, optimizers, losses, callbacks, initializers, models, mixed_precision)
from kiln.keras.models import Model, Sequential  # noqa: F401
