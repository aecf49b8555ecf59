"""@kiln.cached_per_instance: the semantics of the C++ kiln::cached_per_instance."""

import gc
import threading
import time

import pytest

import kiln
import kiln as tf


class Thing:
    def __init__(self):
        self.computed = 0
        self.version = 0

    @kiln.cached_per_instance
    def expensive(self):
        self.computed += 1
        return [self.computed]


def test_one_value_per_live_object():
    a, b = Thing(), Thing()
    assert a.expensive() is a.expensive()
    assert b.expensive() is not a.expensive()
    assert a.computed == 1 and b.computed == 1
    info = Thing.expensive.cache_info()
    assert info["hits"] >= 2 and info["entries"] >= 2


def test_empty_results_are_cached_too():
    calls = []

    @kiln.cached_per_instance
    def nothing(obj):
        calls.append(obj)
        return None

    t = Thing()
    assert nothing(t) is None and nothing(t) is None
    assert len(calls) == 1


def test_entries_die_with_their_object():
    @kiln.cached_per_instance(name="python.test.expiry")
    def value(obj):
        return object()

    t = Thing()
    value(t)
    assert value.cache_info()["entries"] == 1
    del t
    gc.collect()
    info = value.cache_info()
    assert info["entries"] == 0 and info["expirations"] == 1


def test_eight_threads_compute_once():
    started = threading.Barrier(8)
    computations = []

    @kiln.cached_per_instance
    def slow(obj):
        computations.append(1)
        time.sleep(0.2)  # the other threads arrive while this one computes
        return "done"

    t = Thing()
    results = []

    def worker():
        started.wait()
        results.append(slow(t))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == ["done"] * 8
    assert len(computations) == 1


def test_version_invalidation_and_explicit_invalidate():
    @kiln.cached_per_instance(version=lambda obj: obj.version)
    def snapshot(obj):
        return obj.version * 10

    t = Thing()
    assert snapshot(t) == 0
    t.version = 3
    assert snapshot(t) == 30
    assert snapshot.cache_info()["version_recomputes"] == 1
    snapshot.invalidate(t)
    assert snapshot.peek(t, 3) is None
    assert snapshot(t) == 30


def test_a_variable_version_invalidates():
    v = tf.Variable(tf.ones(2), name="cpi_var")
    holder = Thing()
    holder.v = v

    @kiln.cached_per_instance(version=lambda obj: obj.v.version)
    def total(obj):
        return tf.reduce_sum(obj.v).item()

    assert total(holder) == 2.0
    v.assign(tf.fill((2,), 5.0))
    assert total(holder) == 10.0


def test_a_raising_compute_caches_nothing():
    attempts = []

    @kiln.cached_per_instance
    def flaky(obj):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    t = Thing()
    with pytest.raises(RuntimeError, match="first attempt fails"):
        flaky(t)
    assert flaky(t) == "ok" and len(attempts) == 2


def test_kiln_layers_use_their_own_identity_and_show_in_cache_info():
    @kiln.cached_per_instance(name="python.test.layer_text")
    def describe(layer):
        return "text about " + layer.name

    d = tf.keras.layers.Dense(2)
    assert describe(d).startswith("text about dense")
    entries = d.cache_info()["entries"]
    assert any(e["cache"] == "python.test.layer_text" for e in entries)
    assert any(c["name"] == "python.test.layer_text" for c in tf.cache_report()["instances"])


def test_misuse_is_refused_clearly():
    @kiln.cached_per_instance
    def f(obj):
        return 1

    with pytest.raises(TypeError, match="weak references"):
        f(3)
    with pytest.raises(TypeError, match="exactly one argument"):
        f(Thing(), 2)

    @kiln.cached_per_instance
    def recursive(obj):
        return recursive(obj)

    with pytest.raises(tf.StateError, match="asked the same cache for the same object"):
        recursive(Thing())
