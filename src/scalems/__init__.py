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
"""

from ._version import __version__
from .entrypoint import ScriptEntryPoint, app
from .commands import executable, function_task, submit
from .file import FileReference, output_file
from .workflow.scope import get_scope
from .workflow.task import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Ensemble, Task, as_completed, wait

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
