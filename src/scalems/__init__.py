"""scalems: write a molecular-science workflow once; run it on a laptop or through RADICAL-Pilot.

A workflow script describes command-line programs and Python functions as
tasks, ensembles of them, and the data flowing between them::

    import scalems

    @scalems.app
    def main():
        prep = scalems.executable(["gmx", "grompp", "-o", scalems.output_file("topol.tpr")])
        runs = scalems.executable([["gmx", "mdrun", "-s", prep.file["topol.tpr"]] for _ in range(8)])
        energies = [scalems.submit(analyse, run.file["ener.edr"]) for run in runs]

Run it with ``python -m scalems.local script.py`` or
``python -m scalems.radical --resource R script.py``. Re-running in the same
work directory returns finished results instead of redoing them.

How the package is built: a task travels one way through the layers below;
each line is a package (or module) and the object that owns that step::

    scalems.local, .radical, .memory   execution modules: ``python -m ...`` and workflow(),
                               a backend under a WorkflowManager (their __init__/__main__)
    invocation.py              the command line shared by execution modules
    scalems (commands.py)      public API: executable, submit, function_task
      workflow/                WorkflowManager: threads, life cycle, scope
        spec.py                  normalise and check the arguments -> a spec
        fingerprint.py           identity: the uid, from the spec and input file contents
        cache.py                 ResultCache: a recorded result finishes the task at once
        graph.py                 TaskGraph: task state, labels, dependencies
        scheduler.py             Scheduler: admission through the backend's limiter
        launcher.py              Launcher: task -> job (directory, inputs, encoded call)
      execution/               the backend contract: Backend, Limiter, job and outcome records
        local/ memory/ radical/  the backends (every module but __init__/__main__): run jobs
      store/                   the work directory's files, task record and run history
      call/                    a Python call as a JSON record, and running it anywhere

The layering rule: a module imports only from layers below it in this picture
(``exceptions`` and ``file`` are at the bottom, usable by all). Backends see
jobs, never tasks, the graph or the store; only the workflow layer's cache
touches the store; ``call`` knows nothing of workflows. That keeps each
backend small and replaceable, and lets the in-memory backend stand in for the
others in tests of everything above it.
"""

from __future__ import annotations

import importlib
import typing

from ._version import __version__

# The public names are imported on first use (PEP 562), so that processes which need only a
# part of scalems -- warm workers and MPI ranks running ``scalems.call``, the Raptor worker --
# do not pay for the workflow machinery (asyncio, the store) when they start.
_PUBLIC = {
    "app": ".entrypoint",
    "ScriptEntryPoint": ".entrypoint",
    "executable": ".commands",
    "submit": ".commands",
    "function_task": ".commands",
    "output_file": ".file",
    "FileReference": ".file",
    "Task": ".workflow.task",
    "Ensemble": ".workflow.task",
    "wait": ".workflow.task",
    "as_completed": ".workflow.task",
    "FIRST_COMPLETED": ".workflow.task",
    "FIRST_EXCEPTION": ".workflow.task",
    "ALL_COMPLETED": ".workflow.task",
    "get_scope": ".workflow.scope",
}

__all__ = (
    "__version__",
    "app",
    "ScriptEntryPoint",
    "executable",
    "submit",
    "function_task",
    "output_file",
    "FileReference",
    "Task",
    "Ensemble",
    "wait",
    "as_completed",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "ALL_COMPLETED",
    "get_scope",
)

if typing.TYPE_CHECKING:
    from .commands import executable, function_task, submit
    from .entrypoint import ScriptEntryPoint, app
    from .file import FileReference, output_file
    from .workflow.scope import get_scope
    from .workflow.task import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Ensemble, Task, as_completed, wait


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'scalems' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
