"""The call and result records: what crosses the process boundary, as JSON text.

The workflow side writes a call record with :func:`serialize_call`; the
process that runs it answers with :func:`serialize_result`. The fields are
those of SCALE-MS's ``CallPack`` and ``ResultPack`` plus a few of our own
(*function*, *comm_arg*, *traceback*, *exception_object*). Every field is
written, defaults included, so that a reader may index any of them; readers
here still accept the records of earlier scalems versions, which left out
fields at their default, because stores of earlier runs hold such records.

Python values inside the records are hex text (see :mod:`scalems.call.pickling`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback as _traceback
import typing

from scalems.exceptions import ConfigurationError, ProtocolError

from .pickling import dumps, dumps_function, load_function, loads

logger = logging.getLogger(__name__)

#: The only encoding scalems writes and reads.
ENCODING = "dill"

#: Result fields filled in unless a call asks for fewer (*exception* and *traceback* are always kept).
DEFAULT_OUTPUTS = ("return_value", "exception", "traceback", "directory", "stdout", "stderr")


class CallPack(typing.TypedDict):
    """JSON form of a :class:`Call` (what :func:`serialize_call` writes).

    *func*, each element of *args* and each value of *kwargs* are hex-encoded
    pickles; the other fields are plain JSON.
    """

    func: str
    function: str  # printable name of *func*, for messages; not used to find it
    args: list[str]
    kwargs: dict[str, str]
    comm_arg: str | None
    requirements: dict[str, typing.Any]
    environment: dict[str, str] | None
    skeleton: str | None  # URI of an archive of working-directory files (carried, not acted on)
    outputs: list[str]
    decoder: str
    encoder: str


class ResultPack(typing.TypedDict):
    """JSON form of a :class:`CallResult` (what :func:`serialize_result` writes).

    *exception* is text (the exception's repr), readable without unpickling;
    *exception_object* and *return_value* are hex-encoded pickles; *directory*,
    *stdout* and *stderr* are URIs.
    """

    return_value: str | None
    exception: str | None
    exception_object: str | None
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
            argument), a keyword name, or False (never: a function that drives an
            MPI program itself still runs on every rank).
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
        return ranks_of(self.requirements)

    @property
    def comm_keyword(self) -> str | None:
        """How the communicator is passed after defaults: None, ``""`` (positional) or a keyword."""
        return comm_keyword(self.comm_arg, self.ranks)


@dataclasses.dataclass
class CallResult:
    """How a call ended.

    Attributes:
        return_value: what the function returned (for an MPI launch through
            :func:`scalems.call.cli`: the list of per-rank return values, in rank order).
        exception: the repr of the exception the function raised, or None. Text, so
            that a record can be read and reported where the exception's class
            cannot be imported.
        exception_object: the exception itself (after a round trip: rebuilt here, or
            a RuntimeError saying why it could not be). Set whenever *exception* is.
        traceback: formatted traceback of the exception, as text.
        function: printable name of the function, for messages.
        directory: URI of the working directory the call ran in.
        stdout, stderr: URIs of captured output, if the caller captured it.
    """

    return_value: typing.Any = None
    exception: str | None = None
    exception_object: BaseException | None = None
    traceback: str | None = None
    function: str | None = None
    directory: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    decoder: str = ENCODING
    encoder: str = ENCODING

    def __post_init__(self):
        # Keep "exception is text" true for callers that still pass the object there.
        if isinstance(self.exception, BaseException):
            if self.exception_object is None:
                self.exception_object = self.exception
            self.exception = None
        if self.exception is None and self.exception_object is not None:
            self.exception = exception_text(self.exception_object)


def exception_text(exc: BaseException) -> str:
    """The repr of *exc*, which names its type and arguments; never raises."""
    try:
        return repr(exc)
    except Exception:  # noqa: BLE001
        return f"<{type_name(exc)} that cannot be represented>"


def ranks_of(requirements: typing.Mapping | None) -> int:
    ranks = requirements.get("ranks", 1) if requirements else 1
    return 1 if ranks is None else ranks


def comm_keyword(comm_arg: str | bool | None, ranks: int) -> str | None:
    """How a communicator is passed: *comm_arg*, or keyword ``comm`` for a multi-rank call that names
    none; None when it is not passed at all (``comm_arg=False`` opts out)."""
    if comm_arg is False:
        return None
    if comm_arg is None and ranks > 1:
        return "comm"
    return comm_arg


def describe(func) -> str:
    """A printable name for messages: ``module.qualname`` when there is one."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        return repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def type_name(obj) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def format_traceback(exc: BaseException, skip_first_frame: bool = False) -> str:
    tb = exc.__traceback__
    if skip_first_frame and tb is not None:
        tb = tb.tb_next
    return "".join(_traceback.format_exception(type(exc), exc, tb))


def _check_encoding(record: typing.Mapping, what: str):
    for key in ("encoder", "decoder"):
        if record.get(key, ENCODING) != ENCODING:
            raise ProtocolError(f"{what} uses {key} {record[key]!r}; only {ENCODING!r} is supported")


def parse_record(text: str | bytes, what: str, required: tuple = ()) -> dict:
    """The JSON object in *text*, checked for *required* fields and a supported encoding."""
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
    if record.get("encoder", ENCODING) != ENCODING or record.get("decoder", ENCODING) != ENCODING:
        _check_encoding(record, f"The {what} record")
    return record


def parse_call(text: str | bytes) -> dict:
    """The parsed call record in *text* (see :func:`unpack_call` for its values)."""
    return parse_record(text, "call", ("func",))


_JSON = json.JSONEncoder(separators=(",", ":"))


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
        raise TypeError(f"Expected a callable, got {type_name(func)}")
    name = describe(func)
    kwargs = {} if kwargs is None else dict(kwargs)
    if requirements is None:
        requirements = {}
    elif hasattr(requirements, "as_dict"):
        requirements = requirements.as_dict()
    requirements = dict(requirements)
    ranks = ranks_of(requirements)
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ConfigurationError(f"requirements['ranks'] must be an integer >= 1, got {ranks!r}")
    if comm_arg is not None and comm_arg is not False and (
        not isinstance(comm_arg, str) or (comm_arg and not comm_arg.isidentifier())
    ):
        raise ConfigurationError(
            f"comm_arg must be None, '' (first positional argument), a keyword name or False, got {comm_arg!r}"
        )
    keyword = comm_keyword(comm_arg, ranks)
    if keyword and keyword in kwargs:
        raise ConfigurationError(
            f"Keyword argument {keyword!r} of {name} is reserved for the MPI communicator; "
            "remove it from kwargs or choose another comm_arg"
        )

    def encode(value, what: str, encoder=dumps) -> str:
        try:
            return encoder(value)
        except Exception as err:
            raise TypeError(
                f"{what} of {name} ({type_name(value)}) cannot be serialized for another process: {err}"
            ) from err

    varying = {
        "func": encode(func, "The function", dumps_function),
        "function": name,
        "args": [encode(arg, f"Positional argument {index}") for index, arg in enumerate(args)],
        "kwargs": {str(key): encode(value, f"Keyword argument {key!r}") for key, value in kwargs.items()},
        "comm_arg": comm_arg,
        "requirements": requirements,
    }
    try:
        return _JSON.encode(varying)[:-1] + _CALL_CONSTANT_TAIL
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"requirements of {name} must be plain JSON data: {err}") from err


