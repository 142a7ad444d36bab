"""The workflow manager: the front of one run, its threads and its life cycle.

Adding a task is a one-way pipeline; each stage is a small object that owns
one concern::

    scalems.executable / scalems.submit            (the script's thread)
      -> spec        (spec.py)       normalise and validate the arguments
      -> identity    (fingerprint)   uid from the spec and input file digests
      -> cache       (cache.py)      a recorded result finishes the task now
      -> graph       (graph.py)      task state, labels, dependencies
      -> scheduler   (scheduler.py)  admission through the backend's limiter   (dispatcher loop)
      -> launcher    (launcher.py)   task -> job: directory, staging names, call
      -> backend     (scalems.execution.Backend)
      -> cache                       record the result; graph completes the task

Threads, and why:

* The *dispatcher* is an asyncio event loop in its own thread. The scheduler,
  launcher and backend live on it. Nothing the user does can block it.
* The workflow script runs in the caller's thread (the main thread under
  ``python -m scalems.local``). Adding a task fingerprints it right there, so
  mistakes surface at the script line that made them, and hands it to the
  dispatcher. ``task.result()`` blocks only the script, never the dispatcher.

The manager itself holds no task state: it starts and stops the machinery,
makes itself the current scope, and reports.
"""

from __future__ import annotations

__all__ = ("WorkflowManager",)

import asyncio
import collections
import logging
import os
import pathlib
import threading
import typing

from scalems.exceptions import ContextError
from scalems.execution.jobs import DEFAULT_RESOURCES
from scalems.store import FileStore
from .cache import ResultCache
from .fingerprint import NO_UPSTREAM, identify
from .graph import TaskGraph
from .launcher import Launcher
from .naming import TASKS_DIRNAME, TaskNames
from .scheduler import Scheduler
from .scope import pop_scope, push_scope
from .spec import FunctionSpec, TaskPolicy, executable_spec, function_spec
from .task import FINAL_STATES, Task, TaskState

logger = logging.getLogger(__name__)

__all__ += ("TASKS_DIRNAME",)


