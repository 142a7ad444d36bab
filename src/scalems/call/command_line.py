"""``python -m scalems.call [-h] IN OUT``: run one call record in a process started for it.

Backends use this to run a call where no warm worker can: under ``mpiexec``
for calls with several ranks, or as a RADICAL-Pilot task. The exit status tells
the launcher whether to look for a result: 0 (returned) and 1 (raised) both
leave one in OUT; 2 means a usage error and no result.

(Named ``command_line`` rather than ``cli`` so that the package attribute
``scalems.call.cli`` is unambiguously the function.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sys

from scalems.exceptions import ProtocolError

from .codec import CallResult, parse_call, ranks_of, serialize_result
from .runner import run_launched

logger = logging.getLogger(__name__)

PROG = "python -m scalems.call"


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


def _parser():
    import argparse  # Only the CLI needs it; workers importing scalems.call do not.

    parser = argparse.ArgumentParser(
        prog=PROG,
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
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def write_atomically(path: pathlib.Path, text: str):
    """Write *text* to *path* so that a reader never sees a partial file."""
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


def cli(*argv: str) -> int:
    """Command line entry point: ``sys.exit(cli(*sys.argv))``.

    *argv* is the whole command line: ``argv[0]`` is the program (ignored; the
    usage text says ``python -m scalems.call``), then IN and OUT. Returns the
    exit status: 0 if the call returned, 1 if it raised (the exception is in
    OUT), 2 for usage errors (bad arguments, unreadable IN, OUT's directory
    missing).

    A call that needs MPI (``ranks > 1`` or a *comm_arg*) runs on every rank of
    ``COMM_WORLD``; rank 0 writes one result whose return value is the list of
    per-rank return values, and every rank exits 1 if any rank raised.
    """
    with _cli_logging():
        return _cli(argv[1:])


def _cli(arguments: tuple) -> int:
    try:
        namespace = _parser().parse_args(list(arguments))
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
        record = parse_call(text)
    except ProtocolError as err:
        return _usage_error(f"{str(in_path)!r}: {err}")
    if not out_path.parent.is_dir():
        return _usage_error(
            f"cannot write result {str(out_path)!r}: directory {str(out_path.parent)!r} does not exist"
        )
    ranks = ranks_of(record.get("requirements") or {})
    if not isinstance(ranks, int):
        return _usage_error(f"{str(in_path)!r}: requirements['ranks'] must be an integer, got {ranks!r}")

    logger.debug("Running %s from %s; result to %s", record.get("function"), in_path, out_path)
    result, comm = run_launched(record)
    if comm is None:
        return _finish(result, out_path)
    status = _finish(result, out_path) if comm.Get_rank() == 0 else None
    return comm.bcast(status, root=0)


def _finish(result: CallResult, out_path: pathlib.Path) -> int:
    """Write the result file and report; return the exit status."""
    try:
        write_atomically(out_path, serialize_result(result))
    except OSError as err:
        return _usage_error(f"cannot write result {str(out_path)!r}: {err.strerror or err}")
    if result.exception is None:
        return 0
    logger.error(
        "%s raised %s (result in %s)\n%s",
        result.function or "The function",
        result.exception,
        out_path,
        result.traceback or "",
    )
    return 1
