"""kiln.keras.initializers: Keras' initializers (kiln/nn/initializers.h), by function or name."""

from kiln._kiln import Initializer  # noqa: F401
from kiln._kiln.initializers import (  # noqa: F401
    get, glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform,
    zeros, ones, constant, random_uniform, random_normal, truncated_normal, orthogonal, identity,
)

GlorotUniform = glorot_uniform
GlorotNormal = glorot_normal
HeNormal = he_normal
HeUniform = he_uniform
Zeros = zeros
Ones = ones
Constant = constant
RandomUniform = random_uniform
RandomNormal = random_normal
TruncatedNormal = truncated_normal
Orthogonal = orthogonal
Identity = identity
