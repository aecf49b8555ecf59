"""kiln.random: TensorFlow's tf.random names over kiln's counter-based (Philox) generators.

A seed makes the numbers depend on the seed alone. Without one, each call takes the next seed of
a process-wide stream that starts from kiln.global_seed(), so calls differ but a program that
sets kiln.set_global_seed(s) first draws the same numbers every run.
"""

import itertools
import threading

from kiln import _kiln

_lock = threading.Lock()
_counter = itertools.count()


def _next_seed():
    with _lock:
        n = next(_counter)
    # splitmix64 of (global seed, n): distinct streams for distinct calls
    z = (_kiln.global_seed() * 0x9E3779B97F4A7C15 + (n + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return z ^ (z >> 31)


def normal(shape, mean=0.0, stddev=1.0, dtype=_kiln.float32, seed=None):
    """tf.random.normal."""
    return _kiln.random_normal(shape, mean, stddev, _next_seed() if seed is None else seed, dtype)


def uniform(shape, minval=0.0, maxval=None, dtype=_kiln.float32, seed=None):
    """tf.random.uniform: [minval, maxval), maxval 1 when None."""
    maxval = 1.0 if maxval is None else maxval
    return _kiln.random_uniform(shape, minval, maxval, _next_seed() if seed is None else seed, dtype)


def set_seed(seed):
    """tf.random.set_seed: kiln.set_global_seed (weights and unseeded draws follow it)."""
    global _counter
    _kiln.set_global_seed(seed)
    with _lock:
        _counter = itertools.count()


SeedGenerator = _kiln.SeedGenerator
