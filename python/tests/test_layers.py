"""Layers subclassed in Python, built-in layers with Keras' arguments, models, lifetimes."""

import gc
import weakref

import numpy as np
import pytest

import kiln
import kiln as tf


class Linear(tf.keras.layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.calls = 0

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform",
                                 trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

    def call(self, inputs, training=False):
        self.calls += 1
        return tf.matmul(inputs, self.w) + self.b


def test_python_layer_builds_once_with_keras_add_weight():
    layer = Linear(3)
    assert not layer.built and layer.name == "linear" or layer.name.startswith("linear")
    y = layer(np.ones((2, 5), np.float32))
    assert y.shape == (2, 3) and layer.built
    layer(np.ones((7, 5), np.float32))  # another batch size: no rebuild
    assert [w.shape for w in layer.weights] == [(5, 3), (3,)]
    assert layer.weights[0].name == layer.name + "/variable"
    assert layer.count_params() == 18 and layer.calls == 2
    with pytest.raises(kiln.ShapeError, match=layer.name):
        layer(np.ones((2, 6), np.float32))  # built for 5 features


def test_call_without_training_argument_and_returning_numpy_like():
    class Double(tf.keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2

    np.testing.assert_allclose(Double()(np.ones(3, np.float32), training=True).numpy(), 2.0)


def test_python_layer_owned_only_by_a_cpp_model_keeps_its_python_half():
    model = tf.keras.Sequential([Linear(4), tf.keras.layers.Dense(2)])
    ref = weakref.ref(model.layers[0])
    gc.collect()
    assert ref() is not None  # the C++ model keeps the Python object alive
    y = model(np.ones((3, 5), np.float32))  # its Python call still runs
    assert y.shape == (3, 2) and model.layers[0].calls == 1
    assert type(model.layers[0]) is Linear and model.layers[0].units == 4
    del model
    gc.collect()
    assert ref() is None  # and lets it go with the model: no leak


def test_python_layer_tracked_by_a_python_model_survives_the_attribute():
    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.block = Linear(8)
            self.head = tf.keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.head(tf.nn.relu(self.block(x)))

    net = Net()
    net(np.ones((2, 3), np.float32))
    block = weakref.ref(net.block)
    del net.block  # the C++ model still holds the layer
    gc.collect()
    assert block() is not None and net.layers[0] is block()
    assert net.layers[0](np.ones((2, 3), np.float32)).shape == (2, 8)  # Python call still there


def test_subclassed_model_tracks_lists_of_layers_and_nested_python_layers():
    class Stack(tf.keras.Model):
        def __init__(self):
            super().__init__(name="stack")
            self.blocks = [Linear(4), Linear(4)]
            self.out = tf.keras.layers.Dense(1)

        def call(self, x):
            for b in self.blocks:
                x = b(x)
            return self.out(x)

    m = Stack()
    m(np.ones((1, 2), np.float32))
    assert len(m.layers) == 3
    assert m.count_params() == (2 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    assert all(w.name.startswith("stack/") for w in m.weights)


def test_builtin_layers_take_keras_arguments():
    x = tf.random.normal((2, 8, 8, 3), seed=3)
    conv = tf.keras.layers.Conv2D(4, 3, strides=(1, 1), padding="same", activation="relu",
                                  kernel_initializer="he_normal")
    y = conv(x)
    assert y.shape == (2, 8, 8, 4) and conv.kernel.shape == (3, 3, 3, 4)
    assert tf.keras.layers.MaxPooling2D(pool_size=2)(y).shape == (2, 4, 4, 4)
    assert tf.keras.layers.AveragePooling2D(2, strides=1, padding="same")(y).shape == (2, 8, 8, 4)
    assert tf.keras.layers.GlobalAveragePooling2D()(y).shape == (2, 4)
    assert tf.keras.layers.Flatten()(y).shape == (2, 256)
    bn = tf.keras.layers.BatchNormalization(momentum=0.9)
    assert bn(y, training=True).shape == y.shape and bn.moving_mean.shape == (4,)
    assert tf.keras.layers.LayerNormalization(epsilon=1e-5)(y).shape == y.shape
    assert tf.keras.layers.Dropout(0.5, seed=1)(y, training=True).shape == y.shape
    emb = tf.keras.layers.Embedding(10, 3)
    assert emb(np.array([[1, 2]], np.int32)).shape == (1, 2, 3)
    a, b = tf.ones((2, 3)), tf.ones((2, 3))
    assert tf.keras.layers.Add()([a, b]).shape == (2, 3)
    assert tf.keras.layers.Concatenate()([a, b]).shape == (2, 6)
    assert tf.keras.layers.Activation("tanh")(a).shape == (2, 3)
    d = tf.keras.layers.Dense(2, activation=tf.nn.relu, use_bias=False)
    d(a)
    assert d.bias is None and len(d.weights) == 1


def test_builtin_layer_errors_name_what_was_wrong():
    with pytest.raises(kiln.ValueError, match="unknown activation|valid"):
        tf.keras.layers.Dense(2, activation="nope")
    with pytest.raises(kiln.ValueError, match="glorot_uniform"):
        tf.keras.layers.Dense(2, kernel_initializer="nope")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        tf.keras.layers.Conv2D(2, 3, padding="full")


def test_layer_without_call_is_refused_clearly():
    class NoCall(tf.keras.layers.Layer):
        pass

    with pytest.raises(AttributeError, match="'NoCall' object has no attribute 'call'"):
        NoCall()(tf.ones((1, 2)))


def test_layer_weights_before_build_is_a_state_error():
    with pytest.raises(kiln.StateError, match="layer 'dense.*' is not built yet, so it has no weights"):
        tf.keras.layers.Dense(2).weights


def test_python_layer_inside_a_traced_function():
    layer = Linear(3)

    @tf.function
    def f(x):
        return tf.nn.relu(layer(x))

    x = tf.random.normal((4, 5), seed=1)
    eager = tf.nn.relu(layer(x)).numpy()
    calls = layer.calls
    np.testing.assert_allclose(f(x).numpy(), eager, rtol=1e-6)
    np.testing.assert_allclose(f(x).numpy(), eager, rtol=1e-6)
    assert layer.calls == calls + 1  # traced once; the second call ran the graph


def test_multi_input_python_layer():
    class Bilinear(tf.keras.layers.Layer):
        def build(self, input_shapes):
            (_, n), (_, m) = input_shapes
            self.w = self.add_weight(shape=(n, m), initializer="ones")

        def call(self, inputs):
            a, b = inputs
            return tf.reduce_sum(tf.matmul(a, self.w) * b, axis=1)

    layer = Bilinear()
    y = layer([tf.ones((2, 3)), tf.ones((2, 4))])
    np.testing.assert_allclose(y.numpy(), [12.0, 12.0])
    assert layer.weights[0].shape == (3, 4)


def test_trainable_flag_and_weights_lists():
    layer = Linear(2)
    layer(tf.ones((1, 3)))
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert layer.get_weight("variable") == layer.w and layer.get_weight("nope") is None
