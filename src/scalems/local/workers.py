"""Warm Python worker processes for function tasks.

Starting an interpreter per call costs tens of milliseconds; a worker that
stays up makes a small call cost well under a millisecond. Each worker runs
:mod:`scalems.local.worker` and executes one serialized call
(:mod:`scalems.call` record) at a time, exchanged over a pair of pipes as
length-prefixed UTF-8 text. The event loop reads replies directly from the
pipe, so there is no thread hop per call.

A worker that dies (a segfault, ``os._exit`` in user code, the OOM killer)
fails only the call it was running; a fresh worker replaces it. Cancelling a
call kills its worker.
"""

from __future__ import annotations

__all__ = ("WorkerPool", "WorkerDied")

import asyncio
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import typing

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")


class WorkerDied(RuntimeError):
    """The worker process exited while running a call."""


class _Worker:
    def __init__(self, process: subprocess.Popen, to_worker: int, reader: asyncio.StreamReader, transport):
        self.process = process
        self.to_worker = to_worker
        self.reader = reader
        self.transport = transport

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, text: str) -> None:
        data = text.encode("utf-8")
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            written = os.write(self.to_worker, view)
            view = view[written:]

    async def receive(self) -> str:
        header = await self.reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        data = await self.reader.readexactly(size)
        return data.decode("utf-8")

    def kill(self, grace: float = 0.0) -> None:
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGKILL if grace <= 0 else signal.SIGTERM)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        try:
            os.close(self.to_worker)
        except OSError:
            pass
        self.transport.close()


class WorkerPool:
    """Up to *size* warm workers; :meth:`run` executes one call record on an idle one."""

    def __init__(self, size: int, *, cwd: typing.Optional[str] = None):
        self.size = max(1, int(size))
        self._cwd = cwd
        self._idle: list = []
        self._all: set = set()
        self._waiters: list = []
        self._closed = False

    async def _spawn(self) -> _Worker:
        loop = asyncio.get_running_loop()
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        env = dict(os.environ)
        # The worker must import what the workflow script imports by name (modules next to the script).
        env["SCALEMS_WORKER_SYS_PATH"] = json.dumps([p for p in sys.path if isinstance(p, str)])
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "scalems.local.worker", str(child_read), str(child_write)],
                pass_fds=(child_read, child_write),
                cwd=self._cwd,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        reader = asyncio.StreamReader(limit=1 << 30)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(parent_read, "rb", buffering=0)
        )
        worker = _Worker(process, parent_write, reader, transport)
        self._all.add(worker)
        return worker

    async def _acquire(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        if len(self._all) < self.size:
            return await self._spawn()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def _release(self, worker: _Worker) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        worker.close()
        self._all.discard(worker)
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("Worker process %s did not exit after SIGKILL", worker.pid)
        if self._waiters and not self._closed:
            # Someone is waiting for a worker: replace the one we lost.
            waiter = self._waiters.pop(0)

            async def replace():
                try:
                    new = await self._spawn()
                except Exception as error:
                    if not waiter.done():
                        waiter.set_exception(error)
                else:
                    if not waiter.done():
                        waiter.set_result(new)
                    else:
                        self._release(new)

            asyncio.get_running_loop().create_task(replace())

    async def run(self, call_text: str) -> str:
        """Execute one serialized call; return the serialized result.

        Raises:
            WorkerDied: the worker exited before replying (the call may have crashed it).
        """
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        worker = await self._acquire()
        try:
            worker.send(call_text)
            reply = await worker.receive()
        except asyncio.CancelledError:
            self._discard(worker)
            raise
        except (asyncio.IncompleteReadError, BrokenPipeError, ConnectionError) as error:
            self._discard(worker)
            status = worker.process.returncode
            how = f"was killed by signal {-status}" if status is not None and status < 0 else f"exited with status {status}"
            raise WorkerDied(f"the Python worker process (pid {worker.pid}) {how} while running this call") from error
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        return reply

    async def close(self, grace: float = 2.0) -> None:
        """Stop all workers: close their input (they exit), then kill stragglers."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        workers = list(self._all)
        self._all.clear()
        self._idle.clear()
        for worker in workers:
            try:
                os.close(worker.to_worker)  # EOF: an idle worker exits on its own.
            except OSError:
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for worker in workers:
            while worker.process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.01)
            if worker.process.poll() is None:
                worker.kill()
                await asyncio.to_thread(worker.process.wait)
            worker.transport.close()
