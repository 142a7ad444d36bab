"""Run a Python function call in another process, from a JSON record.

The workflow side turns a call into text with :func:`serialize_call`; the
execution side runs it and answers with the text of :func:`serialize_result`.
Three execution paths share this module:

* ``python -m scalems.call IN.json OUT.json`` (:func:`cli`), for a fresh
  process, possibly launched with ``mpiexec``;
* :func:`execute`, for warm worker processes and the RADICAL Raptor worker,
  which receive the call text and return the result text;
* :func:`main`, for callers that already hold a :class:`Call`.

Values (the function, arguments, return value and exception) are pickled
with :mod:`dill` and stored as hex strings, so the records are plain JSON.
Functions that can be imported are stored by reference; functions defined in
the workflow script (``__main__``), closures and lambdas are stored by value,
together with the globals they use, because the executing interpreter never
ran that script.

Importing this module is cheap: :mod:`mpi4py` is imported only for a call
that needs a communicator.
"""

from __future__ import annotations

__all__ = (
    "Call",
    "CallPack",
    "CallResult",
    "ResultPack",
    "cli",
    "deserialize_call",
    "deserialize_result",
    "execute",
    "main",
    "serialize_call",
    "serialize_result",
)

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import pickle
import sys
import traceback as _traceback
import types
import typing
import weakref

import dill

from scalems.exceptions import APIError, ConfigurationError, MissingDependencyError, ProtocolError

logger = logging.getLogger(__name__)

#: The only encoding scalems writes and reads.
ENCODING = "dill"

#: Result fields filled in unless a call asks for fewer (*exception* and *traceback* are always kept).
DEFAULT_OUTPUTS = ("return_value", "exception", "traceback", "directory", "stdout", "stderr")

# Pin the protocol so records do not depend on a process-wide dill setting.
# recurse=True makes dill store only the globals a by-value function uses,
# by value; without it, a __main__ function refers to the receiver's __main__
# and fails with NameError there. Functions that are stored by reference are
# not affected, so the setting costs nothing for importable functions.
_PROTOCOL = 4


_SCALARS = frozenset({int, float, str, bytes, bool, type(None), complex})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _is_plain(obj, depth: int = 0) -> bool:
    """Built-in data only (no functions, classes or user objects), nested at most a few levels.

    Such values (and numpy arrays of numbers) pickle the same with the standard
    library's C pickler, which is 20 times faster than dill's pure-Python one;
    dill reads the result.
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


def _dumps(obj) -> str:
    if _is_plain(obj):
        return pickle.dumps(obj, protocol=_PROTOCOL).hex()
    return dill.dumps(obj, protocol=_PROTOCOL, recurse=True).hex()


_BY_REFERENCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


_BY_VALUE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

_STABLE_GLOBALS = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)


def _stable_by_value(func) -> bool:
    """A script function whose pickle cannot change: no closure, and every global it
    uses is a module, function or class (not data that the script might reassign)."""
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


def _dumps_function(func) -> str:
    """:func:`_dumps` for the callable of a call, memoized for functions pickled by reference.

    An importable module-level function pickles to its name alone, so its
    encoding never changes and an ensemble of calls encodes it once. Functions
    pickled by value (``__main__``, closures) capture current global values and
    are encoded every time.
    """
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if _stable_by_value(func):
        try:
            cached = _BY_VALUE.get(func)
        except TypeError:
            return _dumps(func)
        if cached is None:
            cached = _BY_VALUE[func] = _dumps(func)
        return cached
    if module and module != "__main__" and "<" not in qualname:
        try:
            cached = _BY_REFERENCE.get(func)
        except TypeError:  # not weak-referenceable
            return _dumps(func)
        if cached is None:
            owner = sys.modules.get(module)
            target = owner
            for part in qualname.split("."):
                target = getattr(target, part, None)
            cached = _dumps(func)
            if target is func:
                _BY_REFERENCE[func] = cached
        return cached
    return _dumps(func)


def _loads(text: str):
    return dill.loads(bytes.fromhex(text))


#: Decoded functions by their encoded text, in this (worker) process. Only functions whose
#: decoding cannot differ between calls are kept: importable ones and stable script functions.
_DECODED: dict = {}
_DECODED_MAX = 256


def _load_function(text: str):
    func = _DECODED.get(text)
    if func is not None:
        return func
    func = _loads(text)
    if len(_DECODED) < _DECODED_MAX and (_importable(func) or _stable_by_value(func)):
        _DECODED[text] = func
    return func


def _importable(func) -> bool:
    """True if *func* is what its module and qualified name resolve to (it was pickled by reference)."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return False
    target = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is func


