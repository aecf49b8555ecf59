"""kiln.keras.callbacks: Callback to subclass, LambdaCallback, EarlyStopping, CSVLogger. A plain
Python callable passed to fit(callbacks=[...]) is called as on_epoch_end(epoch, logs)."""

from kiln._kiln import Callback, EarlyStopping, CSVLogger  # noqa: F401


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None):
        super().__init__()
        self._fns = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                         on_train_begin=on_train_begin, on_train_end=on_train_end)

    def on_epoch_begin(self, epoch, logs):
        if self._fns["on_epoch_begin"]:
            self._fns["on_epoch_begin"](epoch, logs)

    def on_epoch_end(self, epoch, logs):
        if self._fns["on_epoch_end"]:
            self._fns["on_epoch_end"](epoch, logs)

    def on_train_begin(self, logs):
        if self._fns["on_train_begin"]:
            self._fns["on_train_begin"](logs)

    def on_train_end(self, logs):
        if self._fns["on_train_end"]:
            self._fns["on_train_end"](logs)


def wrap(callback):
    if isinstance(callback, Callback):
        return callback
    if callable(callback):
        return LambdaCallback(on_epoch_end=callback)
    raise TypeError(f"a callback is a kiln.keras.callbacks.Callback or a callable, got {callback!r}")