# The fields that serialize_call and serialize_result always write with the same value, encoded
# once: every task encodes one call record and one result record, and these are half of the fields.
_CALL_CONSTANT_TAIL = "," + _JSON.encode(
    {
        "environment": None,
        "skeleton": None,
        "outputs": list(DEFAULT_OUTPUTS),
        "decoder": ENCODING,
        "encoder": ENCODING,
    }
)[1:]
_ENCODING_TAIL = "," + _JSON.encode({"decoder": ENCODING, "encoder": ENCODING})[1:]


def unpack_call(record: typing.Mapping) -> Call:
    """Decode the pickled fields of a parsed call record (may raise whatever unpickling raises).

    Fields missing from records of earlier versions take their defaults.
    """
    func = load_function(record["func"])
    args = tuple(loads(arg) for arg in record.get("args") or ())
    kwargs = {key: loads(value) for key, value in (record.get("kwargs") or {}).items()}
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
    return unpack_call(parse_call(text))


def _encode_exception(exc: BaseException, function: str | None) -> str:
    """Pickle *exc*, or a RuntimeError with its repr if it does not survive a round trip."""
    try:
        text = dumps(exc)
        loads(text)  # Exceptions whose __init__ does not match their args pickle but fail to load.
        return text
    except Exception as err:  # noqa: BLE001
        logger.warning(
            "The %s raised by %s cannot be serialized (%s: %s); reporting it as a RuntimeError",
            type_name(exc),
            function or "the function",
            type(err).__name__,
            err,
        )
    return dumps(RuntimeError(exception_text(exc)))