class CallPack(typing.TypedDict, total=False):
    """JSON form of a :class:`Call` (what :func:`serialize_call` writes).

    *func*, each element of *args* and each value of *kwargs* are hex-encoded
    dill pickles. The other fields are plain JSON. Only *func* is required:
    null fields, the default *outputs* and the default encoding are left out,
    which keeps the records of large ensembles small.
    """

    func: str
    function: str  # printable name of *func*, for messages; not used to find it
    args: list[str]
    kwargs: dict[str, str]
    comm_arg: str | None
    requirements: dict[str, typing.Any]
    environment: dict[str, str] | None
    skeleton: str | None
    outputs: list[str]
    decoder: str
    encoder: str


class ResultPack(typing.TypedDict, total=False):
    """JSON form of a :class:`CallResult` (what :func:`serialize_result` writes).

    *return_value* and *exception* are hex-encoded dill pickles; *traceback* is
    text; *directory*, *stdout* and *stderr* are URIs. Null fields and the
    default encoding are left out.
    """

    return_value: str | None
    exception: str | None
    traceback: str | None
    function: str | None
    directory: str | None
    stdout: str | None
    stderr: str | None
    decoder: str
    encoder: str


@dataclasses.dataclass
class Call:
    """A function call, decoded and ready to run.

    Attributes:
        func: the callable.
        args, kwargs: its arguments, not including the MPI communicator.
        requirements: run time requirements (``ranks`` and the like); not passed to *func*.
        comm_arg: how *func* receives an MPI communicator: None (not at all, unless
            ``ranks > 1``, then as keyword ``comm``), ``""`` (first positional
            argument) or a keyword name.
        environment: environment variables set while *func* runs.
        skeleton: URI of an archive of working-directory files; carried, not acted on.
        outputs: :class:`CallResult` fields to report.
    """

    func: typing.Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    requirements: dict = dataclasses.field(default_factory=dict)
    comm_arg: str | None = None
    environment: dict | None = None
    skeleton: str | None = None
    outputs: list = dataclasses.field(default_factory=lambda: list(DEFAULT_OUTPUTS))
    decoder: str = ENCODING
    encoder: str = ENCODING

    @property
    def ranks(self) -> int:
        return _ranks(self.requirements)

    @property
    def comm_keyword(self) -> str | None:
        """How the communicator is passed after defaults: None, ``""`` (positional) or a keyword."""
        return _comm_keyword(self.comm_arg, self.ranks)


@dataclasses.dataclass
class CallResult:
    """How a call ended.

    Attributes:
        return_value: what the function returned (for an MPI launch through
            :func:`cli`: the list of per-rank return values, in rank order).
        exception: the exception the function raised, or None.
        traceback: formatted traceback of *exception*, as text.
        function: printable name of the function, for messages.
        directory: URI of the working directory the call ran in.
        stdout, stderr: URIs of captured output, if the caller captured it.
    """

    return_value: typing.Any = None
    exception: BaseException | None = None
    traceback: str | None = None
    function: str | None = None
    directory: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    decoder: str = ENCODING
    encoder: str = ENCODING


def _ranks(requirements: typing.Mapping) -> int:
    ranks = requirements.get("ranks", 1) if requirements else 1
    return 1 if ranks is None else ranks


def _comm_keyword(comm_arg: str | None, ranks: int) -> str | None:
    if comm_arg is None and ranks > 1:
        return "comm"
    return comm_arg


def _needs_mpi(comm_arg: str | None, ranks: int) -> bool:
    return _comm_keyword(comm_arg, ranks) is not None


