"""Jobs for tests that drive RadicalBackend without a workflow (the backend on its own loop is
rp_shared.SharedBackend)."""

import pathlib

from scalems.execution import ExecutableJob


def executable_job(directory: pathlib.Path, argv, **fields) -> ExecutableJob:
    """An ExecutableJob running *argv* in *directory* (which the caller creates); *fields* override."""
    values = dict(
        uid=directory.name,
        label=directory.name,
        directory=directory,
        argv=argv,
        env={},
        stdin=None,
        stdout="stdout",
        stderr="stderr",
        outputs=[],
    )
    values.update(fields)
    return ExecutableJob(**values)
