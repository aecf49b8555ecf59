"""@kiln.cached_per_instance and kiln.cache_report().

cached_per_instance is the public, documented answer to TensorFlow's private
`layer_utils.cached_per_instance` (which vanished and broke its callers), with the semantics of
the C++ kiln::cached_per_instance it runs on:
- one value per live object (kept outside the object, dropped when the object dies);
- every result is cached, empty ones (None, [], 0) too;
- concurrent first calls for one object compute once, the others wait for that result (other
  objects are not blocked), and a compute that raises caches nothing;
- with version=callable, a cached value is recomputed when version(obj) changes (e.g. a
  variable's .version after an assignment).
"""

import functools
import json
import threading
import weakref

from kiln import _kiln

_tokens_lock = threading.Lock()
_tokens = {}  # id(obj) -> (weak reference, InstanceToken); the entry goes when obj does


def _token(obj):
    if isinstance(obj, _kiln.Layer):
        return _kiln._layer_cache_token(obj)  # kiln layers carry their own identity
    key = id(obj)
    with _tokens_lock:
        entry = _tokens.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]

        def forget(ref, key=key):
            with _tokens_lock:
                if _tokens.get(key, (None,))[0] is ref:
                    del _tokens[key]  # the token dies: every cache drops the object's entries

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            raise TypeError(f"cached_per_instance needs an object that supports weak references "
                            f"(a class instance), got {type(obj).__name__}") from None
        token = _kiln.InstanceToken()
        _tokens[key] = (ref, token)
        return token


class cached_per_instance:  # noqa: N801  (a decorator, named as TensorFlow named it)
    """Caches func(obj) per live obj: @kiln.cached_per_instance on a method or a function of
    one object; @kiln.cached_per_instance(version=lambda obj: ..., max_entries=...) too."""

    def __init__(self, func=None, *, version=None, name=None, max_entries=0, max_bytes=0):
        self._version = version
        self._limits = (max_entries, max_bytes)
        self._name = name
        self._cache = None
        if func is not None:
            self._wrap(func)

    def _wrap(self, func):
        self.__wrapped__ = func
        functools.update_wrapper(self, func)
        name = self._name or f"python.{getattr(func, '__qualname__', 'function')}"
        self._cache = _kiln._InstanceCache(name, *self._limits)

    def __call__(self, *args):
        if self._cache is None:  # @cached_per_instance(...) form: the first call gets func
            (func,) = args
            self._wrap(func)
            return self
        if len(args) != 1:
            raise TypeError(f"{self.__name__}: a per-instance cached function takes exactly one "
                            f"argument (the object), got {len(args)}")
        obj = args[0]
        version = 0 if self._version is None else int(self._version(obj))
        return self._cache.get(_token(obj), lambda: self.__wrapped__(obj), version)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    def peek(self, obj, version=0):
        """The cached value for obj (None when absent), computing nothing."""
        return self._cache.peek(_token(obj), version)

    def invalidate(self, obj):
        self._cache.invalidate(_token(obj))

    def clear(self):
        self._cache.clear()

    def cache_info(self):
        """hits, misses, version_recomputes, evictions, invalidations, expirations, entries,
        bytes, limits: the C++ cache's counters (it appears in kiln.cache_report() too)."""
        return self._cache.stats()


class CacheReport(dict):
    """kiln.cache_report() as a dict (the JSON's keys: variables, functions, folded_constants,
    instances, kernels, arenas, allocator); str() / .text is the table for people."""

    def __init__(self, data, text, cache_bytes):
        super().__init__(data)
        self.text = text
        self.cache_bytes = cache_bytes

    def __str__(self):
        return self.text


def cache_report():
    """Every cache and every piece of retained state in the process, in one snapshot."""
    js, text, cache_bytes = _kiln._cache_report()
    return CacheReport(json.loads(js), text, cache_bytes)
