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
    with pytest.raises(ValueError, match="bad.kiln: not a .npy file"):  # a FormatError, a ValueError too
        tf.load_npy(str(bad))


def test_keras_save_and_load_model_predicts_evaluates_and_resumes(tmp_path):
    model, x = _mlp()
    y = np.arange(32, dtype=np.int32) % 10
    path = tmp_path / "m.kiln"
    model.save(path)  # Keras' habit: config, weights, optimizer and compile() settings
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.predict_on_batch(x[:5]), model.predict(x[:5]))
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    lines = []
    loaded.summary(print_fn=lines.append)
    assert "Total params" in lines[0]
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # resumes with the restored Adam
    assert loaded.optimizer.iterations == 4
    bare = tf.keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(bare.predict(x), model.predict(x))
    with pytest.raises(tf.StateError, match=r"evaluate: call compile\(optimizer, loss\) first"):
        bare.evaluate(x, y)


def test_keras_load_model_restores_the_loss_and_metrics(tmp_path):
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=False)
    x = np.random.default_rng(1).random((8, 3), dtype=np.float32)
    y = (x[:, :1] > 0.5).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    tf.keras.models.save_model(model, tmp_path / "b.kiln", include_optimizer=False)
    loaded = tf.keras.models.load_model(tmp_path / "b.kiln")
    assert isinstance(loaded._kiln_loss, tf.keras.losses.BinaryCrossentropy)
    assert loaded._kiln_loss.from_logits and loaded._kiln_graph
    assert isinstance(loaded.optimizer, tf.keras.optimizers.RMSprop)  # not saved: Keras' default
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_keras_methods_on_a_model_made_in_cpp():
    mlp = tf._kiln.make_mlp()
    x = np.random.default_rng(2).random((10, 28, 28, 1), dtype=np.float32)
    assert mlp.predict(x, batch_size=4).shape == (10, 10)
    mlp.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    mlp.fit(x, np.arange(10, dtype=np.int32), epochs=1, verbose=0)
    assert mlp.optimizer.iterations == 1


def test_predict_on_a_graph_model_in_batches(tmp_path):
    model, x = _mlp()
    frozen = tf.freeze(model)
    np.testing.assert_allclose(frozen.predict(x, batch_size=5), model.predict(x),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frozen.predict(tf.convert_to_tensor(x)), model.predict(x),
                               rtol=1e-5, atol=1e-5)
    ds = tf.Dataset(x, np.zeros(32, np.int32)).batch(7)
    np.testing.assert_allclose(frozen.predict(ds), model.predict(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(tf.ValueError, match="predict: batch_size must be >= 1, got 0"):
        frozen.predict(x, batch_size=0)
    with pytest.raises(tf.ValueError, match=r"predict: steps= is not supported by kiln \(got 3\)"):
        model.predict(x, steps=3)


def test_load_model_refuses_a_malformed_compile_config(tmp_path):
    model, _ = _mlp()
    path = str(tmp_path / "c.kiln")
    tf.save_model(model, path, training={"keras.compile_config": "{not json"})
    with pytest.raises(tf.FormatError, match="malformed keras.compile_config"):
        tf.keras.models.load_model(path)
    tf.save_model(model, path, training={"keras.compile_config":
                                         '{"loss": {"class_name": "Hinge"}}'})
    with pytest.raises(tf.FormatError, match="the saved loss .*Hinge.* is not one kiln has"):
        tf.keras.models.load_model(path)
    assert tf.keras.models.load_model(path, compile=False).predict(np.zeros((1, 28, 28, 1))).shape == (1, 10)
