"""kiln.nn: tf.nn's names for kiln's activations, convolution, pooling and dropout."""

from kiln import _kiln
from kiln._kiln import relu, sigmoid, tanh, softmax, log_softmax, leaky_relu, gelu  # noqa: F401


def conv2d(input, filters, strides=1, padding="VALID", dilations=1, groups=1):  # noqa: A002
    """NHWC input, HWIO filters (tf.nn.conv2d)."""
    return _kiln.conv2d(input, filters, strides, padding, dilations, groups)


def max_pool2d(input, ksize, strides=None, padding="VALID"):  # noqa: A002
    return _kiln.max_pool2d(input, ksize, strides, padding)


def avg_pool2d(input, ksize, strides=None, padding="VALID"):  # noqa: A002
    return _kiln.avg_pool2d(input, ksize, strides, padding)


def dropout(x, rate, seed=0, training=True):
    """Zeroes elements with probability rate; the mask depends only on (seed, index)."""
    return _kiln.dropout(x, rate, seed, training)


def sparse_softmax_cross_entropy_with_logits(labels, logits):
    """Per-example -log softmax(logits)[label] (tf.nn's argument order: labels first)."""
    return _kiln.softmax_cross_entropy(logits, labels)
