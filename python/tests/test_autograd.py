"""kiln.GradientTape from Python, TensorFlow's op names, and gradient checks through a layer
written in Python (central finite differences in float64)."""

import numpy as np
import pytest

import kiln as tf


class Affine(tf.keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform")
        self.b = self.add_weight(shape=(3,), initializer="random_normal")

    def call(self, x):
        return tf.tanh(x @ self.w + self.b) * tf.sigmoid(x[:, :1])


def numeric_grad(f, values, write, eps=1e-6):
    """Central differences of f() over `values`, each perturbed value stored with write()."""
    a = values.copy()
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        write(a)
        up = f()
        a[i] = old - eps
        write(a)
        down = f()
        a[i] = old
        write(a)
        g[i] = (up - down) / (2 * eps)
    return g


def test_gradient_check_through_a_python_layer_float64():
    layer = Affine()
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 5)))  # float64
    layer(x)
    assert layer.w.dtype == tf.float64  # weights follow the input's floating dtype
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(layer(x)))
    gx, gw, gb = tape.gradient(loss, [x, layer.w, layer.b])

    def loss_value():
        return tf.reduce_sum(tf.square(layer(x))).item()

    def write_x(a):
        x.numpy()[...] = a  # x.numpy() views x's memory: the layer reads the new values

    for grad, values, write in ((gx, x.numpy(), write_x), (gw, layer.w.numpy(), layer.w.assign),
                                (gb, layer.b.numpy(), layer.b.assign)):
        np.testing.assert_allclose(grad.numpy(), numeric_grad(loss_value, values, write),
                                   rtol=1e-6, atol=1e-8)


def test_tape_semantics():
    w = tf.Variable(tf.constant([[1.0], [2.0]]), name="w")
    x = tf.constant([[3.0, 4.0]])
    c = tf.constant(2.0)
    with tf.GradientTape(persistent=True) as tape:
        y = tf.matmul(x, w) * c
    assert len(tape) > 0
    np.testing.assert_allclose(tape.gradient(y, w).numpy(), [[6.0], [8.0]])
    assert tape.gradient(y, [w, c])[1] is None  # c was not watched
    with tf.GradientTape() as tape2:
        y = tf.reduce_sum(w * w)
    tape2.gradient(y, [w])
    with pytest.raises(tf.StateError, match="a non-persistent tape can compute gradients only once"):
        tape2.gradient(y, [w])  # a non-persistent tape gives one gradient
    with pytest.raises(tf.StateError, match="use `with`"):
        tf.GradientTape().gradient(y, [w])


def test_tensorflow_names():
    x = tf.constant([[1.0, -2.0], [3.0, 4.0]])
    np.testing.assert_allclose(tf.reduce_sum(x, axis=1).numpy(), [-1, 7])
    np.testing.assert_allclose(tf.reduce_mean(x).numpy(), 1.5)
    np.testing.assert_allclose(tf.reduce_max(x, axis=0, keepdims=True).numpy(), [[3, 4]])
    assert tf.argmax(x, axis=1).dtype == tf.int64
    np.testing.assert_allclose(tf.nn.relu(x).numpy(), [[1, 0], [3, 4]])
    np.testing.assert_allclose(tf.transpose(x).numpy(), [[1, 3], [-2, 4]])
    np.testing.assert_allclose(tf.reshape(x, (4,)).numpy(), [1, -2, 3, 4])
    assert tf.concat([x, x], axis=0).shape == (4, 2)
    assert tf.one_hot(tf.constant([0, 2]), 3).shape == (2, 3)
    assert tf.cast(x, tf.int32).dtype == tf.int32
    assert tf.math.square(x).shape == (2, 2)
    np.testing.assert_allclose(tf.where(x > 0, x, 0.0).numpy(), [[1, 0], [3, 4]])
    np.testing.assert_allclose(tf.nn.softmax(x).numpy().sum(axis=1), [1, 1], rtol=1e-6)
    np.testing.assert_allclose(tf.gather(x, tf.constant([1]), axis=0).numpy(), [[3, 4]])
    assert tf.pad(x, [(1, 1)]).shape == (4, 2)
    assert tf.nn.conv2d(tf.ones((1, 4, 4, 1)), tf.ones((3, 3, 1, 2)), padding="SAME").shape == (1, 4, 4, 2)
    assert tf.nn.max_pool2d(tf.ones((1, 4, 4, 1)), 2).shape == (1, 2, 2, 1)
    assert tf.range(5).shape == (5,)


def test_random_seeds():
    a = tf.random.normal((3, 3), seed=5).numpy()
    b = tf.random.normal((3, 3), seed=5).numpy()
    np.testing.assert_array_equal(a, b)
    c = tf.random.normal((3, 3)).numpy()
    d = tf.random.normal((3, 3)).numpy()
    assert not np.array_equal(c, d)  # unseeded draws differ
    u = tf.random.uniform((1000,), minval=2, maxval=3, seed=1).numpy()
    assert u.min() >= 2 and u.max() < 3


def test_kiln_ops_names_and_keyed_random():
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(tf.ops.sub(x, 1.0).numpy(), [[0, 1], [2, 3]])
    np.testing.assert_allclose(tf.ops.sum(x, [0]).numpy(), [4, 6])
    np.testing.assert_allclose(tf.ops.mean(x).numpy(), 2.5)
    gen = tf.ops.SeedGenerator(7)
    k1, k2 = gen.next(), gen.next()
    assert gen.counter == 2 and k1.dtype == tf.int64 and k1.shape == (2,)
    a = tf.ops.random_normal((4,), 0.0, 1.0, k1).numpy()
    b = tf.ops.random_normal((4,), 0.0, 1.0, k2).numpy()
    assert not np.array_equal(a, b)
    # key {seed, 0} draws what the seeded creator draws
    np.testing.assert_array_equal(
        tf.ops.random_normal((4,), 0.0, 1.0, tf.constant([7, 0], tf.int64)).numpy(),
        tf.random.normal((4,), seed=7).numpy())
