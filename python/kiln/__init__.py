"""kiln: a C++ deep-learning library with Keras' habits, one import away.

    import kiln as tf

    x = tf.random.normal((64, 784), seed=1)
    w = tf.Variable(tf.random.normal((784, 10), stddev=0.05))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w)))
    (dw,) = tape.gradient(loss, [w])

Everything computes in kiln's C++ core (kiln._kiln); this package only arranges it under
TensorFlow's and Keras' names. NumPy arrays go in and out without copies where possible:
np.asarray(t) and t.numpy() view a tensor's memory, and kiln.from_numpy(a) shares the array's
memory, as torch.from_numpy (non-contiguous, read-only, byte-swapped or misaligned arrays are
copied; kiln.constant(a) is a copy, as tf.constant).
"""

from kiln import _kiln
from kiln._kiln import (  # noqa: F401  (the public names)
    DType, Tensor, Variable, GradientTape, SeedGenerator, Initializer, InstanceToken,
    Error, ShapeError, DTypeError, ValueError, FormatError, StateError,
    float32, float64, int32, int64, int8, uint8, as_dtype,
    from_numpy, convert_to_tensor, zeros, ones, empty, fill, zeros_like, ones_like,
    add, subtract, multiply, divide, pow, maximum, minimum, negative, exp, log, sqrt, abs,
    square, equal, not_equal, less, less_equal, greater, greater_equal, where, cast,
    broadcast_to, relu, sigmoid, tanh, softmax, log_softmax, reduce_sum, reduce_mean,
    reduce_max, argmax, matmul, reshape, transpose, concat, slice, gather, one_hot, pad,
    stop_gradient, assign, assign_add, arange, set_global_seed, reset_layer_names, global_seed, set_num_threads, num_threads,
    clear_caches, set_instance_cache_limits, load_fashion_mnist, Dataset,
    GraphModel, save_model, load_model, load_optimizer, freeze, export_onnx, import_onnx,
    save_npy, load_npy,
)

bool = _kiln.bool  # noqa: A001  (TensorFlow's tf.bool)
constant = convert_to_tensor


def range(start, limit=None, delta=1, dtype=float32):  # noqa: A001  (tf.range)
    """[start, limit) by delta, like tf.range / numpy.arange."""
    return _kiln.arange(start, limit, delta, dtype)


def identity(x):
    return convert_to_tensor(x)


def shape(x):
    return convert_to_tensor(list(convert_to_tensor(x).shape), int32)


def size(x):
    return convert_to_tensor(x).size


def rank(x):
    return convert_to_tensor(x).ndim


def _variable_operator(name):
    def op(self, *args):
        return getattr(self.value, name)(*args)

    op.__name__ = name
    return op


# A variable in an expression is its current value, as in TensorFlow.
for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__",
              "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__abs__", "__getitem__",
              "__float__", "__int__", "__len__", "item"):
    setattr(Variable, _name, _variable_operator(_name))
del _name

from kiln import random, nn, math, ops  # noqa: E402
from kiln._function import function, TensorSpec  # noqa: E402
from kiln._cache import cached_per_instance, cache_report, CacheReport  # noqa: E402
from kiln import keras  # noqa: E402
from kiln.keras import layers, Model, Sequential  # noqa: E402,F401

__all__ = [n for n in dir() if not n.startswith("_")]
