"""compile / fit / evaluate / predict on NumPy arrays and kiln datasets, callbacks, optimizers."""

import re

import numpy as np
import pytest

import kiln as tf


def blobs(n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    centers = np.array([[2, 0], [-2, 0], [0, 2]], np.float32)
    x = centers[y] + rng.normal(scale=0.5, size=(n, 2)).astype(np.float32)
    return x, y


class Scale(tf.keras.layers.Layer):
    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.s


class Net(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.scale = Scale()
        self.hidden = tf.keras.layers.Dense(16, activation="relu")
        self.out = tf.keras.layers.Dense(3)

    def call(self, x, training=False):
        return self.out(self.hidden(self.scale(x)))


@pytest.mark.parametrize("graph", [False, True])
def test_fit_evaluate_predict_on_numpy(graph, capfd):
    x, y = blobs()
    model = Net()
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=not graph)
    epochs_seen = []
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0,
                        validation_data=(x, y),
                        callbacks=[lambda epoch, logs: epochs_seen.append((epoch, logs["loss"]))])
    assert history.epoch == [0, 1, 2, 3, 4]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert [e for e, _ in epochs_seen] == [0, 1, 2, 3, 4]
    loss, acc = model.evaluate(x, y, batch_size=64)
    assert acc > 0.9 and loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    p = model.predict(x[:10])
    assert isinstance(p, np.ndarray) and p.shape == (10, 3)
    assert model.scale.s.numpy().tolist() != [1.0, 1.0]  # the Python layer's weight trained
    assert model.evaluate(x, y, return_dict=True)["accuracy"] == acc


def test_sequential_with_keras_names_and_dataset():
    x, y = blobs(128, seed=1)
    model = tf.keras.Sequential([
        tf.keras.layers.Dense(8, activation="relu"),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ds = tf.Dataset(x, y).shuffle(0).batch(16)
    h = model.fit(ds, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2
    assert model.predict(ds).shape == (128, 3)
    assert len(ds) == 8 and sum(1 for _ in ds) == 8


def test_python_callback_subclass_can_stop_training():
    class StopAfterTwo(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_train_begin(self, logs):
            self.events.append("begin")
            assert self.model is not None

        def on_epoch_end(self, epoch, logs):
            self.events.append(epoch)
            if epoch == 1:
                self.stop_training = True

    x, y = blobs(64)
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = StopAfterTwo()
    h = model.fit(x, y, epochs=10, verbose=0, callbacks=[cb, tf.keras.callbacks.EarlyStopping(
        monitor="loss", patience=5)])
    assert cb.events == ["begin", 0, 1] and h.epoch == [0, 1]


def test_errors_in_training_are_clear():
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    with pytest.raises(tf.StateError, match="compile"):
        model.fit(np.ones((4, 2), np.float32), np.zeros(4, np.int32))
    with pytest.raises(tf.ValueError, match="unknown optimizer"):
        model.compile("adamax", "mse")
    with pytest.raises(tf.ValueError, match="unknown metric"):
        model.compile("adam", "mse", metrics=["auc"])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(tf.ShapeError, match=r"images \[4, 2\] and labels \[5\] must have the same first dim"):
        model.fit(np.ones((4, 2), np.float32), np.zeros(5, np.int32), verbose=0)

    def broken(epoch, logs):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        model.fit(np.ones((4, 2), np.float32), np.zeros(4, np.int32), verbose=0,
                  callbacks=[broken])


def test_custom_training_loop_with_apply_gradients():
    x, y = blobs(64)
    model = Net()
    opt = tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses = []
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        opt.apply_gradients(zip(grads, model.trainable_weights))
        losses.append(loss.item())
    assert losses[-1] < losses[0] and opt.iterations == 20
    assert opt.slot(model.trainable_weights[0], "momentum") is not None


def test_float64_numpy_features_train_as_float32_like_keras():
    x, y = blobs(64)
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype(np.float64), y, verbose=0)
    assert model.weights[0].dtype == tf.float32
    assert model.predict(x.astype(np.float64)).dtype == np.float32


def test_python_errors_inside_a_layer_reach_fit_unchanged():
    class Broken(tf.keras.layers.Layer):
        def call(self, x):
            raise ZeroDivisionError("broken layer")

    model = tf.keras.Sequential([Broken()])
    model.compile("adam", "mse")
    with pytest.raises(ZeroDivisionError, match="broken layer"):
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 2), np.float32), verbose=0)


def test_summary_of_an_unbuilt_model_needs_an_input_shape():
    model = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    with pytest.raises(tf.StateError, match="model '.*' is not built yet: use summary\\(input_shape\\)"):
        model.summary()
    lines = []
    model.summary(input_shape=(28, 28, 1), print_fn=lines.append)
    assert "Total params: 7,850" in lines[0]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_dataset_map_with_a_python_function(prefetch):
    x, y = blobs(64)
    ds = tf.Dataset(x, y).batch(16).map(lambda bx, by: (bx * 2.0, by)).prefetch(prefetch)
    first = next(iter(ds))
    np.testing.assert_allclose(first[0].numpy(), x[:16] * 2.0)
    it = iter(ds)
    next(it)
    del it  # an early stop joins the prefetch thread without deadlocking on the GIL
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert len(model.fit(ds, epochs=2, verbose=0).history["loss"]) == 2

    def bad(bx, by):
        raise KeyError("in the map")

    with pytest.raises(KeyError, match="in the map"):
        list(tf.Dataset(x, y).batch(16).map(bad).prefetch(prefetch))


def test_fit_validation_split_holds_out_the_last_examples_like_keras():
    x, y = blobs(100, seed=3)
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    h = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_split=0.2, shuffle=False)
    # Keras validates on the last 20 examples: the same numbers as evaluate() on them.
    assert h.history["val_loss"][0] == pytest.approx(model.evaluate(x[80:], y[80:], verbose=0)[0],
                                                     rel=1e-5)
    with pytest.raises(tf.ValueError, match=r"validation_split must be in \(0, 1\), got 1.5"):
        model.fit(x, y, verbose=0, validation_split=1.5)
    with pytest.raises(tf.ValueError, match="validation_split needs arrays x, y, not a Dataset"):
        model.fit(tf.Dataset(x, y).batch(8), verbose=0, validation_split=0.5)
    with pytest.raises(tf.ValueError, match="give validation_split or validation_data, not both"):
        model.fit(x, y, verbose=0, validation_split=0.5, validation_data=(x, y))
    with pytest.raises(tf.ValueError, match="leaves no training or no validation examples"):
        model.fit(x[:1], y[:1], verbose=0, validation_split=0.5)


def test_fit_prints_keras_progress_lines(capfd):
    x, y = blobs(64, seed=4)
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=1)
    out = capfd.readouterr().out
    assert re.search(r"Epoch 1/2 .* loss: \d+\.\d+ - accuracy: \d\.\d+", out), out
    assert "Epoch 2/2" in out
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert "Epoch" not in capfd.readouterr().out
