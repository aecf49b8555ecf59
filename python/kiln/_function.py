"""kiln.function: TensorFlow's @tf.function over kiln::Function.

The decorated Python function is traced into a kiln graph once per input signature (dtype and
shape of each tensor argument, and the training flag); later calls with the same signature run
the cached, optimized graph without running Python. Tensor arguments may be kiln tensors,
variables, NumPy arrays or Python numbers (passed as rank-0 tensors: their value is an input,
not a constant of the trace). Layers created while tracing keep their variables across calls and
retraces (the first trace creates them).
"""

import functools
import inspect
import types
import weakref

from kiln import _kiln


class TensorSpec:
    """Shape (None for a dim of any size) and dtype of one argument: tf.TensorSpec."""

    def __init__(self, shape, dtype=_kiln.float32, name=None):
        self.shape = tuple(shape)
        self.dtype = _kiln.as_dtype(dtype)
        self.name = name

    def __repr__(self):
        return f"TensorSpec(shape={self.shape}, dtype={self.dtype!r})"


def _takes_training(func):
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "training" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _make_trace(func, takes_training, structure):
    # A plain closure (no reference to the Function object): the C++ side holds it, and a
    # reference back would make a cycle the garbage collector cannot see.
    def trace(args, training):
        out = func(*args, training=training) if takes_training else func(*args)
        if out is None:
            structure["kind"] = "none"
            return []
        if isinstance(out, (list, tuple)):
            structure["kind"] = type(out)
            return [_kiln.convert_to_tensor(o) for o in out]
        structure["kind"] = "single"
        return [_kiln.convert_to_tensor(out)]

    return trace


class Function:
    """A traced function (kiln::Function). Call it like the Python function."""

    def __init__(self, func, input_signature=None, name=None, reduce_retracing=False,
                 retrace_budget=8, policy="warn", max_entries=32, max_bytes=0,
                 takes_training=None):
        self.python_function = func
        self.input_signature = input_signature
        self._name = name or getattr(func, "__name__", "function")
        self._options = dict(input_signature=input_signature, reduce_retracing=reduce_retracing,
                             retrace_budget=retrace_budget, policy=policy,
                             max_entries=max_entries, max_bytes=max_bytes)
        if reduce_retracing:  # TensorFlow relaxes changing dims from the second trace on
            policy, retrace_budget = "relax", 0
        signature = None
        if input_signature is not None:
            signature = [(tuple(s.shape), s.dtype) for s in input_signature]
        self._structure = {"kind": "single"}
        takes = _takes_training(func) if takes_training is None else takes_training
        trace = _make_trace(func, takes, self._structure)
        self._function = _kiln._Function(trace, self._name, signature, retrace_budget, policy,
                                         max_entries, max_bytes)
        functools.update_wrapper(self, func)

    def __call__(self, *args, training=None, **kwargs):
        if kwargs:
            raise TypeError(f"kiln.function '{self._name}': keyword arguments other than "
                            f"training are not traced ({sorted(kwargs)}); pass them positionally")
        outs = self._function(args, bool(training))
        kind = self._structure["kind"]
        if kind == "none":
            return None
        if kind == "single":
            return outs[0]
        return kind(outs)

    def __get__(self, instance, owner):
        # A method: one Function per live instance (its own traces and variables), as in
        # TensorFlow, kept by kiln's per-instance cache.
        if instance is None:
            return self
        return _bound_functions(self, instance)

    def cache_info(self):
        """Traces, hits, misses, evictions, cached signatures (most recent first), the last
        retrace's explanation, warnings, variables created, arena bytes, plan steps, fused
        nodes."""
        return types.SimpleNamespace(**self._function.cache_info())

    def experimental_get_tracing_count(self):
        return self._function.cache_info()["traces"]

    @property
    def last_retrace_reason(self):
        return self._function.cache_info()["last_retrace_reason"]

    def graph_text(self, *args, training=False, optimized=True):
        return self._function.graph_text(args, training, optimized)

    def graph_dot(self, *args, training=False, optimized=True):
        return self._function.graph_dot(args, training, optimized)

    def clear_cache(self):
        self._function.clear_cache()

    def __repr__(self):
        return f"<kiln.function {self._name}>"


def _bound_functions(function, instance):
    from kiln._cache import cached_per_instance

    cache = function.__dict__.get("_per_instance")
    if cache is None:
        func = function.python_function
        takes = _takes_training(func)

        def make(obj):
            # The instance by weak reference: the cached Function must not keep it alive.
            ref = weakref.ref(obj)

            def method(*args, **kwargs):
                return func(ref(), *args, **kwargs)

            return Function(method, name=function._name, takes_training=takes,
                            **function._options)
        cache = cached_per_instance(make, name=f"kiln.function {function._name} per instance")
        function.__dict__["_per_instance"] = cache
    return cache(instance)


def function(func=None, *, input_signature=None, name=None, reduce_retracing=False,
             retrace_budget=8, policy="warn", max_entries=32, max_bytes=0, jit_compile=None):
    """@kiln.function / @kiln.function(input_signature=[kiln.TensorSpec((None, 784))]).

    retrace_budget: traces allowed after the first before `policy` applies: "warn" (log the
    diff and keep tracing), "relax" (trace once more with the changed dims unknown) or "throw"
    (kiln.StateError with the diff). reduce_retracing=True relaxes from the second trace on.
    max_entries / max_bytes bound the cache of traced graphs. jit_compile is accepted and
    ignored (every kiln graph is optimized and planned).
    """
    def wrap(f):
        return Function(f, input_signature=input_signature, name=name,
                        reduce_retracing=reduce_retracing, retrace_budget=retrace_budget,
                        policy=policy, max_entries=max_entries, max_bytes=max_bytes)

    return wrap if func is None else wrap(func)
