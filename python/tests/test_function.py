"""@kiln.function: tracing, input_signature, cache_info, retrace explanations, methods, and
kiln.cache_report()."""

import gc

import numpy as np
import pytest

import kiln as tf


def test_traces_once_per_signature_and_explains_retraces():
    runs = []

    @tf.function
    def f(x, y):
        runs.append(1)
        return x * 2 + y, x - y

    a, b = f(tf.ones((2, 3)), tf.ones((2, 3)))
    assert isinstance(a, tf.Tensor) and a.shape == (2, 3)
    f(tf.ones((2, 3)), np.zeros((2, 3), np.float32))  # NumPy arguments too
    assert len(runs) == 1
    f(tf.ones((4, 3)), tf.ones((4, 3)))
    info = f.cache_info()
    assert (info.traces, info.hits, info.misses) == (2, 1, 2)
    assert "arg 0: shape [2, 3] -> [4, 3]" in info.last_retrace_reason
    assert [s["text"] for s in info.signatures][0].startswith("(float32 [4, 3]")
    assert "matmul" not in f.graph_text(tf.ones((2, 3)), tf.ones((2, 3)))


def test_training_flag_is_part_of_the_signature():
    @tf.function
    def f(x, training=False):
        return x * (2.0 if training else 1.0)

    assert f(tf.ones(2)).numpy()[0] == 1.0
    assert f(tf.ones(2), training=True).numpy()[0] == 2.0
    assert f.cache_info().traces == 2


def test_input_signature_with_unknown_dims():
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def f(x):
        return tf.reduce_sum(x, axis=1)

    f(tf.ones((2, 3)))
    f(tf.ones((5, 3)))
    assert f.cache_info().traces == 1
    with pytest.raises(tf.ShapeError, match=r"call \(float32 \[2, 4\].*does not fit its input "
                       r"signature \(float32 \[None, 3\]"):
        f(tf.ones((2, 4)))


def test_retrace_policy_throw_names_the_diff():
    f = tf.function(lambda x: x + 1, retrace_budget=0, policy="throw")
    f(tf.ones(1))
    with pytest.raises(tf.StateError, match=r"\[1\] -> \[2\]"):
        f(tf.ones(2))
    with pytest.raises(ValueError, match="retrace policy"):
        tf.function(lambda x: x, policy="sometimes")


def test_errors_while_tracing_reach_the_caller():
    @tf.function
    def bad(x):
        raise KeyError("inside the trace")

    with pytest.raises(KeyError, match="inside the trace"):
        bad(tf.ones(1))
    with pytest.raises(TypeError, match="keyword arguments"):
        tf.function(lambda x: x)(x=tf.ones(1))


def test_method_gets_one_function_per_instance():
    class Model:
        def __init__(self, k):
            self.k = k

        @tf.function
        def __call__(self, x):
            return x * self.k

    m1, m2 = Model(2.0), Model(3.0)
    assert m1(tf.ones(1)).item() == 2.0 and m2(tf.ones(1)).item() == 3.0
    m1(tf.ones(1))
    assert Model.__call__.__get__(m1, Model).cache_info().traces == 1
    assert Model.__call__.__get__(m1, Model) is Model.__call__.__get__(m1, Model)
    del m1
    gc.collect()  # the per-instance Function goes with its instance


def test_cache_report_as_dict_and_text():
    f = tf.function(lambda x: tf.nn.relu(x), name="report_probe")
    f(tf.ones((3, 3)))
    r = tf.cache_report()
    assert isinstance(r, dict)
    assert {"variables", "functions", "instances", "kernels", "arenas", "allocator"} <= set(r)
    assert any(fn["name"] == "report_probe" for fn in r["functions"])
    assert "report_probe" in str(r) and r.text == str(r)
    assert r.cache_bytes >= 0


def test_reduce_retracing_relaxes_changing_dims():
    @tf.function(reduce_retracing=True)
    def f(x):
        return x * 2

    for n in (2, 3, 4, 5):
        f(tf.ones((n, 3)))
    info = f.cache_info()
    assert info.traces == 2  # the second shape traces once more with the batch dim unknown
    assert info.signatures[0]["args"][0][0] == (None, 3)


def test_warn_policy_records_a_suggestion():
    f = tf.function(lambda x: x + 1, retrace_budget=1, policy="warn", name="warned")
    for n in (1, 2, 3):
        f(tf.ones(n))
    info = f.cache_info()
    assert info.traces == 3 and info.warnings
    assert "warned" in info.warnings[0]
