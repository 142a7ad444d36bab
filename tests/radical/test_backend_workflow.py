"""Workflows (scalems.executable / scalems.submit) running on the shared RP backend.

The workflow manager enters and leaves its backend; to keep one pilot for the
whole test run, it gets a thin backend that forwards jobs to the shared
``RPDispatchingExecutor`` running on its own event loop.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

rp = pytest.importorskip("radical.pilot")

import scalems  # noqa: E402
from scalems.exceptions import TaskFailedError, UpstreamFailedError  # noqa: E402
from scalems.execution import RuntimeManager  # noqa: E402

pytestmark = pytest.mark.radical


class Forwarding(RuntimeManager):
    """Runs jobs on the shared backend's loop; start-up and shut-down are the shared backend's business."""

    name = "radical"
    function_jobs_need_directory = True

    def __init__(self, backend):
        super().__init__(configuration=None)
        self._backend = backend

    async def runtime_startup(self):
        return self._backend

    async def runtime_shutdown(self, runtime):
        return None

    async def _forward(self, job):
        future = asyncio.run_coroutine_threadsafe(self._backend.executor.run(job), self._backend.loop)
        return await asyncio.wrap_future(future)

    async def run_executable(self, job):
        return await self._forward(job)

    async def run_function(self, job):
        return await self._forward(job)


@pytest.fixture
def workflow(rp_backend, tmp_path):
    from scalems.workflow.manager import WorkflowManager

    return WorkflowManager(
        lambda manager, params: Forwarding(rp_backend), None, directory=tmp_path / "work", progress=False
    )


def scaled(x, factor):
    return x * factor


def test_files_flow_between_executables_and_functions(workflow):
    def read_number(path):
        return int(pathlib.Path(path).read_text())

    with workflow:
        writer = scalems.executable(
            ["sh", "-c", 'echo 41 > "$1"', "writer", scalems.output_file("value.txt")], label="writer"
        )
        copy = scalems.executable(["cat", writer.file["value.txt"]], label="copy")
        number = scalems.submit(read_number, writer.file["value.txt"])
        product = scalems.submit(scaled, number, 2)
        assert product.result(timeout=180) == 82
        result = copy.result(timeout=180)
    assert pathlib.Path(result.stdout).read_text() == "41\n"
    assert pathlib.Path(writer.result().file["value.txt"]).read_text() == "41\n"


def test_failures_stay_with_their_task(workflow):
    with workflow:
        missing = scalems.executable(["no-such-program-xyz"], label="missing")
        after = scalems.executable(["cat", missing.file["stdout"]], label="after")
        fine = scalems.executable(["echo", "ok"], label="fine")
        with pytest.raises(TaskFailedError, match="program not found"):
            missing.result(timeout=180)
        with pytest.raises(UpstreamFailedError):
            after.result(timeout=180)
        assert pathlib.Path(fine.result(timeout=180).stdout).read_text() == "ok\n"
