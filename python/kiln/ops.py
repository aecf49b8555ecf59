"""kiln.ops: the public ops of kiln/ops.h under their C++ names (kiln::sub -> kiln.ops.sub).
The package's top level and kiln.nn / kiln.math carry the same ops under TensorFlow's names."""

from kiln import _kiln
from kiln._kiln import (  # noqa: F401
    add, maximum, minimum, exp, log, sqrt, abs, square, equal, not_equal, less, less_equal,
    greater, greater_equal, where, cast, broadcast_to, sum_to, relu, leaky_relu, gelu, sigmoid,
    tanh, softmax, log_softmax, argmax, matmul, reshape, transpose, concat, slice, gather,
    one_hot, pad, conv2d, max_pool2d, avg_pool2d, dropout, softmax_cross_entropy, assign,
    assign_add, stop_gradient, SeedGenerator,
)
from kiln._kiln import pow  # noqa: F401,A004

sub = _kiln.subtract
mul = _kiln.multiply
div = _kiln.divide
neg = _kiln.negative


def sum(x, axes=None, keepdims=False):  # noqa: A001  (kiln::sum)
    return _kiln.reduce_sum(x, axes, keepdims)


def mean(x, axes=None, keepdims=False):
    return _kiln.reduce_mean(x, axes, keepdims)


def max(x, axes=None, keepdims=False):  # noqa: A001  (kiln::max)
    return _kiln.reduce_max(x, axes, keepdims)


def random_uniform(shape, low, high, key, dtype=_kiln.float32):
    """Random numbers named by a key (int64 [2] = {seed, counter}, SeedGenerator.next())."""
    return _kiln.random_uniform_key(shape, low, high, key, dtype)


def random_normal(shape, mean, stddev, key, dtype=_kiln.float32):
    return _kiln.random_normal_key(shape, mean, stddev, key, dtype)