def serialize_result(result: CallResult) -> str:
    """Encode *result* as JSON text; never fails because of the value or exception it carries.

    An exception that cannot be pickled is replaced by a RuntimeError with its
    repr. A return value that cannot be pickled is replaced by a TypeError that
    names the function and the value's type.
    """
    if result.encoder != ENCODING or result.decoder != ENCODING:
        _check_encoding({"encoder": result.encoder, "decoder": result.decoder}, "The result")
    exc = result.exception_object
    text = result.exception
    trace = result.traceback
    value = None
    if result.return_value is not None:
        try:
            value = dumps(result.return_value)
        except Exception as err:  # noqa: BLE001
            problem = TypeError(
                f"The return value of {result.function or 'the function'} could not be serialized: "
                f"{type_name(result.return_value)} cannot be pickled ({type(err).__name__}: {err})"
            )
            if exc is None and text is None:
                exc, text = problem, exception_text(problem)
                trace = format_traceback(err)
            else:
                logger.warning("%s; the call also raised, which is reported instead", problem)
    if exc is not None and text is None:
        text = exception_text(exc)
    varying = {
        "return_value": value,
        "exception": None if text is None else str(text),
        "exception_object": None if exc is None else _encode_exception(exc, result.function),
        "traceback": None if trace is None else str(trace),
        "function": result.function,
        "directory": None if result.directory is None else str(result.directory),
        "stdout": None if result.stdout is None else str(result.stdout),
        "stderr": None if result.stderr is None else str(result.stderr),
    }
    return _JSON.encode(varying)[:-1] + _ENCODING_TAIL


def _is_hex(text) -> bool:
    try:
        bytes.fromhex(text)
    except (TypeError, ValueError):
        return False
    return True


def deserialize_result(text: str | bytes) -> CallResult:
    """Decode :func:`serialize_result` output, or a result record of an earlier version.

    A value or exception that cannot be unpickled here (for example because
    its module is missing) becomes a RuntimeError in *exception_object* that
    says so, so a caller always gets a result to report.

    Raises:
        ProtocolError: *text* is not a result record.
    """
    record = parse_record(text, "result")
    function = record.get("function")
    message = record.get("exception")
    pickled = record.get("exception_object")
    if "exception_object" not in record and _is_hex(message):
        # Earlier scalems versions stored the pickled exception itself in *exception*.
        message, pickled = None, message
    exc = None
    value = None
    problems = []
    if pickled is not None:
        try:
            exc = loads(pickled)
        except Exception as err:  # noqa: BLE001
            problems.append(
                f"the exception raised by {function or 'the function'} ({type(err).__name__}: {err})"
            )
    if record.get("return_value") is not None:
        try:
            value = loads(record["return_value"])
        except Exception as err:  # noqa: BLE001
            problems.append(f"the return value of {function or 'the function'} ({type(err).__name__}: {err})")
    if exc is not None and not isinstance(exc, BaseException):
        # SCALE-MS pickled the exception's text rather than the exception.
        message, exc = str(exc), None
    if problems:
        if exc is None:
            exc = RuntimeError(f"Could not deserialize {' and '.join(problems)} in this process")
        else:
            logger.warning("Could not deserialize %s", problems[0])
    if exc is None and message is not None:
        exc = RuntimeError(message)  # a writer that sent only the text
    return CallResult(
        return_value=value,
        exception=message,
        exception_object=exc,
        traceback=record.get("traceback"),
        function=function,
        directory=record.get("directory"),
        stdout=record.get("stdout"),
        stderr=record.get("stderr"),
    )
