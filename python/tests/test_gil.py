"""The GIL is released while kiln computes: other Python threads run meanwhile."""

import threading
import time

import numpy as np

import kiln as tf


def progress_while(work):
    """How often the main thread's Python loop ran while `work` ran in another thread."""
    t = threading.Thread(target=work)
    count = 0
    t.start()
    while t.is_alive():
        count += 1
        time.sleep(0)
    t.join()
    return count


def test_kernels_release_the_gil():
    a = tf.random.normal((1024, 1024), seed=1)

    def work():
        for _ in range(20):
            tf.matmul(a, a)

    assert progress_while(work) > 100


def test_training_releases_the_gil():
    x = np.random.default_rng(0).normal(size=(8192, 64)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(256, activation="relu"),
                                 tf.keras.layers.Dense(2)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert progress_while(lambda: model.fit(x, y, epochs=2, verbose=0)) > 100


def test_ops_with_python_arguments_release_the_gil_too():
    # cast, one_hot, reshape, ... convert their Python arguments first, then run without it.
    a = tf.random.normal((1024, 1024), seed=2)
    labels = tf.from_numpy((np.arange(256 * 1024) % 10).astype(np.int32).reshape(256, 1024))

    def work():
        for _ in range(10):
            tf.cast(a, "float64")
            tf.one_hot(labels, 10)
            tf.keras.losses.sparse_categorical_crossentropy(labels[0], a[:1024, :10],
                                                            from_logits=True)

    assert progress_while(work) > 100
