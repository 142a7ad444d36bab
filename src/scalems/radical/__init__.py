"""Run workflows through RADICAL-Pilot (RP), on this machine or on an HPC resource.

Command line::

    python -m scalems.radical --resource local.localhost myworkflow.py
    python -m scalems.radical --resource ornl.frontier \\
        --pilot-option project=abc123 --pilot-option nodes=2 --pilot-option runtime=60 myworkflow.py

Options: ``--resource`` (an RP resource label; list them with
``radical-pilot-resources``), ``--access`` (access schema), ``--venv`` (the Python
environment tasks activate at the resource; without it, the client's own on
``local.localhost``, elsewhere one that scalems provisions at the resource:
:mod:`scalems.radical.task_environment`, with ``--task-requirements``, ``--task-pip``
and ``--task-env-root``),
``--pilot-option KEY=VALUE`` (any :class:`radical.pilot.PilotDescription` field,
typed as RP declares it; the pilot's ``runtime`` defaults to 30 minutes) and
``--enable-raptor`` (function calls through a long-lived scalems Raptor worker).

Executables become RP tasks; their input files, stdin, stdout, stderr and
declared outputs are staged between the task's directory in the work directory
and the task sandbox. Function calls run as ``python -m scalems.call`` tasks.
RP's own client-side files go into ``scalems_radical/`` in the work directory
(and, for ``local.*`` resources, the pilot sandbox too).

From Python::

    import scalems, scalems.radical

    config = scalems.radical.configuration(["--resource", "local.localhost"])
    with scalems.radical.workflow_manager(directory="run1", configuration=config):
        task = scalems.executable(["echo", "hello"])
        print(task.result().stdout)

Running anything through it needs ``radical.pilot`` (``pip install 'scalems[radical]'``);
importing it and its :data:`parser` do not.
"""

from __future__ import annotations

__all__ = (
    "parser",
    "configuration",
    "workflow_manager",
    "workflow",
    "executor_factory",
    "current_configuration",
    "RuntimeConfiguration",
    "RadicalBackend",
    "RPDispatchingExecutor",
    "RuntimeSession",
)

import argparse
import importlib
import os
import typing

import scalems.invocation

from .runtime_configuration import RuntimeConfiguration, add_arguments, configuration

# The names below need radical.pilot; they are imported on first use (PEP 562), so that the
# parser (--help, the documentation) works without it. Using one without RP raises
# MissingDependencyError, and so does anything that checks a resource or a pilot option.
# RPDispatchingExecutor and executor_factory are the original SCALE-MS names.
_NEEDS_RP = {
    "RadicalBackend": ("backend", "RadicalBackend"),
    "RPDispatchingExecutor": ("backend", "RadicalBackend"),
    "current_configuration": ("backend", "current_configuration"),
    "executor_factory": ("backend", "executor_factory"),
    "RuntimeSession": ("session", "RuntimeSession"),
}

if typing.TYPE_CHECKING:
    from .backend import RadicalBackend, current_configuration, executor_factory
    from .backend import RadicalBackend as RPDispatchingExecutor
    from .session import RuntimeSession


def __getattr__(name: str):
    found = _NEEDS_RP.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{found[0]}", __name__), found[1])
    globals()[name] = value
    return value


def _make_parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="python -m scalems.radical",
        usage="python -m scalems.radical <scalems.radical args> script-to-run.py <script args>",
        description="Run a scalems workflow script through RADICAL-Pilot.",
        formatter_class=scalems.invocation.HelpFormatter,
        parents=[scalems.invocation.base_parser(), scalems.invocation.workflow_parser()],
    )
    add_arguments(made)
    scalems.invocation.add_script_arguments(made)
    return made


#: The command line parser of ``python -m scalems.radical`` (for ``sphinxcontrib-autoprogram`` too).
parser = _make_parser()


def workflow_manager(
    loop=None,
    directory: typing.Optional[os.PathLike] = None,
    *,
    configuration: typing.Optional[RuntimeConfiguration] = None,
    use_cache: bool = True,
    progress: typing.Optional[bool] = None,
):
    """A workflow manager on the RADICAL backend, not yet started.

    Use it as ``with`` (plain scripts) or ``async with`` (inside a running event
    loop). *loop* is accepted for compatibility; the manager dispatches on its
    own event loop thread.

    Args:
        directory: work directory (default: the current directory).
        configuration: from :func:`configuration` (default: the active one, if any).
    """
    from scalems.workflow.manager import WorkflowManager

    from .backend import current_configuration, executor_factory

    if configuration is None:
        configuration = current_configuration()
    return WorkflowManager(
        executor_factory, configuration, directory=directory, use_cache=use_cache, progress=progress
    )


workflow = workflow_manager
