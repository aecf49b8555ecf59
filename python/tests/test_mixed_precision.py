"""kiln.keras.mixed_precision: Keras' Policy / set_global_policy / global_policy over kiln's
global dtype policy, bf16 results against float32, and the refusal on a CPU without bf16."""

import os
import subprocess
import sys

import numpy as np
import pytest

import kiln as tf

mp = tf.keras.mixed_precision


@pytest.fixture(autouse=True)
def float32_after():
    yield
    mp.set_global_policy("float32")


def test_default_policy_and_its_dtypes():
    assert mp.global_policy() == mp.Policy("float32")
    p = mp.Policy("mixed_bfloat16")
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    assert repr(p) == '<Policy "mixed_bfloat16">'
    assert mp.Policy("float32").compute_dtype == "float32"
    assert len({mp.Policy("float32"), mp.Policy("float32")}) == 1


def test_unknown_names_are_refused_by_name():
    for bad in ("mixed_float16", "bfloat16", 3):
        with pytest.raises(ValueError, match=r"unknown dtype policy .*'float32' and 'mixed_bfloat16'"):
            mp.set_global_policy(bad)
    assert mp.global_policy().name == "float32"


@pytest.mark.skipif(not mp.bfloat16_supported(), reason="this CPU has no AVX512_BF16 / AMX-BF16")
def test_bf16_matmul_rounds_inputs_and_training_still_learns():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 256)).astype(np.float32)
    b = rng.normal(size=(256, 32)).astype(np.float32)
    exact = tf.matmul(a, b).numpy()
    mp.set_global_policy(mp.Policy("mixed_bfloat16"))
    assert mp.global_policy().name == "mixed_bfloat16"
    low = tf.matmul(a, b).numpy()
    assert low.dtype == np.float32  # tensors stay float32
    assert not np.array_equal(low, exact)  # inputs were rounded to bf16
    np.testing.assert_allclose(low, exact, rtol=0.05, atol=0.5)
    # The bf16 product of the inputs rounded to bf16 (8 mantissa bits), accumulated in f32.
    def to_bf16(x):
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16  # round to nearest even
        return u.astype(np.uint32).view(np.float32)
    np.testing.assert_allclose(low, to_bf16(a) @ to_bf16(b), rtol=1e-4, atol=1e-3)

    y = (a[:, 0] > 0).astype(np.int32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(2)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    h = model.fit(a, y, epochs=20, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] > 0.9

    mp.set_global_policy("float32")
    np.testing.assert_array_equal(tf.matmul(a, b).numpy(), exact)


def test_a_cpu_without_bf16_refuses_the_policy_naming_the_feature():
    # oneDNN limited to AVX-512 without BF16 in a child process: what a Zen 3 does.
    code = ("import kiln as tf\n"
            "mp = tf.keras.mixed_precision\n"
            "assert not mp.bfloat16_supported()\n"
            "try:\n"
            "    mp.set_global_policy('mixed_bfloat16')\n"
            "except ValueError as e:\n"
            "    print('refused:', e)\n"
            "print('policy:', mp.global_policy().name)\n")
    env = dict(os.environ, DNNL_MAX_CPU_ISA="AVX512_CORE", ONEDNN_MAX_CPU_ISA="AVX512_CORE")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "AVX512_BF16" in r.stdout, r.stdout
    assert "policy: float32" in r.stdout
