#!/usr/bin/python3
"""Overhead of the Python bindings (report only; nothing here is asserted).

    PYTHONPATH=build/python /usr/bin/python3 python/bench/overhead.py [--cli build/kiln]

Measures, with repetitions (min / median / max):
- an eager `a + b` on small tensors from Python, beside NumPy and PyTorch (when importable);
- a kiln.function cache hit from Python;
- a training step at batch 64 on Fashion-MNIST's MLP: the C++ `kiln train` epoch vs Python's
  fit() of the same model written as a Python Model subclass, and a Python GradientTape loop.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

import kiln as tf


def timeit(fn, number, repeat=7):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times), statistics.median(times), max(times)


def show(name, t, unit=1e-6, label="us"):
    lo, med, hi = (x / unit for x in t)
    print(f"  {name:<44} {med:9.2f} {label}  (min {lo:.2f}, max {hi:.2f})")


class Mlp(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten = tf.keras.layers.Flatten()
        self.hidden1 = tf.keras.layers.Dense(256, activation="relu")
        self.hidden2 = tf.keras.layers.Dense(128, activation="relu")
        self.logits = tf.keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.logits(self.hidden2(self.hidden1(self.flatten(x))))


def small_ops():
    print("small ops (32 floats):")
    a, b = tf.ones((32,)), tf.ones((32,))
    show("kiln eager a + b from Python", timeit(lambda: a + b, 20000))
    show("kiln.add(a, b)", timeit(lambda: tf.add(a, b), 20000))
    na, nb = np.ones(32, np.float32), np.ones(32, np.float32)
    show("NumPy a + b", timeit(lambda: na + nb, 20000))
    try:
        import torch
        ta, tb = torch.ones(32), torch.ones(32)
        show("PyTorch a + b", timeit(lambda: ta + tb, 20000))
    except ImportError:
        print("  PyTorch: not importable here (not measured)")
    f = tf.function(lambda x, y: x + y)
    f(a, b)
    show("kiln.function hit (x + y)", timeit(lambda: f(a, b), 20000))
    x = tf.random.normal((64, 784), seed=1)
    mlp = tf.function(Mlp())
    mlp(x)
    show("kiln.function hit (MLP forward, batch 64)", timeit(lambda: mlp(x), 500))


def training(cli, threads):
    print(f"training step, Fashion-MNIST MLP, batch 64, {threads} threads (one epoch each):")
    (x, y), (xt, yt) = tf.load_fashion_mnist()
    steps = (x.shape[0] + 63) // 64
    if cli and os.path.exists(cli):
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([cli, "train", "--model", "mlp", "--epochs", "1", "--threads",
                            str(threads), "--metrics-out", f"{d}/m.jsonl", "--out", f"{d}/w"],
                           check=True, stdout=subprocess.DEVNULL)
            cpp = json.loads(open(f"{d}/m.jsonl").read().splitlines()[-1])["seconds"]
        print(f"  C++ kiln train                               {cpp / steps * 1e3:9.3f} ms/step")
    else:
        cpp = None
        print("  C++ kiln train: pass --cli build/kiln to measure")
    tf.set_num_threads(threads)
    tf.set_global_seed(0)
    model = Mlp()
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    h = model.fit(tf.Dataset(x, y).shuffle(0).batch(64), epochs=1, verbose=0)
    py = h.history["seconds"][0]
    ratio = f"  ({py / cpp:.3f}x C++)" if cpp else ""
    print(f"  Python Model subclass, fit()               {py / steps * 1e3:9.3f} ms/step{ratio}")

    model2 = Mlp()
    opt = tf.keras.optimizers.Adam(1e-3)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ds = tf.Dataset(x, y).shuffle(0).batch(64)
    model2(x[:1])
    t0 = time.perf_counter()
    n = 0
    for bx, by in ds:
        with tf.GradientTape() as tape:
            loss = loss_fn(by, model2(bx, training=True))
        grads = tape.gradient(loss, model2.trainable_weights)
        opt.apply_gradients(zip(grads, model2.trainable_weights))
        n += 1
    loop = time.perf_counter() - t0
    ratio = f"  ({loop / cpp:.3f}x C++)" if cpp else ""
    print(f"  Python GradientTape loop                   {loop / n * 1e3:9.3f} ms/step{ratio}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cli", default=os.environ.get("KILN_CLI", "build/kiln"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-training", action="store_true")
    args = p.parse_args()
    small_ops()
    if not args.skip_training:
        training(args.cli, args.threads)


if __name__ == "__main__":
    main()