class WorkflowManager:
    """Owns one run of a workflow on one backend, in one work directory.

    Use as a context manager (``with``/``async with``), or call :meth:`start`
    and :meth:`close`. Tasks are added with :meth:`add_executable` and
    :meth:`add_function` (or the public ``scalems.executable`` / ``scalems.submit``
    while the manager is the current scope).

    Args:
        backend_factory: ``factory(manager, params) -> Backend`` creating the backend; it may
            read ``manager.directory`` and nothing else of the manager.
        params: backend configuration passed to *backend_factory*.
        directory: work directory (default: current directory).
        use_cache: if False (``--no-cache``), finished results in the record are ignored.
        progress: show a live progress line (default: only when stderr is a terminal).
    """

    def __init__(
        self,
        backend_factory: typing.Callable,
        params=None,
        *,
        directory: typing.Optional[os.PathLike] = None,
        use_cache: bool = True,
        progress: typing.Optional[bool] = None,
    ):
        self.directory = pathlib.Path(directory if directory is not None else os.getcwd()).absolute()
        self.use_cache = use_cache
        self._backend_factory = backend_factory
        self._params = params
        self._progress_enabled = progress
        self._store: typing.Optional[FileStore] = None
        self._cache: typing.Optional[ResultCache] = None
        self._backend = None
        self._graph = TaskGraph(TaskNames(self.directory))
        self._graph.blocking_check = self._check_can_block
        self._scheduler: typing.Optional[Scheduler] = None
        self._loop: typing.Optional[asyncio.AbstractEventLoop] = None
        self._thread: typing.Optional[threading.Thread] = None
        self._state = "new"
        self._scope_token = None
        self._progress = None

    # ---- life cycle --------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        interrupted = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        self.close(cancel=interrupted)
        return False

    async def __aenter__(self):
        await asyncio.to_thread(self._start_machinery)
        self._enter_scope()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        cancel = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, asyncio.CancelledError))
        self._leave_scope()
        await asyncio.to_thread(self._close_machinery, cancel)
        return False

    def datastore(self) -> FileStore:
        """The work directory's store (open while the workflow runs)."""
        if self._store is None:
            raise ContextError(f"{self!r} has not been started; its store is not open.")
        return self._store

    @property
    def backend_started(self) -> bool:
        """Whether the backend was started (it starts when the first task has to run)."""
        return self._scheduler is not None and self._scheduler.backend_state in ("running", "failed")

    @property
    def backend_status(self) -> typing.Optional[str]:
        """What the backend is busy with before it runs tasks (for the progress line), if anything."""
        return getattr(self._backend, "status", None)

    @property
    def backend_error(self) -> typing.Optional[BaseException]:
        """Why the backend could not start, if it could not."""
        return None if self._scheduler is None else self._scheduler.backend_error

    @property
    def counts(self) -> collections.Counter:
        """How many tasks were added, are in each state, and came from earlier runs (a snapshot)."""
        return collections.Counter({key: n for key, n in self._graph.counts.items() if n})

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def start(self) -> "WorkflowManager":
        """Open the work directory, start the dispatcher; make this the current scope."""
        self._start_machinery()
        self._enter_scope()
        return self

    def close(self, *, cancel: bool = False) -> None:
        """Wait for every added task to finish (or cancel them), then shut everything down.

        A second call does nothing. Ctrl-C while waiting cancels the remaining work.
        """
        self._leave_scope()
        self._close_machinery(cancel)

    def _enter_scope(self):
        self._scope_token = push_scope(self)

    def _leave_scope(self):
        if self._scope_token is not None:
            pop_scope(self, self._scope_token)
            self._scope_token = None

    def _start_machinery(self):
        if self._state != "new":
            raise RuntimeError(f"{self!r} was already started; a WorkflowManager runs once.")
        self._state = "starting"
        self.directory.mkdir(parents=True, exist_ok=True)
        store = FileStore(self.directory)
        store.open()
        self._store = store
        try:
            self._cache = ResultCache(store, use_cache=self.use_cache)
            self._backend = self._backend_factory(self, self._params)
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="scalems-dispatcher", daemon=True)
            self._thread.start()
            ready.wait()
            self._scheduler = Scheduler(self._graph, self._backend, Launcher(self._backend, self._cache), self._loop)
            self._scheduler.thread = self._thread
            self._cache.begin_run(self._backend.name, self._backend.limiter.total)
        except BaseException:
            self._stop_loop()
            store.close()
            self._state = "closed"
            raise
        self._state = "running"
        from scalems.progress import ProgressLine

        self._progress = ProgressLine.maybe_start(self, self._progress_enabled)
        logger.info("Workflow started in %s on backend %s", self.directory, self._backend.name)

    def _run_loop(self, ready: threading.Event):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _stop_loop(self):
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    def _close_machinery(self, cancel: bool):
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        if self._state == "closing":
            return
        if threading.current_thread() is self._thread:
            raise ContextError("A workflow cannot be closed from its own dispatcher thread.")
        self._state = "closing"
        interrupt = None
        try:
            if not cancel:
                try:
                    while not self._graph.idle.wait(0.5):
                        pass
                except KeyboardInterrupt as error:
                    logger.warning("Interrupted: cancelling the remaining tasks.")
                    interrupt = error
                    cancel = True
            future = asyncio.run_coroutine_threadsafe(self._shutdown(cancel), self._loop)
            while True:
                try:
                    future.result()
                    break
                except KeyboardInterrupt:
                    logger.warning("Interrupted again: still shutting down the backend; please wait.")
        finally:
            if self._progress is not None:
                self._progress.stop()
            self._stop_loop()
            if self._store is not None:
                self._store.close()
            self._state = "closed"
            logger.info("Workflow closed: %s", self.summary_line())
        if interrupt is not None:
            raise interrupt  # after a clean shutdown, so the caller still learns it was interrupted

    async def _shutdown(self, cancel: bool):
        try:
            await self._scheduler.shutdown(cancel)
        finally:
            try:
                graph = self._graph
                self._cache.end_run(graph.counts, graph.cached_uids, graph.not_done)
            finally:
                self._cache.flush()

    def _check_can_block(self, task: Task):
        if threading.current_thread() is self._thread:
            raise ContextError(
                f"Waiting for {task!r} on the scalems dispatcher thread would deadlock; use 'await task' instead."
            )
        if self._state not in ("running", "closing") and task._state not in FINAL_STATES:
            raise ContextError(f"{task!r} can never finish: its workflow is {self._state}.")

    # ---- adding work (any thread) ------------------------------------------------------------------
    def add_executable(
        self,
        argv,
        *,
        inputs=None,
        outputs=None,
        stdin=None,
        env=None,
        stdout: str = "stdout",
        stderr: str = "stderr",
        resources=None,
        label: typing.Optional[str] = None,
        member: typing.Optional[int] = None,
        timeout: typing.Optional[float] = None,
        retries: int = 0,
        resumable: bool = False,
        cache: bool = True,
    ) -> Task:
        """Add one command-line task. See :func:`scalems.executable`; *member* is its index in an ensemble."""
        self._check_open()
        policy = TaskPolicy.of(timeout, retries, resumable, cache)
        spec = executable_spec(
            argv,
            inputs=inputs,
            outputs=outputs,
            stdin=stdin,
            env=env,
            stdout=stdout,
            stderr=stderr,
            resources=resources,
            label=label,
            member=member,
            policy=policy,
        )
        return self._add("executable", spec, label)

    def add_function(
        self,
        func: typing.Callable,
        args: typing.Sequence = (),
        kwargs: typing.Optional[typing.Mapping] = None,
        *,
        resources=None,
        label: typing.Optional[str] = None,
        comm_arg: typing.Optional[str] = None,
        timeout: typing.Optional[float] = None,
        retries: int = 0,
        cache: bool = True,
    ) -> Task:
        """Add one function-call task. See :func:`scalems.function_task`."""
        # The path of every task of a large ensemble (and of its re-runs): the common call is built inline.
        if self._state != "running":
            self._check_open()
        if (
            resources is None
            and label is None
            and comm_arg is None
            and timeout is None
            and not retries
            and cache is True
            and not kwargs
            and type(args) is tuple
            and callable(func)
        ):
            spec = FunctionSpec(func, args, {}, DEFAULT_RESOURCES, None)
        else:
            policy = TaskPolicy.of(timeout, retries, False, cache)
            spec = function_spec(func, args, kwargs, resources=resources, comm_arg=comm_arg, label=label, policy=policy)
        return self._add("function", spec, label)

    def _check_open(self):
        if self._state != "running":
            raise ContextError(f"Cannot add tasks: the workflow is {self._state}.")

    def _add(self, kind: str, spec, label: typing.Optional[str]) -> Task:
        """The pipeline of the module docstring, up to the scheduler."""
        graph, cache = self._graph, self._cache
        uid = spec.plain_uid()  # the common call of a known function with plain arguments
        if uid is None:
            uid, upstream = identify(spec, cache.digest_file)
            if upstream:
                graph.check_owner(upstream.values())
        else:
            upstream = NO_UPSTREAM
        if label is not None or uid in graph.tasks:
            existing = graph.existing(uid, label)
            if existing is not None:
                return existing
        use_record = spec.policy.cache
        # The result-cache lookup, inline (the path of every task of an ensemble and its re-runs).
        found = cache.store.get_complete(uid) if use_record and cache.use_cache else None
        if found is None and kind == "function" and not upstream:
            # Encode the call now, so the task runs with the values it was fingerprinted with
            # even if the script later rebinds a closure variable or mutates an argument; a value
            # that cannot be sent to another process is reported at the script's line.
            spec.call = spec.encode(spec.args, spec.kwargs)
        recorded = found[1] if found is not None and kind == "function" else None
        resources = spec.resources
        fits = None if resources is DEFAULT_RESOURCES else self._backend.limiter.check_fits
        task = graph.add(uid, label, kind, spec, fits, recorded)
        if task.spec is not spec or recorded is not None:
            return task  # added meanwhile by another thread, or done from the record
        if not (self.use_cache and use_record):
            cache.forget(uid)  # a complete record is final unless dropped first
        elif found is not None:
            result = cache.restore_executable(task, found)
            if result is not None:
                graph.finish_cached(task, result)
                return task
        graph.expect(task)
        if upstream:
            cache.note_upstream(uid, upstream)
        self._scheduler.submit(task, list(upstream.values()) if upstream else ())
        return task

    # ---- reporting --------------------------------------------------------------------------------------
    @property
    def tasks(self) -> list:
        """All tasks added so far, in the order they were added."""
        with self._graph.lock:
            return list(self._graph.order)

    def failures(self) -> list:
        """Tasks that failed or were cancelled."""
        return [t for t in self.tasks if t.state in (TaskState.FAILED, TaskState.CANCELLED)]

    def summary_line(self) -> str:
        c = self.counts
        parts = [f"{c['done']} done"]
        if c["cached"]:
            parts.append(f"({c['cached']} from earlier runs)")
        if c["failed"]:
            parts.append(f"{c['failed']} failed")
        if c["cancelled"]:
            parts.append(f"{c['cancelled']} cancelled")
        return f"{c['added']} tasks: " + " ".join(parts)

    def __repr__(self):
        backend = self._backend.name if self._backend is not None else "?"
        return f"<WorkflowManager {self.directory} backend={backend} state={self._state}>"

