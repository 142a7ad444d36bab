"""Task identity: a sha256 fingerprint of what a task does.

The fingerprint covers the command or the function's code, the arguments, the
environment additions, the resources that change results, the *content* of
input files, and the uids of upstream tasks. Same script and same inputs give
the same uids, which is what lets a re-run find finished results; any change
to an argument or an input file's content gives a new uid.
"""

from __future__ import annotations

__all__ = (
    "identify",
    "find_program",
    "fingerprint",
    "digest_text",
    "canonical_text",
    "Encoder",
    "callable_identity",
    "cacheable_identity",
)

import functools
import hashlib
import json
import os
import pathlib
import types
import typing
import weakref

from scalems.exceptions import StoreError
from scalems.file import FileReference, OutputFile

#: Bump when the encoding changes, so old records are not mistaken for new ones.
FINGERPRINT_VERSION = 2

# One encoder for every fingerprint (json.dumps with options builds a new one per call).
# Keys are not sorted: every dict in task material is built in a fixed order, and user
# dicts are encoded as sorted item lists by Encoder, so the text is canonical anyway.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _c_encoder():
    """The json module's C encoder, built once (JSONEncoder.encode builds one per call).

    Same output as ``_CANONICAL.encode``; None where the C accelerator is missing.
    """
    try:
        from json.encoder import c_make_encoder, encode_basestring

        if c_make_encoder is None:
            return None
        make = c_make_encoder(None, _CANONICAL.default, encode_basestring, None, ":", ",", False, False, True)
        if "".join(make([1, "é", None, {"k": True}], 0)) != _CANONICAL.encode([1, "é", None, {"k": True}]):
            return None
        return make
    except Exception:  # a different C API in some Python version: use the pure form
        return None


_FAST = _c_encoder()


def canonical_text(material) -> str:
    """The canonical JSON text of *material* (compact, keys in insertion order, UTF-8 as is)."""
    if _FAST is not None:
        return "".join(_FAST(material, 0))
    return _CANONICAL.encode(material)


def fingerprint(material) -> str:
    """sha256 hex digest of a JSON-encodable structure whose dicts have a fixed key order."""
    return hashlib.sha256(canonical_text(material).encode("utf-8")).hexdigest()


