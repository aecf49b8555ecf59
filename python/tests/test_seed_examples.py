"""The seed's three examples, as written but for `import kiln as tf`, each asserting what
TensorFlow does."""

import kiln as tf


def test_two_plain_instances_own_two_kernels_explicit_sharing_gives_one():
    x = tf.random.normal((2, 4))
    a = tf.keras.layers.Dense(3)
    b = tf.keras.layers.Dense(3)
    a(x)
    b(x)
    assert a.kernel != b.kernel  # two layers, two kernels (as in TensorFlow)

    c = tf.keras.layers.Dense(3)
    d = tf.keras.layers.Dense(3)
    d.share_weights_from(c)  # explicit sharing
    d(x)
    assert c.kernel == d.kernel
    assert (c(x).numpy() == d(x).numpy()).all()
    kernels = {id(v) for v in (a.kernel, b.kernel)}
    assert len({v.name for v in (a.kernel, b.kernel, c.kernel, d.kernel)}) == 3


def test_subclassed_model_tracks_layers_set_as_attributes():
    class MLP(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense1 = tf.keras.layers.Dense(64, activation="relu")
            self.dense2 = tf.keras.layers.Dense(64)

        def call(self, inputs):
            return self.dense2(self.dense1(inputs))

    model = MLP()
    y = model(tf.random.normal((8, 32)))
    assert y.shape == (8, 64)
    assert model.count_params() == 6272  # 32*64+64 + 64*64+64, as Keras counts
    assert len(model.trainable_weights) == 4
    assert [l.name for l in model.layers] == [model.dense1.name, model.dense2.name]
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 6,272" in lines[0]


def test_layers_created_inside_a_function_keep_four_variables_and_trace_twice():
    @tf.function
    def mlp(x):
        hidden = tf.keras.layers.Dense(32, activation="relu")
        out = tf.keras.layers.Dense(10)
        return out(hidden(x))

    batch64 = tf.random.normal((64, 20))
    batch8 = tf.random.normal((8, 20))
    for i in range(1000):
        mlp(batch64 if i % 2 else batch8)
    info = mlp.cache_info()
    assert info.traces == 2 and info.hits == 998
    assert info.variables == 4  # 2 kernels, 2 biases, created once
    assert mlp.experimental_get_tracing_count() == 2
    assert info.last_retrace_reason == "arg 0: shape [8, 20] -> [64, 20]"
