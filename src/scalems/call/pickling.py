"""Python values as hex text inside the JSON call and result records.

Values are pickled with :mod:`dill` so that functions defined in a workflow
script (``__main__``), closures and lambdas survive the trip to an interpreter
that never ran the script: they are stored by value, with the globals they use
(``recurse=True``). Importable functions are stored by reference, so the
receiver imports them. Plain built-in data takes the standard library's C
pickler, which is about 20 times faster; dill reads it all.

Encoding happens once per task on the workflow side and decoding once per task
in warm workers, so both keep memos for functions, whose encodings repeat.
"""

from __future__ import annotations

import pickle
import sys
import types
import weakref

import dill

# Pinned, so that records do not depend on a process-wide dill setting.
PROTOCOL = 4

_SCALARS = frozenset({int, float, str, bytes, bool, type(None), complex})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _is_plain(obj, depth: int = 0) -> bool:
    """Built-in data only (no functions, classes or user objects), nested at most a few levels.

    Such values (and numpy arrays of numbers) pickle the same with the C
    pickler as with dill; subclasses of built-in types do not, so the test is on
    exact types.
    """
    kind = type(obj)
    if kind in _SCALARS:
        return True
    if depth > 3:
        return False
    if kind in _CONTAINERS:
        return all(_is_plain(item, depth + 1) for item in obj)
    if kind is dict:
        return all(type(key) in _SCALARS and _is_plain(value, depth + 1) for key, value in obj.items())
    if kind.__module__ == "numpy":  # arrays and scalars of numbers pickle by reference to numpy
        dtype = getattr(obj, "dtype", None)
        return dtype is not None and not dtype.hasobject
    return False


def dumps(obj) -> str:
    """*obj* pickled, as hex text."""
    if _is_plain(obj):
        return pickle.dumps(obj, protocol=PROTOCOL).hex()
    return dill.dumps(obj, protocol=PROTOCOL, recurse=True).hex()


def loads(text: str):
    """The value of :func:`dumps` text."""
    return dill.loads(bytes.fromhex(text))


_STABLE_GLOBALS = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)


def stable_by_value(func) -> bool:
    """True for a script function whose pickle cannot change between calls.

    That is: no closure, no defaults, and every global it uses is a module,
    function or class (not data that the script might reassign).
    """
    code = getattr(func, "__code__", None)
    if code is None or getattr(func, "__module__", None) != "__main__" or func.__closure__:
        return False
    namespace = func.__globals__
    pending = [code]
    while pending:
        code = pending.pop()
        for name in code.co_names:
            if name in namespace and not isinstance(namespace[name], _STABLE_GLOBALS):
                return False
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return not func.__defaults__ and not func.__kwdefaults__


def importable(func) -> bool:
    """True if *func* is what its module and qualified name resolve to (so it pickles by reference)."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return False
    target = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is func


_BY_REFERENCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_BY_VALUE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def dumps_function(func) -> str:
    """:func:`dumps` for the callable of a call, memoized when the encoding cannot change.

    An ensemble of calls to one importable function (or one stable script
    function) then encodes it once. Other script functions and closures capture
    current global values and are encoded every time.
    """
    by_value = stable_by_value(func)
    if not by_value and getattr(func, "__module__", "__main__") == "__main__":
        return dumps(func)
    memo = _BY_VALUE if by_value else _BY_REFERENCE
    try:
        cached = memo.get(func)
    except TypeError:  # not weak-referenceable
        return dumps(func)
    if cached is None:
        cached = dumps(func)
        # Checked on a miss only: resolving the qualified name costs more than the lookup.
        if by_value or importable(func):
            memo[func] = cached
    return cached


#: Decoded functions by their encoded text, in this (worker) process. Only functions whose
#: decoding cannot differ between calls are kept: importable ones and stable script functions.
_DECODED: dict = {}
_DECODED_MAX = 256


def load_function(text: str):
    """:func:`loads` for the callable of a call, memoized in long-lived worker processes."""
    func = _DECODED.get(text)
    if func is not None:
        return func
    func = loads(text)
    if len(_DECODED) < _DECODED_MAX and (importable(func) or stable_by_value(func)):
        _DECODED[text] = func
    return func
