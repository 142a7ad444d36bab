"""Run workflows in this process, without starting any process: for fast tests of workflow logic.

Function tasks run in a thread pool of this process. Executables do not run
programs: their ``argv[0]`` names a Python stand-in from a table of
*programs* (``echo``, ``cat``, ``true`` and ``false`` are built in; pass your
own, e.g. a fake ``gmx`` that writes the files the real one would). Everything
else (task identity, the record and re-runs, files flowing between tasks,
failures, labels, ensembles) is the same workflow layer as with
:mod:`scalems.local`, so a test of a workflow's logic can run here in
milliseconds::

    import scalems, scalems.memory

    def fake_mdrun(run):                      # run: a scalems.memory.ProgramRun
        (run.path("md.log")).write_text("Finished mdrun\\n")
        return 0

    with scalems.memory.workflow(directory=tmp, programs={"gmx": fake_mdrun}):
        md = scalems.executable(["gmx", "mdrun", scalems.output_file("md.log")])
        assert md.result().exitcode == 0

Not run here: MPI (``ranks > 1``), and anything that needs a real process
(a function that calls ``os._exit``, for example, would end this process).
"""

from __future__ import annotations

__all__ = ("workflow_manager", "workflow", "MemoryBackend", "MemoryConfiguration", "ProgramRun", "BUILTIN_PROGRAMS")

import os
import typing

from .backend import BUILTIN_PROGRAMS, MemoryBackend, MemoryConfiguration, ProgramRun, backend_factory


def workflow_manager(
    loop=None,
    directory: typing.Optional[os.PathLike] = None,
    *,
    cores: int = 4,
    programs: typing.Optional[typing.Mapping[str, typing.Callable[[ProgramRun], int]]] = None,
    use_cache: bool = True,
    progress: typing.Optional[bool] = False,
):
    """A workflow manager on the in-memory backend, not yet started (``with`` or ``async with`` it).

    Args:
        cores: how many tasks may run at once (threads), and the budget tasks reserve from.
        programs: stand-ins for programs by name, added to (or replacing) the built-in ones.
    """
    from scalems.workflow.manager import WorkflowManager

    config = MemoryConfiguration(cores=cores, programs=dict(programs or {}))
    return WorkflowManager(backend_factory, config, directory=directory, use_cache=use_cache, progress=progress)


workflow = workflow_manager
