"""One RADICAL-Pilot backend for the whole test run.

Starting a session and a local pilot takes 20-30 s and closing one 5-15 s, so
the RP tests share one :class:`RadicalBackend` on ``local.localhost``
(2 cores, 15 minutes run time as a backstop, sandbox and session folder under
the confined test directories). It runs on its own event loop in a background
thread, the way the workflow layer runs it.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import pwd
import threading
import typing

import pytest

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


class Backend:
    """A running executor and the event loop thread it lives on."""

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
            raise RuntimeError("the shared RP backend was already closed by an earlier test")
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


@pytest.fixture(scope="session")
def rp_backend(tmp_path_factory) -> typing.Iterator[Backend]:
    """The shared RP backend (started on first use, closed at the end or by the clean-up test)."""
    pytest.importorskip("radical.pilot")
    from scalems.radical import RadicalBackend, RuntimeConfiguration

    base = tmp_path_factory.mktemp("rp-backend")
    before = snapshot_outside()
    configuration = RuntimeConfiguration(
        execution_target="local.localhost",
        rp_resource_params={"cores": 2, "runtime": 15, "sandbox": str(base / "sandbox")},
        session_dir=str(base / "session"),
    )
    backend = Backend(RadicalBackend(configuration=configuration, work_dir=base), base, before)
    try:
        backend.start()
        yield backend
    finally:
        backend.close()
