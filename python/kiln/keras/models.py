"""kiln.keras.Model (subclass it; layers set as attributes are tracked) and Sequential, with
Keras' summary / compile / fit / evaluate / predict over NumPy arrays, kiln tensors or
kiln.Dataset. Training runs in C++ (kiln::fit) with the GIL released."""

import numpy as np

from kiln import _kiln
from kiln.keras import callbacks as _callbacks
from kiln.keras import losses as _losses
from kiln.keras import optimizers as _optimizers
from kiln.keras.layers import LayerMixin

# Keras' kiln.keras.models.save_model / load_model: one .kiln file (config, weights, optimizer
# state, frozen graph); a model whose class has no config loads as a GraphModel.
save_model = _kiln.save_model
load_model = _kiln.load_model


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
            validation_data=None, shuffle=True, initial_epoch=0, seed=0, validation_batch_size=None):
        """Trains on NumPy arrays / tensors x, y (or a batched kiln.Dataset x). shuffle uses
        kiln's seeded shuffle (seed), so the same seeds give the same numbers as C++."""
        self._require_compiled("fit")
        batch_size = batch_size or 32
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

    def predict(self, x, batch_size=None, verbose="auto"):
        """Outputs for every example, as a NumPy array."""
        out = _kiln._predict(self, _inputs(x), batch_size or 32, getattr(self, "_kiln_graph", False))
        return out.numpy()

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
