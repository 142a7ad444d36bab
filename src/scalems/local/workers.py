"""Warm Python worker processes for function tasks.

Starting an interpreter per call costs tens of milliseconds; a worker that
stays up makes a small call cost well under a millisecond. Each worker runs
:mod:`scalems.local.worker` and executes serialized calls (:mod:`scalems.call`
records) one after the other, exchanged over a pair of pipes as
length-prefixed UTF-8 text.

Replies are read by an event-loop reader callback (no thread, no per-call
stream machinery). Each worker may hold one queued call behind the running
one, so it never waits for the parent between calls; a queued call is not
running, so this does not oversubscribe cores.

A worker that dies (a segfault, ``os._exit`` in user code, the OOM killer)
fails only the call it was running; calls queued behind it go to another
worker, and a fresh worker replaces it. Cancelling a running call kills its
worker.
"""

from __future__ import annotations

__all__ = ("WorkerPool", "WorkerDied")

import asyncio
import collections
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

#: Calls a worker may hold: the running one plus this many queued.
QUEUE_DEPTH = 2

#: Larger records are only sent to an idle worker, so a pipe write never blocks the event loop.
PIPELINE_LIMIT = 32 * 1024


class WorkerDied(RuntimeError):
    """The worker process exited while running a call."""


class _Call:
    __slots__ = ("text", "future", "abandoned")

    def __init__(self, text: str, future: asyncio.Future):
        self.text = text
        self.future = future
        self.abandoned = False


class _Worker:
    def __init__(self, process: subprocess.Popen, to_worker: int, from_worker: int):
        self.process = process
        self.to_worker = to_worker
        self.from_worker = from_worker
        self.buffer = bytearray()
        self.pending: collections.deque = collections.deque()
        self.alive = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, text: str) -> None:
        data = text.encode("utf-8")
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.to_worker, view) :]

    def frames(self) -> typing.Iterator[str]:
        buffer = self.buffer
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            text = buffer[_HEADER.size : end].decode("utf-8")
            del buffer[:end]
            yield text

    def describe_exit(self) -> str:
        status = self.process.poll()
        if status is None:
            return "stopped answering"
        if status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = str(-status)
            return f"was killed by signal {name}"
        return f"exited with status {status}"


class WorkerPool:
    """Up to *size* warm workers; :meth:`run` executes one call record on one of them."""

    def __init__(self, size: int, *, cwd: typing.Optional[str] = None):
        self.size = max(1, int(size))
        self._cwd = cwd
        self._workers: list = []
        self._waiters: collections.deque = collections.deque()
        self._closed = False

    # ---- process management ------------------------------------------------------------------
    def _spawn(self) -> _Worker:
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
        except BaseException:
            for fd in (parent_read, parent_write):
                os.close(fd)
            raise
        finally:
            os.close(child_read)
            os.close(child_write)
        os.set_blocking(parent_read, False)
        worker = _Worker(process, parent_write, parent_read)
        asyncio.get_running_loop().add_reader(parent_read, self._on_readable, worker)
        self._workers.append(worker)
        return worker

    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.from_worker, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(worker)
            return
        worker.buffer += data
        for reply in worker.frames():
            call = worker.pending.popleft()
            if not call.future.done():
                call.future.set_result(reply)
        self._wake_waiters()

    def _lost(self, worker: _Worker, reason: typing.Optional[str] = None) -> None:
        """The worker is gone (or being killed): fail its running call, re-queue the calls behind it."""
        if not worker.alive:
            return
        worker.alive = False
        self._workers.remove(worker)
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.from_worker)
        for fd in (worker.to_worker, worker.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        if worker.process.poll() is None:
            worker.process.kill()
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("Worker process %s did not exit after SIGKILL", worker.pid)
        pending, worker.pending = list(worker.pending), collections.deque()
        if pending:
            running, queued = pending[0], pending[1:]
            if not running.future.done():
                why = reason or f"the Python worker process (pid {worker.pid}) {worker.describe_exit()} while running this call"
                running.future.set_exception(WorkerDied(why))
            for call in queued:
                if not call.future.done() and not call.abandoned:
                    loop.create_task(self._resubmit(call))
        self._wake_waiters()

    async def _resubmit(self, call: _Call) -> None:
        try:
            reply = await self.run(call.text)
        except BaseException as error:
            if not call.future.done():
                if isinstance(error, asyncio.CancelledError):
                    call.future.cancel()
                else:
                    call.future.set_exception(error)
        else:
            if not call.future.done():
                call.future.set_result(reply)

    # ---- dispatch ------------------------------------------------------------------------------------
    def _pick(self, size: int) -> typing.Optional[_Worker]:
        best = None
        for worker in self._workers:
            load = len(worker.pending)
            if load == 0:
                return worker
            if best is None or load < len(best.pending):
                best = worker
        if len(self._workers) < self.size:
            return self._spawn()
        if best is not None and len(best.pending) < QUEUE_DEPTH and size <= PIPELINE_LIMIT:
            return best
        return None

    def _wake_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def run(self, call_text: str) -> str:
        """Execute one serialized call; return the serialized result.

        Raises:
            WorkerDied: the worker exited before replying (the call may have crashed it).
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            worker = self._pick(len(call_text))
            if worker is not None:
                break
            waiter = loop.create_future()
            self._waiters.append(waiter)
            await waiter
        call = _Call(call_text, loop.create_future())
        worker.pending.append(call)
        try:
            worker.send(call_text)
        except OSError:
            self._lost(worker)
        try:
            return await call.future
        except asyncio.CancelledError:
            if worker.alive and call in worker.pending:
                if worker.pending[0] is call:
                    self._lost(worker, reason="cancelled")  # running: stop it by killing its worker
                else:
                    call.abandoned = True  # queued: its reply will be dropped
            raise

    async def close(self, grace: float = 2.0) -> None:
        """Stop all workers: close their input (idle ones exit), then kill stragglers."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        workers = list(self._workers)
        for worker in workers:
            try:
                os.close(worker.to_worker)  # EOF: an idle worker exits on its own.
            except OSError:
                pass
            worker.to_worker = -1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for worker in workers:
            while worker.process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.01)
            if worker.alive:
                self._lost(worker, reason="the worker pool was closed")
