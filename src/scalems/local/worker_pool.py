"""Warm Python worker processes for function tasks.

Starting an interpreter per call costs tens of milliseconds; a worker that
stays up makes a small call cost well under a millisecond. Each worker runs
:mod:`scalems.local.worker_main` and executes serialized calls (:mod:`scalems.call`
records) one after the other, exchanged over a pair of pipes as
length-prefixed UTF-8 text.

Both directions are driven by event-loop callbacks (no thread, no per-call
stream machinery): calls are appended to a per-worker outbox that is written
once per loop iteration, without ever blocking the loop, and each read takes
every reply that has arrived. A worker holds queued calls behind the running
one, so it never waits for the parent between calls: two while calls take
long, :data:`QUEUE_DEPTH_SHORT` while they take less than
:data:`SHORT_CALL` seconds, so that a stream of tiny calls moves in batches
rather than one system call and one process wake-up per call. A queued call
is not running, so this does not oversubscribe cores.

A worker that dies (a segfault, ``os._exit`` in user code, the OOM killer)
fails only the call it was running; calls queued behind it go to another
worker, and a fresh worker replaces it. Cancelling a running call kills its
worker, and with it every process the call started: each worker runs in a
process group of its own, which is what gets killed (the run's
:mod:`~scalems.local.guardian` ends them all if the run itself dies).
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
import time
import typing

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")

#: Calls a worker may hold (the running one included) while calls take long.
QUEUE_DEPTH = 2

#: Calls a worker may hold while calls are short: they then travel in batches.
QUEUE_DEPTH_SHORT = 16

#: A call is short below this many seconds (a running average of recent calls).
SHORT_CALL = 0.002

#: Larger records are only sent to an idle worker, so they never wait behind another call.
PIPELINE_LIMIT = 32 * 1024


class WorkerDied(RuntimeError):
    """The worker process exited while running a call."""


class _Call:
    __slots__ = ("text", "future", "abandoned", "sent")

    def __init__(self, text: str, future: asyncio.Future, sent: float):
        self.text = text
        self.future = future
        self.abandoned = False
        self.sent = sent


class _Worker:
    def __init__(self, process: subprocess.Popen, to_worker: int, from_worker: int):
        self.process = process
        self.to_worker = to_worker
        self.from_worker = from_worker
        self.buffer = bytearray()
        self.outbox = bytearray()  # framed calls not yet written to the pipe
        self.writing = False  # a writer callback waits for room in the pipe
        self.pending: collections.deque = collections.deque()
        self.alive = True
        self.last_reply = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def queue(self, text: str) -> None:
        data = text.encode("utf-8")
        self.outbox += _HEADER.pack(len(data))
        self.outbox += data

    def write_some(self) -> bool:
        """Write what the pipe takes now (non-blocking); True when the outbox is empty."""
        outbox = self.outbox
        while outbox:
            try:
                written = os.write(self.to_worker, outbox)
            except BlockingIOError:
                return False
            del outbox[:written]
        return True

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

    def __init__(self, size: int, *, cwd: typing.Optional[str] = None, guardian=None):
        self.size = max(1, int(size))
        self._cwd = cwd
        self._guardian = guardian  # its mark goes into each worker's environment
        self._workers: list = []
        self._waiters: collections.deque = collections.deque()
        self._closed = False
        self._to_flush: list = []  # workers with calls in their outbox, written at the end of this loop turn
        self._call_time: typing.Optional[float] = None  # running average of how long calls take (s)

    @property
    def queue_depth(self) -> int:
        """Calls each worker may hold now, the running one included (see the module docstring)."""
        average = self._call_time
        return QUEUE_DEPTH_SHORT if average is not None and average < SHORT_CALL else QUEUE_DEPTH

    # ---- process management ------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        env = dict(os.environ)
        # The worker must import what the workflow script imports by name (modules next to the script).
        env["SCALEMS_WORKER_SYS_PATH"] = json.dumps([p for p in sys.path if isinstance(p, str)])
        if self._guardian is not None:
            env.update(self._guardian.environment)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "scalems.local.worker_main", str(child_read), str(child_write)],
                pass_fds=(child_read, child_write),
                cwd=self._cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            for fd in (parent_read, parent_write):
                os.close(fd)
            raise
        finally:
            os.close(child_read)
            os.close(child_write)
        os.set_blocking(parent_read, False)
        os.set_blocking(parent_write, False)
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
        now = time.monotonic()
        for reply in worker.frames():
            call = worker.pending.popleft()
            # The call began when the previous one ended, or when it was sent if the worker was idle.
            # A new worker's first reply also waited for the interpreter to start: not a sample.
            if worker.last_reply:
                self._observe(now - max(call.sent, worker.last_reply))
            worker.last_reply = now
            if not call.future.done():
                call.future.set_result(reply)
        self._wake_waiters()

    def _observe(self, seconds: float) -> None:
        average = self._call_time
        self._call_time = seconds if average is None else 0.9 * average + 0.1 * seconds

    def _flush(self) -> None:
        """Write every outbox filled during this loop turn; wait for pipe room where there is none."""
        workers, self._to_flush = self._to_flush, []
        for worker in workers:
            self._write(worker)

    def _write(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        try:
            done = worker.write_some()
        except OSError:
            self._lost(worker)
            return
        loop = asyncio.get_running_loop()
        if done and worker.writing:
            loop.remove_writer(worker.to_worker)
            worker.writing = False
        elif not done and not worker.writing:
            loop.add_writer(worker.to_worker, self._write, worker)
            worker.writing = True

    def _lost(self, worker: _Worker, reason: typing.Optional[str] = None) -> None:
        """The worker is gone (or being killed): fail its running call, re-queue the calls behind it."""
        if not worker.alive:
            return
        worker.alive = False
        self._workers.remove(worker)
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.from_worker)
        if worker.writing:
            loop.remove_writer(worker.to_worker)
            worker.writing = False
        worker.outbox.clear()
        for fd in (worker.to_worker, worker.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and whatever its call started
        except (ProcessLookupError, PermissionError):
            pass
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
        if best is not None and len(best.pending) < self.queue_depth and size <= PIPELINE_LIMIT:
            return best
        return None

    def _wake_waiters(self) -> None:
        """Let every call waiting for a worker look again (each takes a free place or waits again)."""
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def run(self, call_text: str) -> str:
        """Execute one serialized call; return the serialized result.

        Raises:
            WorkerDied: the worker exited before replying (the call may have crashed it).
        """
        return (await self.run_on(call_text))[0]

    async def run_on(self, call_text: str) -> tuple:
        """:meth:`run`, and the pid of the worker that ran the call: ``(result, pid)``."""
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
        call = _Call(call_text, loop.create_future(), time.monotonic())
        worker.pending.append(call)
        worker.queue(call_text)
        if not self._to_flush:
            loop.call_soon(self._flush)
        if worker not in self._to_flush:
            self._to_flush.append(worker)
        try:
            return await call.future, worker.pid
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
        loop = asyncio.get_running_loop()
        for worker in workers:
            if worker.writing:
                loop.remove_writer(worker.to_worker)
                worker.writing = False
            try:
                os.close(worker.to_worker)  # EOF: an idle worker exits on its own.
            except OSError:
                pass
            worker.to_worker = -1
        deadline = loop.time() + grace
        for worker in workers:
            while worker.process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.01)
            if worker.alive:
                self._lost(worker, reason="the worker pool was closed")
