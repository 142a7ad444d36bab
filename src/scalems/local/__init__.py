"""Run workflows on this machine.

Command line::

    python -m scalems.local [--cores N] [--work-dir DIR] [--no-cache] script.py [script args]

Executables run as child processes, concurrently within the core budget (a
task reserves ``ranks x cores_per_rank`` cores); ``ranks > 1`` launches with
``mpiexec -n ranks``. Function tasks run in warm Python worker processes, or
under ``mpiexec`` through ``python -m scalems.call`` when they ask for ranks.

From Python (a plain script or a notebook)::

    import scalems, scalems.local

    with scalems.local.workflow(cores=4, directory="run1") as wf:
        task = scalems.executable(["echo", "hello"])
        print(task.result().stdout)

``async with scalems.local.workflow(...)`` works inside a running event loop
(Jupyter), and ``await task`` waits without blocking the loop.
"""

from __future__ import annotations

__all__ = (
    "parser",
    "workflow_manager",
    "workflow",
    "backend_factory",
    "configuration",
    "LocalConfiguration",
    "LocalBackend",
    "executor_factory",
    "LocalExecutor",
)

import argparse
import os
import typing

import scalems.invocation
from .backend import LocalBackend, LocalConfiguration, LocalExecutor, backend_factory, executor_factory


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")


parser = argparse.ArgumentParser(
    prog="python -m scalems.local",
    usage="python -m scalems.local <scalems.local args> script-to-run.py <script args>",
    description="Run a scalems workflow script on this machine.",
    formatter_class=scalems.invocation.HelpFormatter,
    parents=[scalems.invocation.base_parser(), scalems.invocation.workflow_parser()],
)
_group = parser.add_argument_group("scalems.local")
_group.add_argument(
    "--cores", type=_positive_int, default=None, help="Cores that tasks may use at once (default: all cores)."
)
_group.add_argument(
    "--gpus",
    type=_nonnegative_int,
    default=None,
    help="GPUs that tasks may use at once (default: the NVIDIA and AMD GPUs found, or those CUDA_VISIBLE_DEVICES names).",
)
_group.add_argument(
    "--no-bind",
    dest="bind",
    action="store_false",
    help="Do not pin each task's processes to the cores it reserved (default: pin, so tasks never share a core).",
)
_group.add_argument(
    "--mpi-launcher",
    metavar="COMMAND",
    default=None,
    help="Launch prefix for tasks with ranks > 1; {ranks} is replaced (default: 'mpiexec -n {ranks}').",
)
scalems.invocation.add_script_arguments(parser)


def configuration(args: argparse.Namespace) -> LocalConfiguration:
    """Backend configuration from parsed command-line arguments."""
    return LocalConfiguration(cores=args.cores, gpus=args.gpus, mpi_launcher=args.mpi_launcher, bind=args.bind)


def workflow_manager(
    loop=None,
    directory: typing.Optional[os.PathLike] = None,
    *,
    cores: typing.Optional[int] = None,
    gpus: typing.Optional[int] = None,
    mpi_launcher: typing.Optional[str] = None,
    bind: bool = True,
    use_cache: bool = True,
    progress: typing.Optional[bool] = None,
):
    """A workflow manager on the local backend, not yet started.

    Use it as ``with`` (plain scripts) or ``async with`` (inside a running event
    loop, e.g. Jupyter). *loop* is accepted for compatibility; the manager always
    dispatches on its own event loop thread, and tasks can be awaited from any loop.
    """
    from scalems.workflow.manager import WorkflowManager

    config = LocalConfiguration(cores=cores, gpus=gpus, mpi_launcher=mpi_launcher, bind=bind)
    return WorkflowManager(backend_factory, config, directory=directory, use_cache=use_cache, progress=progress)


workflow = workflow_manager
