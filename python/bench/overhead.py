#!/usr/bin/python3
"""Overhead of the Python bindings (report only; nothing here is asserted). Prints JSON.

    PYTHONPATH=build/python /usr/bin/python3 python/bench/overhead.py [--reps 11] [--steps 200]

Every comparison is measured interleaved in this one process: each repetition runs every
variant once, in a shuffled order, so a noisy neighbour on a shared machine slows all of them
alike; the report gives min / median / max per variant and the per-repetition ratios.
- small ops: an eager `a + b` (32 floats) from Python beside NumPy and PyTorch (when importable),
  and kiln.function cache hits (x + y; the MLP's forward at batch 64);
- training steps at batch 64 on Fashion-MNIST's MLP (kiln.make_mlp(), the `kiln train --model
  mlp` network), eager and graph mode, with 1 and 2 threads:
    cpp          kiln::fit on the C++ model: no Python per step (what `kiln train` runs);
    py_subclass  fit() of the same network written as a Python kiln.keras.Model subclass
                 (Python's call() runs every eager step; in graph mode only while tracing);
    py_tape      a Python loop: GradientTape, loss, tape.gradient, apply_gradients per step.
  ratio = variant / cpp of the same repetition.
"""

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time

import numpy as np

import kiln as tf
from kiln import _kiln


def stats(xs, scale=1.0):
    xs = [x * scale for x in xs]
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def interleaved(variants, reps, rng):
    """{name: [seconds per repetition]}: each repetition runs every variant once, shuffled."""
    times = {name: [] for name in variants}
    names = list(variants)
    for _ in range(reps):
        rng.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def ratios(times, base):
    return {name: stats([t / b for t, b in zip(ts, times[base])])
            for name, ts in times.items() if name != base}


class Mlp(tf.keras.Model):
    """make_mlp()'s network as a Python subclass (same layers, same shapes)."""

    def __init__(self):
        super().__init__()
        self.flatten = tf.keras.layers.Flatten()
        self.hidden1 = tf.keras.layers.Dense(256, activation="relu")
        self.hidden2 = tf.keras.layers.Dense(128, activation="relu")
        self.logits = tf.keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.logits(self.hidden2(self.hidden1(self.flatten(x))))


def small_ops(reps, rng, n=20000, forwards=200):
    a, b = tf.ones((32,)), tf.ones((32,))
    na, nb = np.ones(32, np.float32), np.ones(32, np.float32)
    add_fn = tf.function(lambda x, y: x + y)
    add_fn(a, b)
    x = tf.random.normal((64, 28, 28, 1), seed=1)
    mlp = _kiln.make_mlp()
    forward = tf.function(lambda v: mlp(v))
    forward(x)

    def loop(fn, count):
        def run():
            for _ in range(count):
                fn()
        return run

    variants = {
        "kiln_eager_a_plus_b": loop(lambda: a + b, n),
        "kiln_add_a_b": loop(lambda: tf.add(a, b), n),
        "numpy_a_plus_b": loop(lambda: na + nb, n),
        "kiln_function_hit_x_plus_y": loop(lambda: add_fn(a, b), n),
        "kiln_function_hit_mlp_forward_b64": loop(lambda: forward(x), forwards),
        "kiln_eager_mlp_forward_b64": loop(lambda: mlp(x), forwards),
    }
    per = {k: (forwards if "mlp" in k else n) for k in variants}
    try:
        import torch
        ta, tb = torch.ones(32), torch.ones(32)
        variants["torch_a_plus_b"] = loop(lambda: ta + tb, n)
        per["torch_a_plus_b"] = n
        torch_note = torch.__version__
    except ImportError:
        torch_note = "not importable with this python (not measured)"
    times = interleaved(variants, reps, rng)
    us = {k: stats([t / per[k] for t in ts], 1e6) for k, ts in times.items()}
    call_times = {k: [t / per[k] for t in ts] for k, ts in times.items()}
    return {"microseconds_per_call": us, "ratio_to_numpy_a_plus_b":
            ratios({k: v for k, v in call_times.items() if "mlp" not in k}, "numpy_a_plus_b"),
            "ratio_function_hit_to_eager_mlp_forward":
            stats([f / e for f, e in zip(call_times["kiln_function_hit_mlp_forward_b64"],
                                         call_times["kiln_eager_mlp_forward_b64"])]),
            "torch": torch_note}


def training(threads, graph, reps, steps, data, rng):
    tf.set_num_threads(threads)
    x, y = data
    xs, ys = x[:64 * steps], y[:64 * steps]
    ds = tf.Dataset(xs, ys).batch(64)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    tf.set_global_seed(0)
    cpp_model, cpp_opt = _kiln.make_mlp(), tf.keras.optimizers.Adam(1e-3)
    py_model = Mlp()
    py_model.compile(tf.keras.optimizers.Adam(1e-3), loss, run_eagerly=not graph)
    tape_model, tape_opt = _kiln.make_mlp(), tf.keras.optimizers.Adam(1e-3)
    weights = tape_model.trainable_weights

    def cpp():
        _kiln._fit(cpp_model, cpp_opt, loss, ds, None, 1, 0, 64, None, None, [], False, 0, graph)

    def py_subclass():
        py_model.fit(ds, epochs=1, verbose=0)

    def py_tape():
        for bx, by in ds:
            with tf.GradientTape() as tape:
                value = loss(by, tape_model(bx, training=True))
            grads = tape.gradient(value, weights)
            tape_opt.apply_gradients(zip(grads, weights))

    variants = {"cpp": cpp, "py_subclass": py_subclass}
    if not graph:  # the tape loop is eager by nature
        variants["py_tape"] = py_tape
    for fn in variants.values():  # warm-up: traces, primitive caches, allocator
        fn()
    times = interleaved(variants, reps, rng)
    return {"threads": threads, "mode": "graph" if graph else "eager", "steps": steps,
            "ms_per_step": {k: stats(v, 1e3 / steps) for k, v in times.items()},
            "ratio_to_cpp": ratios(times, "cpp")}


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k: fields[k].strip() for k in ("Model name", "CPU(s)", "Thread(s) per core")
                if k in fields}
    except OSError:
        return platform.processor()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--steps", type=int, default=200, help="training steps per repetition")
    p.add_argument("--calls", type=int, default=20000, help="small-op calls per repetition")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="of the shuffled variant order")
    args = p.parse_args()
    rng = random.Random(args.seed)
    report = {"command": " ".join([sys.executable] + sys.argv), "cpu": cpu_name(),
              "python": platform.python_version(), "numpy": np.__version__,
              "reps": args.reps}
    tf.set_num_threads(1)
    report["small_ops_1_thread"] = small_ops(args.reps, rng, args.calls)
    if not args.skip_training:
        (x, y), _ = tf.load_fashion_mnist()
        report["training_batch_64"] = [
            training(t, g, args.reps, args.steps, (x, y), rng)
            for t in args.threads for g in (False, True)]
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
