"""Running a call in this process, on one MPI rank or on all of them.

:func:`execute` is what warm worker processes and the Raptor worker run for
each call text they receive; :func:`run_launched` is what a process started
for one call (``python -m scalems.call``) runs, on every rank when the call
needs MPI. Failures of the function, and failures to decode or start it, end up
in the result, never as exceptions of these functions, so a long-lived worker
survives any call.

:mod:`mpi4py` is imported only for a call that needs a communicator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import sys
import typing

from scalems.exceptions import APIError, MissingDependencyError, ProtocolError

from .codec import (
    DEFAULT_OUTPUTS,
    Call,
    CallResult,
    comm_keyword,
    describe,
    deserialize_result,
    exception_text,
    format_traceback,
    parse_call,
    ranks_of,
    serialize_result,
    unpack_call,
)

logger = logging.getLogger(__name__)


def _add_note(exc: BaseException, note: str):
    """PEP 678 note; set by hand before Python 3.11 so it is still pickled with the exception."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        try:
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
        except (AttributeError, TypeError):
            pass


@contextlib.contextmanager
def _environment(overrides: typing.Mapping[str, str]):
    """Apply *overrides* to os.environ for the duration of the call, so warm workers stay clean."""
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
                f"The call to {describe(call.func)} takes an MPI communicator "
                f"(comm_arg={call.comm_arg!r}, ranks={call.ranks}) but none was provided"
            )
        if keyword:
            kwargs[keyword] = comm
        else:
            args = (comm, *args)
    result = CallResult(function=describe(call.func), directory=_cwd_uri())
    with _environment(call.environment) if call.environment else contextlib.nullcontext():
        try:
            result.return_value = call.func(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            # SystemExit too: a function calling sys.exit() must not take a warm worker with it.
            result.exception_object = exc
            result.exception = exception_text(exc)
            result.traceback = format_traceback(exc, skip_first_frame=True)
    outputs = set(call.outputs)
    unknown = outputs - set(DEFAULT_OUTPUTS)
    if unknown:
        logger.warning("Ignoring unknown output(s) %s requested for %s", sorted(unknown), result.function)
    for field in ("return_value", "directory", "stdout", "stderr"):
        if field not in outputs:
            setattr(result, field, None)
    return result


def failed(exc: BaseException, function: str | None, note: str) -> CallResult:
    """A result for a call that could not be started at all."""
    _add_note(exc, note)
    return CallResult(
        exception_object=exc, traceback=format_traceback(exc), function=function, directory=_cwd_uri()
    )


def run_record(record: typing.Mapping, comm=None) -> CallResult:
    """Unpickle and run a parsed call record on this rank; every failure ends up in the result."""
    function = record.get("function")
    try:
        call = unpack_call(record)
    except Exception as exc:  # noqa: BLE001
        where = f"while decoding the call to {function or 'a function'} in {sys.executable}"
        return failed(exc, function, where)
    try:
        return main(call, comm=comm)
    except Exception as exc:  # noqa: BLE001
        return failed(exc, function, f"while starting the call to {function or 'a function'}")


def execute(call_text: str | bytes, *, comm=None) -> str:
    """Run a serialized call here and return the serialized result; never raises for a bad call.

    This is the entry point of warm worker processes and the Raptor worker.
    With an MPI communicator *comm*, the function receives it as the call says
    and the result is this rank's only.
    """
    try:
        record = parse_call(call_text)
    except ProtocolError as exc:
        return serialize_result(failed(exc, None, "while reading the call record"))
    return serialize_result(run_record(record, comm))


def needs_mpi(record: typing.Mapping) -> bool:
    """True if the call in *record* runs on every rank of COMM_WORLD: it has ranks or takes a communicator."""
    ranks = ranks_of(record.get("requirements") or {})
    return ranks > 1 or comm_keyword(record.get("comm_arg"), ranks) is not None


def _world():
    """COMM_WORLD, importing mpi4py only now (non-MPI calls never load it)."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise MissingDependencyError("mpi4py", "mpi", "to run a call that needs an MPI communicator") from err
    return MPI.COMM_WORLD


def combine_ranks(results: list[CallResult]) -> CallResult:
    """Merge per-rank results (rank order) into one: the list of values, or the first rank's failure."""
    size = len(results)
    first = results[0]
    failures = [(rank, result) for rank, result in enumerate(results) if result.exception is not None]
    if not failures:
        return dataclasses.replace(first, return_value=[result.return_value for result in results])
    rank, result = failures[0]
    exc = result.exception_object
    label = f"MPI rank {rank} of {size}"
    # Name the rank in the message itself when that keeps the exception rebuildable from its args.
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{label}: {exc.args[0]}",)
    else:
        _add_note(exc, f"raised on {label}")
    trace = "".join(f"MPI rank {r} of {size} failed:\n{res.traceback or ''}" for r, res in failures)
    return dataclasses.replace(
        first,
        return_value=None,
        exception=exception_text(exc),
        exception_object=exc,
        traceback=trace,
        function=result.function,
    )


def run_launched(record: typing.Mapping) -> tuple[CallResult | None, typing.Any]:
    """Run a parsed call record in a process started for it; return ``(result, comm)``.

    A call that needs MPI runs on every rank of COMM_WORLD and the per-rank
    results are merged (:func:`combine_ranks`) on rank 0: *result* is None on
    the other ranks, and *comm* is COMM_WORLD, for the caller to agree on an
    exit status. Otherwise *comm* is None.
    """
    function = record.get("function")
    if not needs_mpi(record):
        return run_record(record), None
    try:
        comm = _world()
    except MissingDependencyError as exc:
        return failed(exc, function, "while preparing the MPI communicator"), None
    ranks = ranks_of(record.get("requirements") or {})
    if comm.Get_size() != ranks:
        logger.warning("%s asked for %s rank(s) but runs on %s", function, ranks, comm.Get_size())
    texts = comm.gather(serialize_result(run_record(record, comm)), root=0)
    if comm.Get_rank() != 0:
        return None, comm
    return combine_ranks([deserialize_result(text) for text in texts]), comm