def digest_text(text: str) -> str:
    """The fingerprint of material whose canonical text is *text*."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Argument types whose canonical form is the JSON value itself.
PLAIN_TYPES = frozenset({str, int, bool, type(None)})


#: The upstream tasks of a task whose arguments are plain values (read, never changed).
NO_UPSTREAM: dict = {}


def identify(spec, digest_file: typing.Callable[[pathlib.Path], str]) -> tuple:
    """``(uid, upstream)`` of a task spec: its fingerprint, and the tasks it takes input from.

    *digest_file* gives the content digest of an input file (the store memoizes it
    by stat, so unchanged inputs are not read again).
    """
    uid = spec.plain_uid()
    if uid is not None:
        return uid, NO_UPSTREAM
    encoder = Encoder(digest_file)
    return spec.uid(encoder), encoder.upstream


class Encoder:
    """Turns task arguments into canonical JSON-able data, collecting upstream tasks.

    Args:
        digest_file: returns the content digest of a local file or directory
            (memoized by the store, so unchanged inputs are not re-read).
    """

    def __init__(self, digest_file: typing.Callable[[pathlib.Path], str]):
        self._digest_file = digest_file
        self.upstream: dict = {}  # uid -> Task, in first-seen order

    def encode(self, value):
        kind = type(value)
        if kind in PLAIN_TYPES:
            return value
        if kind is list or kind is tuple:
            return {kind.__name__: self.encode_items(value)}
        # Imported here to keep this module importable on its own.
        from scalems.workflow.task import Ensemble, Task

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return {"float": repr(value)}
        if isinstance(value, Task):
            self.upstream[value.uid] = value
            return {"task": value.uid}
        if isinstance(value, Ensemble):
            return {"ensemble": [self.encode(member) for member in value]}
        if isinstance(value, FileReference):
            self.upstream[value.task.uid] = value.task
            return {"file": [value.task.uid, value.name]}
        if isinstance(value, OutputFile):
            return {"output": value.name}
        if isinstance(value, pathlib.PurePath):
            return self.encode_path(value)
        if isinstance(value, (list, tuple)):
            return {type(value).__name__: [self.encode(item) for item in value]}
        if isinstance(value, dict):
            items = [[self.encode(k), self.encode(v)] for k, v in value.items()]
            items.sort(key=lambda kv: json.dumps(kv[0], sort_keys=True))
            return {"dict": items}
        if isinstance(value, (set, frozenset)):
            items = [self.encode(item) for item in value]
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            return {type(value).__name__: items}
        if isinstance(value, bytes):
            return {"bytes": hashlib.sha256(value).hexdigest()}
        if callable(value) and isinstance(value, (types.FunctionType, types.BuiltinFunctionType, functools.partial)):
            return {"callable": callable_identity(value)}
        return {"object": _pickle_digest(value)}

    def encode_items(self, values) -> list:
        """A list of encoded items (positional arguments, argv)."""
        plain = PLAIN_TYPES
        for item in values:
            if type(item) not in plain:
                return [self.encode(item) for item in values]
        return list(values)

    def encode_path(self, path: os.PathLike) -> dict:
        """An input file: its content digest counts, not its name."""
        path = pathlib.Path(path).absolute()
        return {"input": self._digest_file(path)}

    def encode_program(self, program: str, search_path: typing.Optional[str]) -> typing.Optional[str]:
        """The content digest of the file *program* runs, as found on *search_path* here.

        So an upgraded or rebuilt program re-runs its tasks. None where it is not found
        on this machine (it may exist only where the task runs, as on a remote resource).
        """
        found = find_program(program, search_path)
        if found is None:
            return None
        try:
            return self._digest_file(found)  # one stat when the memo knows the file
        except (OSError, StoreError):  # gone, or not a regular file: it may exist where the task runs
            return None


@functools.lru_cache(maxsize=1024)
def _on_path(name: str, search_path: str) -> typing.Optional[str]:
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def find_program(program: str, search_path: typing.Optional[str] = None) -> typing.Optional[str]:
    """The file *program* names: an absolute path (not checked here), or a name looked up on the search path.

    A relative path (``./run.sh``) is relative to the task's directory when it runs, so it names
    nothing here: None. A small ``shutil.which`` (shutil would add a dozen modules to every run's
    start-up); lookups by name are remembered for the run.
    """
    if os.sep in program:
        return program if os.path.isabs(program) else None
    if search_path is None:
        search_path = os.environ.get("PATH", os.defpath)
    return _on_path(program, search_path)


def _pickle_digest(value) -> str:
    import dill

    return hashlib.sha256(dill.dumps(value, byref=True, recurse=True)).hexdigest()


# Weak keys: a workflow that makes thousands of lambdas does not keep them all alive.
_identity_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cacheable_identity(func) -> bool:
    """Whether :func:`callable_identity` of *func* can be kept per function object.

    A closure's cells can be rebound after the function was made (late binding), so
    its identity is recomputed on every use.
    """
    return isinstance(func, (types.FunctionType, types.BuiltinFunctionType)) and not getattr(func, "__closure__", None)


def callable_identity(func) -> str:
    """A digest that changes when the function's code (or captured values) changes.

    Functions: module, qualified name, bytecode, constants (recursively, so nested
    functions and lambdas count), referenced names, defaults and closure values.
    Other callables: their pickled form.
    """
    try:
        cached = _identity_cache.get(func)
    except TypeError:  # unhashable callable object
        cached = None
    if cached is not None:
        return cached
    if isinstance(func, functools.partial):
        identity = fingerprint(
            [
                "partial",
                callable_identity(func.func),
                Encoder(_no_files).encode(list(func.args)),
                Encoder(_no_files).encode(dict(func.keywords)),
            ]
        )
    elif isinstance(func, types.FunctionType):
        parts = [
            "function",
            func.__module__,
            func.__qualname__,
            _code_digest(func.__code__),
        ]
        if func.__defaults__:
            parts.append(_pickle_digest(func.__defaults__))
        if func.__kwdefaults__:
            parts.append(_pickle_digest(func.__kwdefaults__))
        if func.__closure__:
            cells = []
            for cell in func.__closure__:
                try:
                    content = cell.cell_contents
                except ValueError:  # empty cell
                    cells.append(None)
                    continue
                if isinstance(content, types.FunctionType):
                    cells.append(callable_identity(content))
                else:
                    cells.append(_pickle_digest(content))
            parts.append(cells)
        identity = fingerprint(parts)
    elif isinstance(func, (types.BuiltinFunctionType, types.MethodType)) and hasattr(func, "__qualname__"):
        owner = getattr(func, "__self__", None)
        if isinstance(func, types.MethodType) or (owner is not None and not isinstance(owner, types.ModuleType)):
            identity = fingerprint(["method", func.__qualname__, _pickle_digest(func)])
        else:
            identity = fingerprint(["builtin", getattr(func, "__module__", None), func.__qualname__])
    else:
        identity = fingerprint(["object", _pickle_digest(func)])
    if cacheable_identity(func):
        try:
            _identity_cache[func] = identity
        except TypeError:  # builtins cannot be weakly referenced
            pass
    return identity


def _no_files(path):
    raise TypeError(f"file paths are not supported here: {path}")


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.update(_code_digest(const).encode())
        else:
            h.update(repr(const).encode())
    return h.hexdigest()
