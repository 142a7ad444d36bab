"""Command-line launching of workflow scripts: ``python -m scalems.<backend> [options] script.py [script args]``.

Each execution module builds its parser from :func:`base_parser` (and
:func:`workflow_parser`) and calls :func:`run`. Arguments the parser does not
recognize are handed to the script in ``sys.argv``.

The script runs as the ``__main__`` module (as with ``python script.py``), so
functions and classes it defines travel to worker processes by value. It must
define exactly one ``@scalems.app`` function, which runs while a workflow
manager for the chosen backend is open.
"""

from __future__ import annotations

__all__ = ("base_parser", "workflow_parser", "add_script_arguments", "run")

import argparse
import asyncio
import logging
import os
import pathlib
import signal
import sys
import traceback
import types
import typing

import scalems.entrypoint as _app
from scalems._version import __version__
from scalems.exceptions import ConfigurationError, ContextError, ScaleMSError, ScriptError, TaskError

logger = logging.getLogger("scalems")

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

#: Exit statuses.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, reading the terminal width without :mod:`shutil`.

    argparse builds a formatter for every ``add_argument()``, and the stock one
    imports shutil (which imports lzma, bz2 and zlib) to ask for the width: a few
    milliseconds of every run's start-up, spent before any help is printed.
    """

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """``$COLUMNS``, else the width of the terminal on stdout, else 80 (as :func:`shutil.get_terminal_size`)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def base_parser(**kwargs) -> argparse.ArgumentParser:
    """Options every execution module has. Use as a parent parser (it has no ``-h`` of its own)."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    parser = argparse.ArgumentParser(add_help=False, **kwargs)
    parser.add_argument("--version", action="version", version=f"scalems {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="Configure console logging to the indicated level (default: WARNING).",
    )
    parser.add_argument(
        "--pycharm", action="store_true", help="Attempt to connect to PyCharm remote debugging system, where appropriate."
    )
    return parser


def workflow_parser() -> argparse.ArgumentParser:
    """Options about the work directory and the result cache, shared by the execution modules."""
    parser = argparse.ArgumentParser(add_help=False, formatter_class=HelpFormatter)
    group = parser.add_argument_group("workflow")
    group.add_argument(
        "--work-dir",
        metavar="DIR",
        default=None,
        help="Directory for task directories and the record of finished work (default: current directory).",
    )
    group.add_argument(
        "--no-cache", action="store_true", help="Ignore results recorded by earlier runs and run every task again."
    )
    return parser


def add_script_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the script positional argument (and its pass-through arguments) to a module's parser."""
    parser.add_argument(
        "script", metavar="script-to-run.py", help="The workflow script. Must contain a function decorated with scalems.app"
    )
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _configure_logging(level: typing.Optional[str]) -> None:
    level = level or os.environ.get("SCALEMS_LOG_LEVEL", "WARNING").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("scalems")
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.WARNING))


def _connect_pycharm() -> None:
    try:
        import pydevd_pycharm
    except ImportError:
        logger.warning("--pycharm: pydevd_pycharm is not installed (pip install pydevd-pycharm); continuing.")
        return
    port = int(os.environ.get("PYCHARM_DEBUG_PORT", "12345"))
    pydevd_pycharm.settrace("localhost", port=port, stdoutToServer=True, stderrToServer=True)


