"""Shared RADICAL-Pilot backends for the whole test run, and a workflow backend that forwards to them.

Starting a session and a local pilot takes 20-30 s and closing one 5-15 s, so
tests share one backend per flavour on ``local.localhost`` (2 cores, 4 with Raptor; 60
minutes of pilot run time as a backstop, more than a whole test run: with 15
a pilot started by the first RP test ended before the contract suite's last;
sandbox and session folder under the confined test directories): ``rp_backend`` runs function tasks as
``python -m scalems.call`` tasks, ``rp_raptor_backend`` through Raptor. Each
runs on its own event loop in a background thread, the way the workflow
layer runs it, starts on first use and closes at the end of the run.
Tests that end a pilot or close a backend start a private one
(:func:`private_backend`), never one of these.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import pwd
import threading
import typing

import pytest

from scalems.execution import Backend

#: Paths RP writes to by default outside a work directory: they must not appear in the real home.
REAL_HOME = pathlib.Path(pwd.getpwuid(os.getuid()).pw_dir)
UNWANTED = [REAL_HOME / ".radical", REAL_HOME / "radical.pilot.sandbox", REAL_HOME / ".psij"]


def snapshot_outside() -> dict:
    """What exists outside the confined directories that RP could have created."""
    cwd = pathlib.Path.cwd()
    return {
        "home": {str(path): path.exists() for path in UNWANTED},
        "cwd": {p.name for p in cwd.iterdir() if p.name.startswith("rp.session.")},
    }


class SharedBackend:
    """A running RADICAL backend and the event loop thread it lives on."""

    def __init__(self, executor, base: pathlib.Path, before: dict):
        self.executor = executor
        self.base = base
        self.before = before
        self.sid: typing.Optional[str] = None
        self.closed = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rp-test-loop", daemon=True)
        self._thread.start()

    @staticmethod
    def snapshot_outside() -> dict:
        return snapshot_outside()

    def call(self, coroutine, timeout: float = 180):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, job, timeout: float = 180):
        if self.closed:
            raise RuntimeError("this RP backend was already closed")
        return self.call(self.executor.run(job), timeout)

    def start(self):
        self.call(self.executor.__aenter__(), timeout=400)
        self.sid = self.executor.runtime.uid

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.call(self.executor.__aexit__(None, None, None), timeout=400)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=30)
                self.loop.close()


def private_backend(
    base: pathlib.Path,
    *,
    enable_raptor: bool = False,
    cores: int = 2,
    resource: str = "local.localhost",
    **settings,
) -> SharedBackend:
    """A started RADICAL backend of the test's own under *base* (the caller closes it).

    *cores* and 60 minutes on *resource*; *settings* are further RuntimeConfiguration fields.
    """
    pytest.importorskip("radical.pilot")
    from scalems.radical import RadicalBackend, RuntimeConfiguration

    before = snapshot_outside()
    configuration = RuntimeConfiguration(
        execution_target=resource,
        rp_resource_params={"cores": cores, "runtime": 60, "sandbox": str(base / "sandbox")},
        session_dir=str(base / "session"),
        enable_raptor=enable_raptor,
        **settings,
    )
    backend = SharedBackend(RadicalBackend(configuration=configuration, work_dir=base), base, before)
    try:
        backend.start()
    except BaseException:
        backend.close()
        raise
    return backend


@pytest.fixture(scope="session")
def rp_backend(tmp_path_factory) -> typing.Iterator[SharedBackend]:
    """The shared RP backend without Raptor."""
    backend = private_backend(tmp_path_factory.mktemp("rp-backend"))
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def rp_raptor_backend(tmp_path_factory) -> typing.Iterator[SharedBackend]:
    """The shared RP backend with Raptor (function tasks run in scalems's Raptor workers).

    4 cores (local.localhost fakes them): the master and one worker hold two, which leaves the
    contract suite the 2 cores for programs it has on the plain flavour. With 2, a program
    running beside a call stops the pool (see scalems.radical.allocation) and the rest of the
    suite would not run through Raptor.
    """
    backend = private_backend(tmp_path_factory.mktemp("rp-raptor-backend"), enable_raptor=True, cores=4)
    try:
        yield backend
    finally:
        backend.close()


class Forwarding(Backend):
    """A workflow's backend that runs jobs on a shared backend's loop.

    Start-up and shut-down are the shared backend's business, so one pilot
    serves every workflow of the test run.
    """

    name = "radical"

    def __init__(self, shared: SharedBackend):
        super().__init__(configuration=None)
        self._shared = shared
        self.function_jobs_need_directory = shared.executor.function_jobs_need_directory
        self.limiter = shared.executor.limiter

    async def runtime_startup(self):
        return self._shared

    async def runtime_shutdown(self, runtime):
        return None

    async def _forward(self, job):
        future = asyncio.run_coroutine_threadsafe(self._shared.executor.run(job), self._shared.loop)
        return await asyncio.wrap_future(future)

    async def run_executable(self, job):
        return await self._forward(job)

    async def run_function(self, job):
        return await self._forward(job)
