"""The public functions that add work to the current workflow."""

from __future__ import annotations

__all__ = ("executable", "submit", "function_task")

import functools
import logging
import os
import typing

from scalems.exceptions import ScaleMSError
from scalems.workflow.scope import get_scope
from scalems.workflow.task import Ensemble, Task


def _raised_here(api):
    """Report a mistake in the arguments at the caller's line: without scalems's inner frames.

    The frames of the workflow layer say nothing about the user's mistake and push
    the line that made it off the screen. With the ``scalems`` logger at DEBUG the
    whole traceback is kept, for bugs in scalems itself.
    """

    @functools.wraps(api)
    def checked(*args, **kwargs):
        try:
            return api(*args, **kwargs)
        except (TypeError, ValueError, OSError, ScaleMSError) as error:
            if logging.getLogger("scalems").isEnabledFor(logging.DEBUG):
                raise
            raise error.with_traceback(None) from None

    return checked


def _is_ensemble_argv(argv) -> bool:
    if isinstance(argv, (str, bytes, os.PathLike)):
        return False
    try:
        first = argv[0]
    except (TypeError, IndexError, KeyError):
        return False
    return isinstance(first, (list, tuple))


@_raised_here
def executable(
    argv,
    *,
    inputs: typing.Union[None, typing.Mapping[str, typing.Any], typing.Sequence[typing.Any]] = None,
    outputs: typing.Union[None, typing.Mapping[str, typing.Any], typing.Sequence[str]] = None,
    stdin: typing.Union[None, str, typing.Sequence[str]] = None,
    env: typing.Optional[typing.Mapping[str, str]] = None,
    stdout: str = "stdout",
    stderr: str = "stderr",
    resources: typing.Optional[typing.Mapping[str, int]] = None,
    label: typing.Optional[str] = None,
    timeout: typing.Optional[float] = None,
    retries: int = 0,
    resumable: bool = False,
    cache: bool = True,
) -> typing.Union[Task, Ensemble]:
    """Run a command-line program as a task; a list of argvs makes an ensemble.

    Args:
        argv: program and arguments. Elements may be ``str``, numbers, paths of
            input files (``pathlib.Path``; their content is part of the task's
            identity), ``scalems.output_file(name)`` for files the task writes,
            and ``other_task.file[name]`` for files of earlier tasks. A sequence
            of such argvs creates an :class:`~scalems.workflow.Ensemble`.
        inputs: files the program reads. A mapping ``{flag: file}`` appends ``flag path`` to
            the command line. A list of files (a path, or ``other_task.file[name]``) or
            ``(name, file)`` pairs puts each file into the task directory under *name* (default:
            its base name) before the program starts, for programs that read files by fixed names
            (a LAMMPS ``read_data``, a GROMACS checkpoint). Either way the file's content is
            part of the task's identity; a relative path is taken from the current directory.
        outputs: files the program writes. A mapping ``{flag: name}`` appends ``flag name``;
            a list of names declares files the program writes by itself (``md.edr`` of
            ``gmx mdrun -deffnm md``, ``log.lammps``). Declared outputs must exist when the
            program ends, and are available as ``task.file[name]``.
        stdin: text (or lines) fed to standard input.
        env: variables added to the inherited environment.
        stdout, stderr: names of the files capturing the streams in the task directory.
        resources: ``{"ranks": n, "cores_per_rank": c, "gpus_per_rank": g}``; ranks > 1 launches with MPI.
        label: unique readable name; also names the task directory. Ensemble members get ``label-i``.
            Labels and an ensemble member's index are part of the task's identity: members with
            identical argvs are replicas that run separately; an unlabelled identical call outside
            an ensemble is the same task, added once.
        timeout: seconds each attempt may run; then its processes (MPI ranks included) get
            SIGTERM, a grace period, SIGKILL, and the attempt fails with
            :class:`~scalems.exceptions.TaskTimeoutError`.
        retries: how many more times a failed attempt is run (non-zero exit, time limit, a lost
            worker or pilot). Each attempt's stdout and stderr are kept under
            ``.scalems-attempts/`` in the task directory.
        resumable: the program continues from its own checkpoints: an attempt that did not finish
            (a failure under *retries*, a time limit, a killed run) leaves the task directory as it
            was, and the next attempt (a retry, or the next run of the script) starts in it.
        cache: False runs the task every time and never takes its result from the record.

    Returns:
        A :class:`~scalems.workflow.Task` (or an ensemble of them). ``result()`` gives an
        :class:`~scalems.workflow.ExecutableResult` with ``exitcode``, ``stdout``, ``stderr``,
        ``directory`` and ``file``.
    """
    manager = get_scope()
    options = dict(
        inputs=inputs,
        outputs=outputs,
        stdin=stdin,
        env=env,
        stdout=stdout,
        stderr=stderr,
        resources=resources,
        timeout=timeout,
        retries=retries,
        resumable=resumable,
        cache=cache,
    )
    if _is_ensemble_argv(argv):
        members = [
            manager.add_executable(member, label=None if label is None else f"{label}-{i}", member=i, **options)
            for i, member in enumerate(argv)
        ]
        return Ensemble(members, label=label)
    return manager.add_executable(argv, label=label, **options)


def submit(func: typing.Callable, /, *args, **kwargs) -> Task:
    """Call ``func(*args, **kwargs)`` as a task.

    Task handles, ensembles and file references among the arguments are replaced
    by their results (or paths) before the call; the task waits for them. To give
    the task a label or resources, use :func:`function_task`.
    """
    # Not wrapped in _raised_here, for speed (ensembles submit 100,000 calls); the same, inline.
    try:
        return get_scope().add_function(func, args, kwargs)
    except (TypeError, ValueError, OSError, ScaleMSError) as error:
        if logging.getLogger("scalems").isEnabledFor(logging.DEBUG):
            raise
        raise error.with_traceback(None) from None


@_raised_here
def function_task(
    func: typing.Callable,
    *,
    args: typing.Sequence = (),
    kwargs: typing.Optional[typing.Mapping[str, typing.Any]] = None,
    label: typing.Optional[str] = None,
    resources: typing.Optional[typing.Mapping[str, int]] = None,
    comm_arg: typing.Optional[str] = None,
    timeout: typing.Optional[float] = None,
    retries: int = 0,
    cache: bool = True,
) -> Task:
    """Call ``func(*args, **kwargs)`` as a task, with options (like :class:`threading.Thread`).

    Args:
        label: unique readable name of the task. It is part of the identity: two calls with the
            same arguments and different labels are distinct tasks (replicas).
        resources: as for :func:`executable`. With ``ranks > 1`` the call runs under MPI on
            every rank, receives an ``mpi4py`` communicator, and the result is the list of
            per-rank return values.
        comm_arg: how the communicator is passed: a keyword name (default ``"comm"`` when
            ``ranks > 1``), or ``""`` for the first positional argument.
        timeout, retries, cache: as for :func:`executable`; a time limit also ends the processes
            the function started.
    """
    return get_scope().add_function(
        func,
        args,
        kwargs,
        label=label,
        resources=resources,
        comm_arg=comm_arg,
        timeout=timeout,
        retries=retries,
        cache=cache,
    )
