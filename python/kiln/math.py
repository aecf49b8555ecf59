"""kiln.math: tf.math's names for kiln's elementwise ops and reductions."""

from kiln._kiln import (  # noqa: F401
    add, subtract, multiply, divide, pow, maximum, minimum, negative, exp, log, sqrt, abs,
    square, equal, not_equal, less, less_equal, greater, greater_equal, reduce_sum,
    reduce_mean, reduce_max, argmax, sigmoid, tanh,
)
