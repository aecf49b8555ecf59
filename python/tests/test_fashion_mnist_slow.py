"""A model written in Python, trained with fit on Fashion-MNIST, gives the C++ numbers: the
same loss, accuracy and test accuracy as `kiln train --model mlp` (one implementation)."""

import json
import os
import subprocess

import pytest

import kiln as tf

DATA = tf._kiln.load_fashion_mnist  # noqa: SLF001  (kiln's own loader: the CLI's data)


class Mlp(tf.keras.Model):  # kiln::make_mlp, written as a Keras user would
    def __init__(self):
        super().__init__()
        self.flatten = tf.keras.layers.Flatten()
        self.hidden1 = tf.keras.layers.Dense(256, activation="relu")
        self.hidden2 = tf.keras.layers.Dense(128, activation="relu")
        self.logits = tf.keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.logits(self.hidden2(self.hidden1(self.flatten(x))))


def cli():
    path = os.environ.get("KILN_CLI")
    if not path or not os.path.exists(path):
        pytest.skip("KILN_CLI (the kiln program) is not set; CTest sets it")
    return path


def test_python_model_matches_the_cpp_training_run(tmp_path):
    try:
        (x, y), (xt, yt) = DATA()
    except tf.FormatError as e:
        pytest.skip(str(e))
    metrics = tmp_path / "metrics.jsonl"
    subprocess.run([cli(), "train", "--model", "mlp", "--epochs", "1", "--threads", "2",
                    "--metrics-out", str(metrics), "--out", str(tmp_path / "w.safetensors")],
                   check=True, stdout=subprocess.DEVNULL)
    cpp = json.loads(metrics.read_text().splitlines()[-1])

    tf.set_num_threads(2)
    tf.set_global_seed(0)  # the CLI's --seed 0: weights and shuffle
    model = Mlp()
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    h = model.fit(tf.Dataset(x, y).shuffle(0).batch(64), epochs=1, verbose=0,
                  validation_data=tf.Dataset(xt, yt).batch(500))
    assert model.count_params() == 235146
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h.history[key][0] == cpp[key], key  # the same numbers, not just close ones
    assert h.history["val_accuracy"][0] > 0.8
