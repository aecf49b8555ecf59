"""kiln.keras.Model (subclass it; layers set as attributes are tracked) and Sequential, with
Keras' summary / compile / fit / evaluate / predict over NumPy arrays, kiln tensors or
kiln.Dataset. Training runs in C++ (kiln::fit) with the GIL released."""

import json

import numpy as np

from kiln import _kiln
from kiln.keras import callbacks as _callbacks
from kiln.keras import losses as _losses
from kiln.keras import optimizers as _optimizers
from kiln.keras.layers import LayerMixin

# Where save_model keeps compile()'s settings in the file's training metadata.
_COMPILE_KEY = "keras.compile_config"


def _loss_config(loss):
    config = {"class_name": type(loss).__name__}
    if hasattr(loss, "from_logits"):
        config["from_logits"] = bool(loss.from_logits)
    return config


def _loss_from_config(config):
    cls = getattr(_losses, config.get("class_name", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, _kiln.Loss)):
        raise _kiln.FormatError(f"load_model: the saved loss {config!r} is not one kiln has")
    return cls(from_logits=config["from_logits"]) if "from_logits" in config else cls()


def save_model(model, filepath, include_optimizer=True, frozen=True):
    """Keras' save_model: one .kiln file with the config, weights, frozen inference graph and,
    when the model is compiled, its optimizer state (include_optimizer) and compile() settings,
    so load_model gives back a compiled model. Overwrites atomically."""
    training = {}
    if getattr(model, "_kiln_loss", None) is not None:
        training[_COMPILE_KEY] = json.dumps({
            "loss": _loss_config(model._kiln_loss),
            "metrics": ["accuracy"] if model._kiln_accuracy else [],
            "graph": bool(model._kiln_graph),
        })
    optimizer = getattr(model, "_kiln_optimizer", None) if include_optimizer else None
    _kiln.save_model(model, str(filepath), optimizer, frozen, training)


def load_model(filepath, compile=True):  # noqa: A002  (Keras' argument name)
    """Keras' load_model: the model rebuilt from a .kiln file, ready for predict / evaluate /
    summary, and (compile=True, the file saved by a compiled model) compiled again with its
    restored optimizer, so fit() resumes. A file without a model config (a subclassed Python
    model, an ONNX import) gives its GraphModel, which predicts but does not train."""
    model, optimizer, training = _kiln._load_model_parts(str(filepath))
    if compile and isinstance(model, _kiln.Model) and _COMPILE_KEY in training:
        try:
            config = json.loads(training[_COMPILE_KEY])
            loss = _loss_from_config(config["loss"])
        except (ValueError, KeyError, TypeError) as e:
            if isinstance(e, _kiln.Error):
                raise
            raise _kiln.FormatError(f"load_model: {filepath}: malformed {_COMPILE_KEY}: {e}")
        model.compile(optimizer=optimizer if optimizer is not None else "rmsprop", loss=loss,
                      metrics=config.get("metrics"),
                      run_eagerly=False if config.get("graph") else None)
    return model


class History:
    """Keras' History: .history maps "loss", "accuracy", "val_loss", ... to per-epoch values."""

    def __init__(self, d):
        self.epoch = list(d["epoch"])
        self.history = {k: list(v) for k, v in d["history"].items()}

    def __repr__(self):
        return f"<History epochs={self.epoch} keys={sorted(self.history)}>"


def _inputs(x):
    """NumPy float64 features become float32, Keras' default float type (its layers cast them
    too); kiln tensors and datasets pass as they are."""
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        return x.astype(np.float32)
    return x


def _refuse_unsupported(what, **args):
    for name, value in args.items():
        if value is not None:
            raise _kiln.ValueError(f"{what}: {name}= is not supported by kiln (got {value!r})")


def _accuracy_metric(metrics):
    accuracy = False
    for m in metrics or []:
        if m in ("accuracy", "acc", "sparse_categorical_accuracy"):
            accuracy = True
        else:
            raise _kiln.ValueError(f"compile: unknown metric {m!r} (kiln has 'accuracy')")
    return accuracy


