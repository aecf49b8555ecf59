"""Model files, freezing, ONNX and .npy from Python: the C++ functions, thinly bound."""
import numpy as np
import pytest

import kiln as tf


def _mlp():
    model = tf.keras.Sequential([tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    y = np.arange(32, dtype=np.int32) % 10
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model, x


def test_save_load_predicts_the_same(tmp_path):
    model, x = _mlp()
    path = str(tmp_path / "m.kiln")
    tf.save_model(model, path, optimizer=model.optimizer)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(tf.convert_to_tensor(x))), model.predict(x))
    frozen = tf.freeze(model)
    assert frozen.inputs[0][1] == (None, 28, 28, 1)
    np.testing.assert_allclose(np.asarray(frozen(x)), model.predict(x), rtol=1e-5, atol=1e-5)
    assert "matmul" in frozen.graph_text()
    opt = tf.load_optimizer(path)
    assert opt is not None


def test_onnx_and_npy(tmp_path):
    model, x = _mlp()
    onnx = str(tmp_path / "m.onnx")
    tf.export_onnx(model, onnx)
    imported = tf.import_onnx(onnx)
    np.testing.assert_allclose(np.asarray(imported(x)), model.predict(x), rtol=1e-5, atol=1e-5)
    tf.save_npy(str(tmp_path / "x.npy"), x)
    np.testing.assert_array_equal(np.load(str(tmp_path / "x.npy")), x)
    np.testing.assert_array_equal(np.asarray(tf.load_npy(str(tmp_path / "x.npy"))), x)


def test_bad_file_is_a_format_error(tmp_path):
    bad = tmp_path / "bad.kiln"
    bad.write_bytes(b"not a model")
    with pytest.raises(tf.FormatError, match="bad.kiln"):
        tf.load_model(str(bad))
    with pytest.raises(ValueError):  # FormatError is a ValueError too
        tf.load_npy(str(bad))