def load_script(path: pathlib.Path) -> tuple:
    """Compile and execute *path* as ``__main__``; return ``(module, entry_point)``.

    Raises:
        ScriptError: missing or unreadable file, syntax error, exception while loading,
            or not exactly one ``@scalems.app``.
    """
    if not path.exists():
        raise ScriptError(path, "no such file. Give the path of a Python workflow script.")
    if not path.is_file():
        raise ScriptError(path, "is not a file. Give the path of a Python workflow script.")
    try:
        source = path.read_bytes()
    except OSError as error:
        raise ScriptError(path, f"cannot be read: {error.strerror}.") from error
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise ScriptError(path, f"syntax error at line {error.lineno}: {error.msg}.") from error
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    _app._registered.clear()
    try:
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        if isinstance(error, ContextError):
            # scalems.executable/submit at the top level: the workflow opens after loading.
            line = traceback.extract_tb(error.__traceback__)[1:2]
            where = f" (line {line[0].lineno})" if line else ""
            raise ScriptError(
                path,
                f"adds scalems tasks while it is being loaded{where}. Put the workflow in a function "
                "decorated with @scalems.app; the execution module opens the workflow and then calls it.",
            ) from error
        # The user's own code failed while loading: show their traceback, not ours.
        frames = traceback.extract_tb(error.__traceback__)[1:]
        detail = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(error), error))
        raise ScriptError(path, f"raised an exception while loading:\n{detail.rstrip()}") from error
    entries = list(dict.fromkeys(_app._registered))
    if not entries:
        raise ScriptError(path, "defines no function decorated with @scalems.app, so there is nothing to run.")
    if len(entries) > 1:
        names = ", ".join(entry.name for entry in entries)
        raise ScriptError(path, f"defines {len(entries)} functions decorated with @scalems.app ({names}); exactly one is allowed.")
    return module, entries[0]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception in the main thread so clean-up runs."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def run(
    *,
    parser: argparse.ArgumentParser,
    backend_factory: typing.Callable,
    configure: typing.Callable[[argparse.Namespace], typing.Any],
    argv: typing.Optional[typing.Sequence[str]] = None,
) -> typing.NoReturn:
    """Parse the command line, load the script, run its app on a new workflow, exit with a status.

    Args:
        parser: the execution module's parser (from :func:`base_parser` and
            :func:`workflow_parser`, with :func:`add_script_arguments`).
        backend_factory: the module's backend factory ``(manager, params) -> Backend``.
        configure: turns the parsed arguments into the backend's configuration;
            may raise :class:`ConfigurationError`, reported as a usage error.
        argv: arguments (default: ``sys.argv[1:]``).
    """
    _freeze_runtime()
    sys.exit(main(parser=parser, backend_factory=backend_factory, configure=configure, argv=argv))


def _freeze_runtime() -> None:
    """Take the runtime's own objects out of the cyclic garbage collector's view.

    Everything imported so far (the standard library, scalems, the backend) lives
    until the process exits. Every full collection walked all of it again, and the
    collections of interpreter shutdown cost about 15 ms of a one-task run. Objects
    the script creates are collected as usual. Only the command line does this; a
    process that merely imports scalems is left alone.
    """
    import gc

    import scalems.workflow.manager  # noqa: F401  (the rest of the runtime, before freezing)

    gc.freeze()


def main(*, parser, backend_factory, configure, argv=None) -> int:
    """:func:`run` without the ``sys.exit``; returns the exit status."""
    from scalems.workflow.manager import WorkflowManager

    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    _configure_logging(args.log_level)
    debug = logger.isEnabledFor(logging.DEBUG)
    if args.pycharm:
        _connect_pycharm()
    if unknown:
        logger.info("Passing unrecognized arguments to the script: %s", " ".join(unknown))
    try:
        params = configure(args)
    except ConfigurationError as error:
        parser.error(str(error))
    problem = _work_dir_problem(args.work_dir)
    if problem:
        parser.error(problem)
    script = pathlib.Path(args.script)
    saved_argv, saved_main, saved_path = list(sys.argv), sys.modules.get("__main__"), list(sys.path)
    sys.argv = [str(script), *unknown, *args.script_args]
    sys.path.insert(0, str(script.absolute().parent))
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        try:
            _, entry = load_script(script)
        except ScriptError as error:
            _report_error(error, debug)
            return EXIT_USAGE
        manager = WorkflowManager(
            backend_factory, params, directory=args.work_dir, use_cache=not args.no_cache
        )
        return _run_app(manager, entry, debug)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def _work_dir_problem(work_dir) -> typing.Optional[str]:
    """Why *work_dir* cannot hold a run (one sentence), or None."""
    path = pathlib.Path(work_dir if work_dir is not None else os.getcwd())
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        if existing == path:
            return f"--work-dir {os.fspath(path)!r} is a file, not a directory"
        return f"--work-dir {os.fspath(path)!r} cannot be created: {os.fspath(existing)!r} is a file"
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        return f"--work-dir {os.fspath(path)!r}: no permission to write in {os.fspath(existing)!r}"
    return None


