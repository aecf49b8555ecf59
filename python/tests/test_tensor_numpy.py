"""kiln.Tensor <-> NumPy: every dtype, zero copy both ways, lifetimes, operators, indexing."""

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

import kiln

DTYPES = [
    (kiln.float32, np.float32), (kiln.float64, np.float64), (kiln.int32, np.int32),
    (kiln.int64, np.int64), (kiln.int8, np.int8), (kiln.uint8, np.uint8), (kiln.bool, np.bool_),
]


@pytest.mark.parametrize("kdt,ndt", DTYPES)
def test_round_trip_every_dtype(kdt, ndt):
    a = (np.arange(24).reshape(2, 3, 4) % 7).astype(ndt)
    t = kiln.from_numpy(a)
    assert t.dtype == kdt and t.shape == (2, 3, 4)
    back = t.numpy()
    assert back.dtype == ndt
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(np.asarray(t), a)
    np.testing.assert_array_equal(np.asarray(memoryview(t)), a)  # the buffer protocol
    assert kiln.as_dtype(ndt) == kdt and kiln.as_dtype(kdt.name) == kdt
    assert kdt.as_numpy_dtype == np.dtype(ndt)


def test_rank0_and_empty():
    t = kiln.from_numpy(np.array(3.5, np.float64))
    assert t.shape == () and t.item() == 3.5 and float(t) == 3.5
    e = kiln.from_numpy(np.zeros((0, 3), np.float32))
    assert e.shape == (0, 3) and e.numpy().shape == (0, 3)


def test_unsupported_numpy_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="kiln has no dtype for NumPy's float16"):
        kiln.from_numpy(np.zeros(3, np.float16))
    with pytest.raises(TypeError, match="unknown dtype 'float8'"):
        kiln.zeros((2,), "float8")


def test_numpy_views_tensor_memory_without_copy():
    t = kiln.zeros((3, 4))
    a = t.numpy()
    a[1, 2] = 7.0  # write through NumPy ...
    assert t.numpy()[1, 2] == 7.0 and kiln.reduce_sum(t).item() == 7.0  # ... kiln sees it
    kiln.assign(t, kiln.ones((3, 4)))  # write through kiln ...
    assert a[0, 0] == 1.0  # ... NumPy sees it
    assert np.shares_memory(a, np.asarray(t))


def test_array_keeps_tensor_alive():
    a = kiln.fill((1000,), 3.0).numpy()  # the tensor's only handle is the array's base
    gc.collect()
    kiln.zeros((1000,))  # reuse of a freed buffer would overwrite it
    assert (a == 3.0).all()


def test_from_numpy_shares_kiln_memory_and_the_freed_base_keeps_it_alive():
    src = kiln.arange(0, 12, 1, kiln.float32)
    a = src.numpy()
    shared = kiln.from_numpy(a[4:8])  # a contiguous slice of kiln memory: a view, no copy
    a[5] = -1.0
    assert shared.numpy()[1] == -1.0
    del a, src
    gc.collect()
    kiln.zeros((12,))
    np.testing.assert_array_equal(shared.numpy(), [4, -1, 6, 7])


@pytest.mark.parametrize("kdt,ndt", DTYPES)
def test_from_numpy_shares_numpy_memory_both_ways_every_dtype(kdt, ndt):
    a = (np.arange(12).reshape(3, 4) % 2).astype(ndt)
    t = kiln.from_numpy(a)  # NumPy's memory, adopted: no copy
    assert t.dtype == kdt and np.shares_memory(np.asarray(t), a)
    a[0, 0] = 1  # write through NumPy ...
    assert t.numpy()[0, 0] == 1  # ... kiln sees it
    kiln.assign(t, kiln.zeros((3, 4), kdt))  # write through kiln ...
    assert not a.any()  # ... NumPy sees it


def test_a_freed_numpy_base_keeps_the_shared_tensor_alive():
    a = np.arange(1000, dtype=np.float64)
    base = weakref.ref(a)
    t = kiln.from_numpy(a)
    view = t.reshape((10, 100))  # a kiln view of the same memory holds it too
    del a
    gc.collect()
    assert base() is not None  # the tensor holds the array
    scratch = [np.full(1000, -1.0) for _ in range(8)]  # would reuse freed memory
    np.testing.assert_array_equal(t.numpy(), np.arange(1000))
    del t, scratch
    gc.collect()
    assert base() is not None
    np.testing.assert_array_equal(view.numpy()[3], np.arange(300, 400))
    del view
    gc.collect()
    assert base() is None  # the last tensor released the array


def test_results_of_ops_on_shared_tensors_are_their_own():
    a = np.ones((4, 4), np.float32)
    s = kiln.from_numpy(a) + 1
    assert not np.shares_memory(np.asarray(s), a)
    np.testing.assert_array_equal(s.numpy(), np.full((4, 4), 2.0))


def test_shared_array_released_where_the_gil_is_not_held():
    # The dataset's prefetch thread and the iterator's teardown (GIL released) drop the last
    # tensors over the arrays: the release takes the GIL itself.
    x = np.random.default_rng(0).random((64, 3)).astype(np.float32)
    y = np.arange(64, dtype=np.int32)
    refs = [weakref.ref(x), weakref.ref(y)]
    ds = kiln.Dataset(kiln.from_numpy(x), kiln.from_numpy(y)).batch(8).prefetch(2)
    it = iter(ds)
    bx, _ = next(it)
    np.testing.assert_array_equal(bx.numpy(), x[:8])
    del x, y, ds, bx
    gc.collect()
    assert all(r() is not None for r in refs)
    del it
    gc.collect()
    assert all(r() is None for r in refs)


