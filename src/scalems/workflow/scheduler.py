"""The scheduler: which ready task starts next, on the dispatcher's event loop.

Tasks arrive from any thread (:meth:`Scheduler.submit`) and are linked into
the graph on the loop. A task whose inputs are done is *ready*; the
scheduler starts ready tasks in order while the backend's limiter admits
them, and starts the backend itself only when the first task has to run (a
re-run whose results are all recorded never opens a session or queues a
pilot job). It knows no capacity of its own: the limiter is the budget.
"""

from __future__ import annotations

__all__ = ("Scheduler",)

import asyncio
import collections
import logging
import threading
import typing

from scalems.exceptions import DispatchError, TaskCancelledError, TaskFailedError
from scalems.execution.backend import Backend
from scalems.execution.waiting import wait_within
from .graph import TaskGraph
from .launcher import Launcher
from .task import Task, TaskState

logger = logging.getLogger(__name__)

#: Seconds between refreshes of a live run's counts in the run history (for ``status``).
REFRESH_INTERVAL = 2.0


class Scheduler:
    """Admits ready tasks to the backend through its limiter and completes them in the graph."""

    def __init__(self, graph: TaskGraph, backend: Backend, launcher: Launcher, loop: asyncio.AbstractEventLoop):
        self.graph = graph
        self.backend = backend
        self.launcher = launcher
        self.loop = loop
        self.thread: typing.Optional[threading.Thread] = None  # the loop's thread, set when it runs
        self._incoming: collections.deque = collections.deque()
        self._wake_pending = False
        self._ready: collections.deque = collections.deque()
        self._running: dict = {}  # Task -> asyncio.Task of its attempt
        self.accepting = True
        # new -> starting -> running | failed
        self.backend_state = "new"
        self._backend_starter: typing.Optional[asyncio.Task] = None
        self.backend_error: typing.Optional[BaseException] = None
        self._refresh: typing.Optional[asyncio.TimerHandle] = None
        graph.release = self.release

    # ---- any thread ---------------------------------------------------------------------------
    def submit(self, task: Task, upstream: typing.Iterable[Task]) -> None:
        """Schedule *task* once the tasks in *upstream* are done."""
        self._incoming.append((task, upstream))
        if not self._wake_pending:
            self._wake_pending = True
            self.loop.call_soon_threadsafe(self._drain_incoming)

    def release(self, task: Task, dependents: list) -> None:
        """*task* finished: its dependents may be ready (or fail with it)."""
        if threading.current_thread() is not self.thread:
            self.loop.call_soon_threadsafe(self._release, task, dependents)
        else:
            self._release(task, dependents)

    # ---- the loop -------------------------------------------------------------------------------
    def _release(self, task: Task, dependents: list) -> None:
        ready = self.graph.released(task, dependents)
        if ready:
            self._ready.extend(ready)
            self._pump()

    def _drain_incoming(self) -> None:
        self._wake_pending = False
        incoming = self._incoming
        link = self.graph.link
        ready = self._ready
        while incoming:
            task, upstream = incoming.popleft()
            if link(task, upstream):
                ready.append(task)
        self._pump()

    def _pump(self) -> None:
        if not self.accepting or not self._ready:
            return
        if self.backend_state != "running":
            if self.backend_state == "new":
                self.backend_state = "starting"
                self._backend_starter = self.loop.create_task(self._start_backend())
            elif self.backend_state == "failed":
                self._fail_ready(self.backend_error)
            return
        limiter = self.backend.limiter
        ready = self._ready
        start = self.graph.start
        while ready:
            task = ready[0]
            if task._state is not TaskState.READY:
                ready.popleft()
                continue
            if not limiter.try_acquire(task.kind, task.spec.resources):
                break
            ready.popleft()
            start(task)
            self._running[task] = self.loop.create_task(self._execute(task))

    async def _start_backend(self) -> None:
        try:
            await self.backend.__aenter__()
        except asyncio.CancelledError:
            self.backend_state = "failed"
            self.backend_error = DispatchError(f"the {self.backend.name} backend start was cancelled")
            raise
        except Exception as error:
            logger.debug("Backend start-up failed", exc_info=True)
            self.backend_state = "failed"
            self.backend_error = error
        else:
            self.backend_state = "running"
            logger.info("Backend %s is running", self.backend.name)
            self._refresh_history()
        self._pump()

    def _refresh_history(self) -> None:
        """Every few seconds while tasks run: the live counts, for ``status`` in another process."""
        if not self.accepting:
            return
        self.launcher.cache.refresh_run(self.graph.counts, [task.label for task in self._running])
        self._refresh = self.loop.call_later(REFRESH_INTERVAL, self._refresh_history)

    def _fail_ready(self, error: BaseException) -> None:
        """The backend cannot run anything: fail every task that is ready to run."""
        while self._ready:
            task = self._ready.popleft()
            failure = TaskFailedError(task.label, uid=task.uid, reason=f"the {self.backend.name} backend could not start: {error}")
            failure.__cause__ = error
            self.graph.complete(task, TaskState.FAILED, exception=failure)

    async def _execute(self, task: Task) -> None:
        graph = self.graph
        try:
            result = await self._attempts(task)
        except asyncio.CancelledError:
            graph.complete(task, TaskState.CANCELLED, exception=TaskCancelledError(task.label, uid=task.uid))
        except TaskFailedError as error:
            graph.complete(task, TaskState.FAILED, exception=error)
        except Exception as error:
            logger.exception("Internal error while running %s", task.label)
            failure = TaskFailedError(task.label, uid=task.uid, reason=f"internal error in scalems: {error!r}")
            failure.__cause__ = error
            graph.complete(task, TaskState.FAILED, exception=failure)
        else:
            graph.complete(task, TaskState.DONE, result=result)
        finally:
            self._running.pop(task, None)
            graph.ended(task)
            self.backend.limiter.release(task.kind, task.spec.resources)
            self._pump()

    async def _attempts(self, task: Task):
        """Run attempts until one succeeds or the task's retries are used up; the last failure is raised."""
        policy = task.spec.policy
        attempt = 1
        while True:
            try:
                return await self._attempt(task, attempt, policy.timeout)
            except TaskFailedError as error:
                if attempt > policy.retries:
                    if attempt > 1:
                        error.after_attempts(attempt)
                    raise
                logger.warning("%s (attempt %d of %d); running it again.", error, attempt, policy.retries + 1)
                attempt += 1

    async def _attempt(self, task: Task, attempt: int, timeout: typing.Optional[float]):
        """One attempt, stopped at the time limit (the backend ends its processes when cancelled)."""
        if timeout is None:
            try:
                return await self.launcher.run(task, attempt)
            except asyncio.CancelledError:
                self.launcher.cancelled(task, attempt)
                raise
        run = asyncio.ensure_future(self.launcher.run(task, attempt))
        try:
            return await wait_within(run, timeout)  # cancels *run* on a timeout or a cancellation
        except asyncio.TimeoutError:
            await asyncio.gather(run, return_exceptions=True)  # the backend ends the attempt's processes
            raise self.launcher.timed_out(task, timeout, attempt) from None
        except asyncio.CancelledError:
            await asyncio.gather(run, return_exceptions=True)
            self.launcher.cancelled(task, attempt)
            raise

    async def shutdown(self, cancel: bool) -> None:
        """Stop scheduling (cancelling what has not finished if *cancel*), then leave the backend."""
        self._drain_incoming()
        if cancel:
            for task in self.graph.unstarted():
                self.graph.complete(task, TaskState.CANCELLED, exception=TaskCancelledError(task.label, uid=task.uid))
            self._ready.clear()
            running = list(self._running.values())
            for job in running:
                job.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        self.accepting = False
        if self._refresh is not None:
            self._refresh.cancel()
        if self.backend_state == "starting":
            self._backend_starter.cancel()
            await asyncio.gather(self._backend_starter, return_exceptions=True)
        if self.backend_state == "running":
            await self.backend.__aexit__(None, None, None)