def _describe(func) -> str:
    """A printable name for messages: ``module.qualname`` when there is one."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        return repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def _type_name(obj) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _check_encoding(record: typing.Mapping, what: str):
    for key in ("encoder", "decoder"):
        if record.get(key, ENCODING) != ENCODING:
            raise ProtocolError(f"{what} uses {key} {record[key]!r}; only {ENCODING!r} is supported")


def _parse_record(text: str | bytes, what: str, required: tuple) -> dict:
    try:
        record = json.loads(text)
    except (ValueError, TypeError) as err:
        raise ProtocolError(f"Not a scalems {what} record: {err}") from err
    if not isinstance(record, dict):
        raise ProtocolError(
            f"Not a scalems {what} record: expected a JSON object, got {type(record).__name__}"
        )
    missing = [key for key in required if key not in record]
    if missing:
        raise ProtocolError(f"Not a scalems {what} record: missing {', '.join(map(repr, missing))}")
    _check_encoding(record, f"The {what} record")
    return record


def serialize_call(
    func: typing.Callable,
    *,
    args: typing.Sequence = (),
    kwargs: typing.Mapping[str, typing.Any] | None = None,
    requirements: typing.Mapping[str, typing.Any] | None = None,
    comm_arg: str | None = None,
) -> str:
    """Encode ``func(*args, **kwargs)`` as JSON text for :func:`deserialize_call` in another process.

    Args:
        requirements: run time requirements (a mapping, or anything with ``as_dict()``
            such as :class:`scalems.execution.Resources`); must be plain JSON data.
        comm_arg: how to pass an MPI communicator (see :class:`Call`).

    Raises:
        TypeError: *func* is not callable, or a value cannot be serialized (the message
            says which one).
        ConfigurationError: *comm_arg* or *requirements* are invalid.
    """
    if not callable(func):
        raise TypeError(f"Expected a callable, got {_type_name(func)}")
    name = _describe(func)
    kwargs = {} if kwargs is None else dict(kwargs)
    if requirements is None:
        requirements = {}
    elif hasattr(requirements, "as_dict"):
        requirements = requirements.as_dict()
    requirements = dict(requirements)
    ranks = _ranks(requirements)
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ConfigurationError(f"requirements['ranks'] must be an integer >= 1, got {ranks!r}")
    if comm_arg is not None and (not isinstance(comm_arg, str) or (comm_arg and not comm_arg.isidentifier())):
        raise ConfigurationError(
            f"comm_arg must be None, '' (first positional argument) or a keyword name, got {comm_arg!r}"
        )
    keyword = _comm_keyword(comm_arg, ranks)
    if keyword and keyword in kwargs:
        raise ConfigurationError(
            f"Keyword argument {keyword!r} of {name} is reserved for the MPI communicator; "
            "remove it from kwargs or choose another comm_arg"
        )

    def encode(value, what: str, dumps=_dumps) -> str:
        try:
            return dumps(value)
        except Exception as err:
            raise TypeError(
                f"{what} of {name} ({_type_name(value)}) cannot be serialized for another process: {err}"
            ) from err

    pack = CallPack(
        func=encode(func, "The function", _dumps_function),
        function=name,
        args=[encode(arg, f"Positional argument {index}") for index, arg in enumerate(args)],
        kwargs={str(key): encode(value, f"Keyword argument {key!r}") for key, value in kwargs.items()},
        comm_arg=comm_arg,
        requirements=requirements,
        environment=None,
        skeleton=None,
        outputs=list(DEFAULT_OUTPUTS),
        decoder=ENCODING,
        encoder=ENCODING,
    )
    try:
        return _COMPACT.encode(_compact(pack))
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"requirements of {name} must be plain JSON data: {err}") from err


def _unpack_call(record: typing.Mapping) -> Call:
    """Decode the pickled fields of a parsed call record (may raise whatever unpickling raises)."""
    func = _load_function(record["func"])
    args = tuple(_loads(arg) for arg in record.get("args") or ())
    kwargs = {key: _loads(value) for key, value in (record.get("kwargs") or {}).items()}
    outputs = record.get("outputs")
    return Call(
        func=func,
        args=args,
        kwargs=kwargs,
        requirements=dict(record.get("requirements") or {}),
        comm_arg=record.get("comm_arg"),
        environment=record.get("environment"),
        skeleton=record.get("skeleton"),
        outputs=list(DEFAULT_OUTPUTS if outputs is None else outputs),
    )


def deserialize_call(text: str | bytes) -> Call:
    """Decode :func:`serialize_call` output.

    Raises:
        ProtocolError: *text* is not a call record.
        Exception: whatever unpickling raises, e.g. :class:`ModuleNotFoundError` when
            the function's module cannot be imported here.
    """
    return _unpack_call(_parse_record(text, "call", ("func",)))


def _add_note(exc: BaseException, note: str):
    """PEP 678 note; set by hand before Python 3.11 so it is still pickled with the exception."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        try:
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
        except (AttributeError, TypeError):
            pass


