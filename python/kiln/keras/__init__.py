"""kiln.keras: tf.keras' names for what kiln has (layers, Model, Sequential, optimizers, losses,
callbacks, initializers)."""

from kiln.keras import layers, optimizers, losses, callbacks, initializers, models  # noqa: F401
from kiln.keras.models import Model, Sequential  # noqa: F401