def _run_app(manager, entry, debug: bool) -> int:
    status = EXIT_OK
    try:
        manager.start()
    except (ScaleMSError, OSError) as error:
        _report_error(error, debug)
        return EXIT_FAILED
    try:
        try:
            if entry.is_async:
                asyncio.run(entry.func())
            else:
                entry.func()
        except (KeyboardInterrupt, SystemExit):
            raise
        except TaskError as error:
            # The script asked for a result that does not exist; the failure report below says why.
            print(f"scalems: the workflow script stopped: {error}", file=sys.stderr)
            status = EXIT_FAILED
        except Exception as error:
            print("scalems: the workflow script raised an exception:", file=sys.stderr)
            print(user_traceback(error, full=debug), end="", file=sys.stderr)
            status = EXIT_FAILED
        manager.close()
    except KeyboardInterrupt as interrupt:
        print("\nscalems: interrupted; stopping running tasks (finished results are kept).", file=sys.stderr)
        manager.close(cancel=True)
        status = EXIT_TERMINATED if isinstance(interrupt, _Terminated) else EXIT_INTERRUPTED
    if _report(manager) and status == EXIT_OK:
        status = EXIT_FAILED
    return status


def _own_file(filename: str) -> bool:
    """True for scalems's own source files and the interpreter's machinery (runpy, importlib)."""
    return filename.startswith(_PACKAGE_DIR) or filename.startswith("<frozen ") or filename.endswith(
        os.sep + "runpy.py"
    )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(error: BaseException, *, full: bool = False) -> str:
    """The traceback of *error* as the user needs it: their own frames and the message.

    scalems's frames say nothing about the user's mistake and bury the line that made it,
    so they are left out (with *full*, e.g. ``--log-level DEBUG``, everything is shown).
    """
    report = traceback.TracebackException.from_exception(error)
    if not full:
        seen = set()
        pending = [report]
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            kept = [frame for frame in current.stack if not _own_file(frame.filename)]
            current.stack = traceback.StackSummary.from_list(kept)
            pending.extend(x for x in (current.__cause__, current.__context__) if x is not None)
    return "".join(report.format())


def _report_error(error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(error)
    print(f"scalems: error: {error}", file=sys.stderr)


def _report(manager, limit: int = 10) -> bool:
    """Print where results are and which tasks failed. Returns True if any task failed."""
    tasks = manager.tasks
    failed = [t for t in tasks if t.state.value in ("failed", "cancelled")]
    print(f"scalems: {manager.summary_line()}. Work directory: {manager.directory}", file=sys.stderr)
    done = [t for t in tasks if t.state.value == "done" and t.kind == "executable"]
    for task in done[:limit]:
        print(f"  {task.label}: {task.result().stdout}", file=sys.stderr)
    if len(done) > limit:
        print(f"  ... and {len(done) - limit} more under {manager.directory / 'scalems_tasks'}", file=sys.stderr)
    backend_error = manager.backend_error
    if backend_error is not None:
        kind = type(backend_error).__name__
        print(f"scalems: error: the backend could not start: {kind}: {backend_error}", file=sys.stderr)
    unrunnable = [t for t in failed if backend_error is not None and t.exception().__cause__ is backend_error]
    if unrunnable:
        print(f"  {len(unrunnable)} task(s) could not run because of it.", file=sys.stderr)
    upstream = [t for t in failed if type(t.exception()).__name__ == "UpstreamFailedError"]
    for task in failed:
        if task.state.value != "failed" or task in unrunnable or task in upstream:
            continue
        print(f"  FAILED {task.exception()}", file=sys.stderr)
        traceback_text = getattr(task.exception(), "remote_traceback", "")
        if traceback_text:
            print("    " + traceback_text.rstrip().replace("\n", "\n    "), file=sys.stderr)
    if upstream:
        print(f"  {len(upstream)} task(s) were not run because a task they depend on failed.", file=sys.stderr)
    return bool(failed)
