"""Helpers for tests that drive RadicalBackend without a workflow: jobs, and a backend on its own loop."""

import asyncio
import os
import pathlib
import pwd
import threading
import typing

from scalems.execution import ExecutableJob

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