def _format(exc: BaseException, skip_first_frame: bool = False) -> str:
    tb = exc.__traceback__
    if skip_first_frame and tb is not None:
        tb = tb.tb_next
    return "".join(_traceback.format_exception(type(exc), exc, tb))


@contextlib.contextmanager
def _environment(overrides: typing.Mapping[str, str] | None):
    """Apply *overrides* to os.environ for the duration of the call, so warm workers stay clean."""
    if not overrides:
        yield
        return
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update({key: str(value) for key, value in overrides.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(call: Call, *, comm=None) -> CallResult:
    """Run *call* in this process and report how it ended; exceptions of the function are captured.

    Args:
        comm: MPI communicator to hand to the function as :attr:`Call.comm_keyword` says.
            Ignored when the call does not take one.

    Raises:
        scalems.exceptions.APIError: the call takes a communicator and *comm* is None.
    """
    args = tuple(call.args)
    kwargs = dict(call.kwargs)
    keyword = call.comm_keyword
    if keyword is not None:
        if comm is None:
            raise APIError(
                f"The call to {_describe(call.func)} takes an MPI communicator "
                f"(comm_arg={call.comm_arg!r}, ranks={call.ranks}) but none was provided"
            )
        if keyword:
            kwargs[keyword] = comm
        else:
            args = (comm, *args)
    result = CallResult(function=_describe(call.func), directory=_cwd_uri())
    with _environment(call.environment) if call.environment else contextlib.nullcontext():
        try:
            result.return_value = call.func(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            # SystemExit too: a function calling sys.exit() must not take a warm worker with it.
            result.exception = exc
            result.traceback = _format(exc, skip_first_frame=True)
    outputs = set(call.outputs)
    unknown = outputs - set(DEFAULT_OUTPUTS)
    if unknown:
        logger.warning("Ignoring unknown output(s) %s requested for %s", sorted(unknown), result.function)
    for field in ("return_value", "directory", "stdout", "stderr"):
        if field not in outputs:
            setattr(result, field, None)
    return result


def _encode_exception(exc: BaseException, function: str | None) -> str:
    """Pickle *exc*, or a RuntimeError with its repr if it does not survive a round trip."""
    try:
        text = _dumps(exc)
        _loads(text)  # Exceptions whose __init__ does not match their args pickle but fail to load.
        return text
    except Exception as err:  # noqa: BLE001
        logger.warning(
            "The %s raised by %s cannot be serialized (%s: %s); reporting it as a RuntimeError",
            _type_name(exc),
            function or "the function",
            type(err).__name__,
            err,
        )
    try:
        description = repr(exc)
    except Exception:  # noqa: BLE001
        description = f"<{_type_name(exc)} that cannot be represented>"
    return _dumps(RuntimeError(description))


def serialize_result(result: CallResult) -> str:
    """Encode *result* as JSON text; never fails because of the value or exception it carries.

    An exception that cannot be pickled is replaced by a RuntimeError with its
    repr. A return value that cannot be pickled is replaced by a TypeError that
    names the function and the value's type.
    """
    _check_encoding({"encoder": result.encoder, "decoder": result.decoder}, "The result")
    exception = result.exception
    trace = result.traceback
    value = None
    if result.return_value is not None:
        try:
            value = _dumps(result.return_value)
        except Exception as err:  # noqa: BLE001
            problem = TypeError(
                f"The return value of {result.function or 'the function'} could not be serialized: "
                f"{_type_name(result.return_value)} cannot be pickled ({type(err).__name__}: {err})"
            )
            if exception is None:
                exception = problem
                trace = _format(err)
            else:
                logger.warning("%s; the call also raised, which is reported instead", problem)
    pack = ResultPack(
        return_value=value,
        exception=None if exception is None else _encode_exception(exception, result.function),
        traceback=None if trace is None else str(trace),
        function=result.function,
        directory=None if result.directory is None else str(result.directory),
        stdout=None if result.stdout is None else str(result.stdout),
        stderr=None if result.stderr is None else str(result.stderr),
        decoder=ENCODING,
        encoder=ENCODING,
    )
    return _COMPACT.encode(_compact(pack))


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_DEFAULTS = {"encoder": ENCODING, "decoder": ENCODING, "outputs": list(DEFAULT_OUTPUTS)}


def _compact(pack: dict) -> dict:
    """*pack* without null fields and fields at their default (readers fill those in)."""
    return {
        key: value for key, value in pack.items() if value is not None and _DEFAULTS.get(key, _compact) != value
    }


def deserialize_result(text: str | bytes) -> CallResult:
    """Decode :func:`serialize_result` output.

    A value or exception that cannot be unpickled here (for example because
    its module is missing) becomes a RuntimeError in *exception* that says so,
    so a caller always gets a result to report.

    Raises:
        ProtocolError: *text* is not a result record.
    """
    record = _parse_record(text, "result", ())
    function = record.get("function")
    exception = None
    value = None
    problems = []
    if record.get("exception") is not None:
        try:
            exception = _loads(record["exception"])
        except Exception as err:  # noqa: BLE001
            problems.append(
                f"the exception raised by {function or 'the function'} ({type(err).__name__}: {err})"
            )
    if record.get("return_value") is not None:
        try:
            value = _loads(record["return_value"])
        except Exception as err:  # noqa: BLE001
            problems.append(f"the return value of {function or 'the function'} ({type(err).__name__}: {err})")
    if problems:
        if exception is None:
            exception = RuntimeError(f"Could not deserialize {' and '.join(problems)} in this process")
        else:
            logger.warning("Could not deserialize %s", problems[0])
    return CallResult(
        return_value=value,
        exception=exception,
        traceback=record.get("traceback"),
        function=function,
        directory=record.get("directory"),
        stdout=record.get("stdout"),
        stderr=record.get("stderr"),
    )


_cwd_memo: tuple = ("", None)


def _cwd_uri() -> str | None:
    global _cwd_memo
    try:
        cwd = os.getcwd()
    except OSError:  # The working directory was removed under a long-lived worker.
        return None
    if _cwd_memo[0] != cwd:
        _cwd_memo = (cwd, pathlib.Path(cwd).as_uri())
    return _cwd_memo[1]


def _failed(exc: BaseException, function: str | None, note: str) -> CallResult:
    """A result for a call that could not be started at all."""
    _add_note(exc, note)
    return CallResult(exception=exc, traceback=_format(exc), function=function, directory=_cwd_uri())


def _run_record(record: typing.Mapping, comm=None) -> CallResult:
    """Unpickle and run a parsed call record; every failure ends up in the result."""
    function = record.get("function")
    try:
        call = _unpack_call(record)
    except Exception as exc:  # noqa: BLE001
        return _failed(
            exc, function, f"while decoding the call to {function or 'a function'} in {sys.executable}"
        )
    try:
        return main(call, comm=comm)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc, function, f"while starting the call to {function or 'a function'}")


def execute(call_text: str | bytes, *, comm=None) -> str:
    """Run a serialized call here and return the serialized result; never raises for a bad call.

    This is the entry point of warm worker processes and the Raptor worker.
    With an MPI communicator *comm*, the function receives it as the call says
    and the result is this rank's only.
    """
    try:
        record = _parse_record(call_text, "call", ("func",))
    except ProtocolError as exc:
        return serialize_result(_failed(exc, None, "while reading the call record"))
    return serialize_result(_run_record(record, comm))


def _combine(results: list[CallResult]) -> CallResult:
    """Merge per-rank results (rank order) into one: the list of values, or the first rank's failure."""
    size = len(results)
    first = results[0]
    failed = [(rank, result) for rank, result in enumerate(results) if result.exception is not None]
    if not failed:
        return dataclasses.replace(first, return_value=[result.return_value for result in results])
    rank, result = failed[0]
    exc = result.exception
    label = f"MPI rank {rank} of {size}"
    # Name the rank in the message itself when that keeps the exception rebuildable from its args.
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{label}: {exc.args[0]}",)
    else:
        _add_note(exc, f"raised on {label}")
    trace = "".join(f"MPI rank {r} of {size} failed:\n{res.traceback or ''}" for r, res in failed)
    return dataclasses.replace(
        first, return_value=None, exception=exc, traceback=trace, function=result.function
    )


@contextlib.contextmanager
def _cli_logging():
    """Log scalems records to stderr at SCALEMS_LOG_LEVEL (default WARNING) while the CLI runs.

    Nothing is left behind when :func:`cli` returns, and nothing is added if the
    application already configured logging.
    """
    scalems_logger = logging.getLogger("scalems")
    requested = os.environ.get("SCALEMS_LOG_LEVEL", "").strip().upper() or "WARNING"
    level = logging.getLevelName(requested)
    handler = None
    if not scalems_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        scalems_logger.addHandler(handler)
    saved_level = scalems_logger.level
    scalems_logger.setLevel(level if isinstance(level, int) else logging.WARNING)
    if not isinstance(level, int):
        logger.warning("Ignoring invalid SCALEMS_LOG_LEVEL=%r; using WARNING", requested)
    try:
        yield
    finally:
        scalems_logger.setLevel(saved_level)
        if handler is not None:
            scalems_logger.removeHandler(handler)


_PROG = "python -m scalems.call"


def _parser():
    import argparse  # Only the CLI needs it; workers importing this module do not.

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Run a serialized scalems function call and write its serialized result.",
        epilog="Exit status: 0 if the call returned, 1 if it raised (see OUT), 2 for usage errors. "
        "Set SCALEMS_LOG_LEVEL (e.g. DEBUG) for more log output on stderr.",
    )
    parser.add_argument(
        "input", metavar="IN", help="call record (JSON) written by scalems.call.serialize_call"
    )
    parser.add_argument("output", metavar="OUT", help="file to write the result record (JSON) to")
    return parser


def _usage_error(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


def _write(path: pathlib.Path, text: str):
    """Write atomically, so a reader never sees a partial result file."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _world():
    """COMM_WORLD, importing mpi4py only now (non-MPI calls never load it)."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise MissingDependencyError("mpi4py", "mpi", "to run a call that needs an MPI communicator") from err
    return MPI.COMM_WORLD


def cli(*argv: str) -> int:
    """Command line entry point: ``python -m scalems.call [-h] IN OUT``.

    *argv* are the arguments after the program name. Returns the exit status:
    0 if the call returned, 1 if it raised (the exception is in OUT), 2 for
    usage errors (bad arguments, unreadable IN, OUT's directory missing).

    A call that needs MPI (``ranks > 1`` or a *comm_arg*) runs on every rank of
    ``COMM_WORLD``; rank 0 writes one result whose return value is the list of
    per-rank return values, and every rank exits 1 if any rank raised.
    """
    with _cli_logging():
        return _cli(argv)


def _cli(argv: tuple) -> int:
    try:
        namespace = _parser().parse_args(list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    in_path = pathlib.Path(namespace.input)
    out_path = pathlib.Path(namespace.output)
    try:
        text = in_path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return _usage_error(f"cannot read call record {str(in_path)!r}: {reason}")
    try:
        record = _parse_record(text, "call", ("func",))
    except ProtocolError as err:
        return _usage_error(f"{str(in_path)!r}: {err}")
    if not out_path.parent.is_dir():
        return _usage_error(
            f"cannot write result {str(out_path)!r}: directory {str(out_path.parent)!r} does not exist"
        )

    function = record.get("function")
    ranks = _ranks(record.get("requirements") or {})
    logger.debug("Running %s from %s; result to %s", function, in_path, out_path)
    comm = None
    if not isinstance(ranks, int):
        return _usage_error(f"{str(in_path)!r}: requirements['ranks'] must be an integer, got {ranks!r}")
    if _needs_mpi(record.get("comm_arg"), ranks):
        try:
            comm = _world()
        except MissingDependencyError as exc:
            result = _failed(exc, function, "while preparing the MPI communicator")
        else:
            if comm.Get_size() != ranks:
                logger.warning("%s asked for %s rank(s) but runs on %s", function, ranks, comm.Get_size())
            result = _run_record(record, comm)
    else:
        result = _run_record(record)

    if comm is None:
        status = _finish(result, out_path)
    else:
        texts = comm.gather(serialize_result(result), root=0)
        status = None
        if comm.Get_rank() == 0:
            status = _finish(_combine([deserialize_result(t) for t in texts]), out_path)
        status = comm.bcast(status, root=0)
    return status


def _finish(result: CallResult, out_path: pathlib.Path) -> int:
    """Write the result file and report; return the exit status."""
    try:
        _write(out_path, serialize_result(result))
    except OSError as err:
        return _usage_error(f"cannot write result {str(out_path)!r}: {err.strerror or err}")
    if result.exception is None:
        return 0
    logger.error(
        "%s raised %s: %s (result in %s)\n%s",
        result.function or "The function",
        _type_name(result.exception),
        result.exception,
        out_path,
        result.traceback or "",
    )
    return 1
