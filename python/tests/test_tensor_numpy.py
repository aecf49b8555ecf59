"""kiln.Tensor <-> NumPy: every dtype, zero copy both ways, lifetimes, operators, indexing."""

import gc

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


def test_foreign_and_non_contiguous_arrays_are_copied():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = kiln.from_numpy(a)  # NumPy's memory: kiln tensors own theirs, so this copies
    a[0, 0] = 100
    assert t.numpy()[0, 0] == 0
    nc = a[:, ::2]  # non-contiguous
    t2 = kiln.from_numpy(nc)
    np.testing.assert_array_equal(t2.numpy(), nc)
    assert not np.shares_memory(t2.numpy(), a)


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
    with pytest.raises(kiln.DTypeError) as e:
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