def test_shared_arrays_alive_at_interpreter_exit():
    # Tensors over NumPy memory still held by kiln (a traced function's capture, a dataset)
    # when the interpreter exits: released or left to the process, never a crash.
    code = textwrap.dedent("""
        import numpy as np, kiln
        c = kiln.from_numpy(np.ones(8, np.float32))
        f = kiln.function(lambda x: x + c)
        f(kiln.ones((8,)))
        ds = kiln.Dataset(kiln.from_numpy(np.ones((16, 2), np.float32)),
                          kiln.from_numpy(np.zeros(16, np.int32))).batch(4).prefetch(2)
        it = iter(ds); next(it)
        print("ok")
    """)
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_arrays_that_cannot_be_shared_are_copied():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    cases = {
        "non-contiguous": a[:, ::2],
        "transposed": a.T,
        "byte-swapped": a.astype(">f4"),
        "misaligned": np.zeros(49, np.uint8)[1:].view(np.float32),
    }
    ro = a.copy()
    ro.setflags(write=False)  # kiln.assign could write a shared one
    cases["read-only"] = ro
    assert not cases["misaligned"].flags.aligned
    for what, arr in cases.items():
        t = kiln.from_numpy(arr)
        np.testing.assert_array_equal(t.numpy(), arr, err_msg=what)
        assert not np.shares_memory(t.numpy(), arr), what
        assert t.dtype == kiln.float32, what


def test_convert_to_tensor_copies_numpy_memory_like_tf_constant():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for t in (kiln.convert_to_tensor(a), kiln.constant(a), kiln.Tensor(a)):
        a[0, 0] = 100
        assert t.numpy()[0, 0] == 0  # a snapshot
        a[0, 0] = 0


def test_from_numpy_refuses_what_kiln_has_no_dtype_for():
    with pytest.raises(TypeError, match="kiln has no dtype for NumPy's <U5"):
        kiln.from_numpy(np.array(["hello"]))
    with pytest.raises(TypeError, match="kiln has no dtype for NumPy's complex64"):
        kiln.from_numpy(np.zeros(2, np.complex64))


def test_python_values_take_tensorflows_default_dtypes():
    assert kiln.constant(1.5).dtype == kiln.float32
    assert kiln.constant([1, 2]).dtype == kiln.int32
    assert kiln.constant(True).dtype == kiln.bool
    assert kiln.constant(np.array([1.0])).dtype == kiln.float64  # NumPy keeps its dtype
    assert kiln.constant([1, 2], dtype=kiln.float64).dtype == kiln.float64


def test_operators_and_scalars_keep_the_tensor_dtype():
    x = kiln.constant(np.array([1.0, 2.0, 4.0]))
    assert (x + 1).dtype == kiln.float64
    np.testing.assert_allclose((2 * x - 1).numpy(), [1, 3, 7])
    np.testing.assert_allclose((1 / x).numpy(), [1, 0.5, 0.25])
    np.testing.assert_allclose((x ** 2).numpy(), [1, 4, 16])
    np.testing.assert_allclose((-x).numpy(), [-1, -2, -4])
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])
    np.testing.assert_array_equal((x == 2.0).numpy(), [False, True, False])
    m = kiln.ones((2, 3)) @ kiln.ones((3, 4))
    np.testing.assert_allclose(m.numpy(), np.full((2, 4), 3.0))
    y = np.ones(3) + x  # NumPy on the left defers to kiln (__array_priority__)
    assert isinstance(y, kiln.Tensor)


def test_indexing():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = kiln.from_numpy(a)
    np.testing.assert_array_equal(t[1].numpy(), a[1])
    np.testing.assert_array_equal(t[:, 1:3].numpy(), a[:, 1:3])
    np.testing.assert_array_equal(t[-1, ::2, 1].numpy(), a[-1, ::2, 1])
    assert len(t) == 2
    with pytest.raises(IndexError, match="index 5 is out of range for dim 0 of size 2"):
        t[5]
    with pytest.raises(ValueError, match="step must be >= 1"):
        t[::-1]


def test_errors_map_to_python_exceptions_with_the_cpp_message():
    with pytest.raises(kiln.ShapeError, match=r"matmul: shapes \[2, 3\] and \[4, 5\]") as e:
        kiln.matmul(kiln.ones((2, 3)), kiln.ones((4, 5)))
    assert isinstance(e.value, ValueError) and isinstance(e.value, kiln.Error)
    with pytest.raises(kiln.DTypeError, match="add: dtypes float32 and int32 differ") as e:
        kiln.add(kiln.ones((2,)), kiln.ones((2,), kiln.int32))
    assert isinstance(e.value, TypeError)
    with pytest.raises(kiln.ValueError, match="item: tensor of shape"):
        kiln.ones((2,)).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(kiln.ones((2,)))
    with pytest.raises(kiln.FormatError, match="no-such-dir"):
        kiln.load_fashion_mnist("/no-such-dir")


def test_repr_and_properties():
    t = kiln.constant([[1, 2], [3, 4]])
    assert repr(t).startswith("tensor([[1, 2],")
    assert t.ndim == 2 and t.size == 4 and t.nbytes == 16
    assert repr(kiln.float32) == "kiln.float32" and str(kiln.int64) == "int64"


def test_variable_arrays_are_read_only_views():
    v = kiln.Variable(kiln.zeros((2,)), name="ro")
    a = v.numpy()
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1.0  # writes go through assign(), which bumps the version caches key on
    version = v.version
    v.assign(kiln.ones((2,)))
    assert a[0] == 1.0 and v.version == version + 1  # the view sees the assignment