class TrainingMixin:
    """compile / fit / evaluate / predict / summary for Model and Sequential."""

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, run_eagerly=None,
                jit_compile=None):
        """optimizer and loss by Keras name or object; metrics: ["accuracy"] or none.
        run_eagerly=False (or jit_compile=True) trains with a traced step (kiln's graph mode);
        Keras' default (None) trains eagerly here."""
        self._kiln_optimizer = _optimizers.get(optimizer)
        if loss is None:
            raise _kiln.ValueError("compile: a loss is needed (e.g. 'sparse_categorical_crossentropy')")
        self._kiln_loss = _losses.get(loss)
        self._kiln_accuracy = _accuracy_metric(metrics)
        self._kiln_graph = run_eagerly is False or bool(jit_compile)

    @property
    def optimizer(self):
        return getattr(self, "_kiln_optimizer", None)

    def _require_compiled(self, what):
        if getattr(self, "_kiln_loss", None) is None:
            raise _kiln.StateError(f"{what}: call compile(optimizer, loss) first")

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0, seed=0,
            validation_batch_size=None):
        """Trains on NumPy arrays / tensors x, y (or a batched kiln.Dataset x). shuffle uses
        kiln's seeded shuffle (seed), so the same seeds give the same numbers as C++.
        validation_split holds out the last fraction of x, y (before shuffling), as Keras."""
        self._require_compiled("fit")
        batch_size = batch_size or 32
        if validation_split:
            if isinstance(x, _kiln.Dataset):
                raise _kiln.ValueError("fit: validation_split needs arrays x, y, not a Dataset "
                                       "(pass validation_data instead)")
            if not 0.0 < validation_split < 1.0:
                raise _kiln.ValueError(
                    f"fit: validation_split must be in (0, 1), got {validation_split}")
            if validation_data is not None:
                raise _kiln.ValueError("fit: give validation_split or validation_data, not both")
            n = len(x)
            split = int(n * (1.0 - validation_split))
            if split <= 0 or split >= n:
                raise _kiln.ValueError(f"fit: validation_split={validation_split} of {n} "
                                       "examples leaves no training or no validation examples")
            x, y, validation_data = x[:split], y[:split], (x[split:], y[split:])
        validation = None
        if validation_data is not None:
            if isinstance(validation_data, _kiln.Dataset):
                validation = validation_data
            else:
                vx, vy = validation_data[:2]
                vx = _inputs(vx)
                validation = _kiln.Dataset(vx, vy).batch(validation_batch_size or batch_size)
        cbs = [_callbacks.wrap(c) for c in (callbacks or [])]
        history = _kiln._fit(self, self._kiln_optimizer, self._kiln_loss, _inputs(x), y, epochs,
                             initial_epoch, batch_size, seed if shuffle else None, validation, cbs,
                             self._kiln_accuracy, 1 if verbose == "auto" else int(verbose),
                             self._kiln_graph)
        self.history = History(history)
        return self.history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """The loss (and accuracy when compiled with it): a scalar, [loss, accuracy], or a
        dict with return_dict."""
        self._require_compiled("evaluate")
        data = x if isinstance(x, _kiln.Dataset) else _kiln.Dataset(_inputs(x), y).batch(batch_size or 32)
        logs = _kiln._evaluate(self, self._kiln_loss, data, self._kiln_accuracy,
                               getattr(self, "_kiln_graph", False))
        if return_dict:
            return logs
        if self._kiln_accuracy:
            return [logs["loss"], logs["accuracy"]]
        return logs["loss"]

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for every example, as a NumPy array (Keras' steps and callbacks are not
        supported: a ValueError says so)."""
        _refuse_unsupported("predict", steps=steps, callbacks=callbacks)
        out = _kiln._predict(self, _inputs(x), batch_size or 32, getattr(self, "_kiln_graph", False))
        return out.numpy()

    def predict_on_batch(self, x):
        """predict for one batch: the model's output on all of x, as a NumPy array."""
        x = _inputs(x)
        return _kiln._predict(self, x, max(len(x), 1), getattr(self, "_kiln_graph", False)).numpy()

    def save(self, filepath, include_optimizer=True):
        """Keras' model.save: see kiln.keras.models.save_model."""
        save_model(self, filepath, include_optimizer=include_optimizer)

    def summary(self, input_shape=None, print_fn=None):
        """Prints Keras' table. input_shape: one example's shape (no batch dim), needed when
        the model is not built yet (it is then built from shapes alone)."""
        text = self._summary(None if input_shape is None else tuple(input_shape))
        (print_fn or print)(text.rstrip("\n"))


class Model(LayerMixin, TrainingMixin, _kiln.Model):
    """Subclass with __init__ (set layers as attributes) and call(inputs, training=False)."""

    def __init__(self, name=None, trainable=True, **kwargs):
        self._kiln_init(_kiln.Model, name, trainable)


class Sequential(TrainingMixin, _kiln.Sequential):
    """A stack of layers: Sequential([Flatten(), Dense(128, activation="relu"), Dense(10)])."""

    def __init__(self, layers=None, name=None):
        _kiln.Sequential.__init__(self, layers, name)


# A model rebuilt by load_model (or made in C++, e.g. kiln.make_mlp()) is a C++ kiln.Model, not
# one of the Python classes above: it gets the same Keras methods (the C++ class keeps a
# __dict__ for compile()'s settings).
for _name, _method in vars(TrainingMixin).items():
    if not _name.startswith("__"):
        setattr(_kiln.Model, _name, _method)
del _name, _method


def _graph_predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """Keras' predict on a frozen graph: outputs for every example, in batches of batch_size
    (default 32), as a NumPy array."""
    _refuse_unsupported("predict", steps=steps, callbacks=callbacks)
    x = _inputs(x)
    if isinstance(x, _kiln.Dataset):
        return np.concatenate([np.asarray(self(bx)) for bx, _ in x.epoch(0)])
    n = len(x)
    batch_size = 32 if batch_size is None else batch_size
    if batch_size < 1:
        raise _kiln.ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    if n <= batch_size:
        return np.asarray(self(x))
    return np.concatenate([np.asarray(self(x[i:i + batch_size])) for i in range(0, n, batch_size)])


_kiln.GraphModel.predict = _graph_predict
_kiln.GraphModel.predict_on_batch = lambda self, x: np.asarray(self(_inputs(x)))
