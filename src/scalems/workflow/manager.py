"""The workflow manager: task graph, result cache, and the dispatcher thread.

Threads, and why:

* The *dispatcher* is an asyncio event loop in its own thread. It owns the
  backend, starts ready tasks within the resource budget, and completes
  task handles. Nothing the user does can block it.
* The workflow script runs in the caller's thread (the main thread under
  ``python -m scalems.local``). Adding a task fingerprints it right there,
  so mistakes surface at the script line that made them, and hands it to the
  dispatcher. ``task.result()`` blocks only the script, never the dispatcher.

Task state changes happen under one lock per manager. Nobody sleeps on that
lock: a thread waiting in ``result()`` or ``scalems.wait`` registers a
done-callback on the tasks it waits for, so a completion wakes only the
threads that wait for it, and ``close()`` waits for an event set when the last
unfinished task ends.
"""

from __future__ import annotations

__all__ = ("WorkflowManager",)

import asyncio
import collections
import functools
import itertools
import json
import logging
import os
import pathlib
import re
import threading
import typing

from scalems.exceptions import (
    ContextError,
    DispatchError,
    DuplicateKeyError,
    ProtocolError,
    TaskCancelledError,
    TaskFailedError,
    UpstreamFailedError,
)
from scalems.execution.jobs import (
    DEFAULT_RESOURCES,
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    Resources,
)
from scalems.file import FileReference, OutputFile
from scalems.store import FileStore
from .fingerprint import Encoder
from .scope import pop_scope, push_scope
from .spec import ExecutableSpec, FunctionSpec, normalize_argv
from .task import FINAL_STATES, Ensemble, ExecutableResult, Task, TaskState, _invoke_callback, decode_function_result

logger = logging.getLogger(__name__)

#: Seconds within which finished tasks are committed to the record (writes are batched).
FLUSH_DELAY = 0.2

#: Where task working directories go, under the work directory.
TASKS_DIRNAME = "scalems_tasks"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


#: Digits of the uid in a default label (``name-1a2b3c4d``); more where two tasks share them.
_LABEL_DIGITS = 8

#: The upstream tasks of a task whose arguments are plain values (read, never changed).
_NO_UPSTREAM: dict = {}


def _safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "task"


@functools.lru_cache(maxsize=256)
def _safe_prefix(name: str) -> str:
    """:func:`_safe_name` of a function or program name (few distinct ones, each used many times)."""
    return _safe_name(name)


class WorkflowManager:
    """Owns one run of a workflow on one backend, in one work directory.

    Use as a context manager (``with``/``async with``), or call :meth:`start`
    and :meth:`close`. Tasks are added with :meth:`add_executable` and
    :meth:`add_function` (or the public ``scalems.executable`` / ``scalems.submit``
    while the manager is the current scope).

    Args:
        executor_factory: ``factory(manager, params) -> RuntimeManager`` creating the backend.
        params: backend configuration passed to *executor_factory*.
        directory: work directory (default: current directory).
        use_cache: if False (``--no-cache``), finished results in the record are ignored.
        progress: show a live progress line (default: only when stderr is a terminal).
    """

    def __init__(
        self,
        executor_factory: typing.Callable,
        params=None,
        *,
        directory: typing.Optional[os.PathLike] = None,
        use_cache: bool = True,
        progress: typing.Optional[bool] = None,
    ):
        self.directory = pathlib.Path(directory if directory is not None else os.getcwd()).absolute()
        self.use_cache = use_cache
        self._executor_factory = executor_factory
        self._params = params
        self._progress_enabled = progress
        self._store: typing.Optional[FileStore] = None
        self._backend = None
        self._lock = threading.RLock()  # guards task states, the task tables and counts
        self._tasks: dict = {}
        self._labels: dict = {}
        self._dir_owner: dict = {}  # task directory name -> the label that has it
        self._dir_renamed: dict = {}  # label -> directory name, where its own name was taken
        self._order: list = []
        self._loop: typing.Optional[asyncio.AbstractEventLoop] = None
        self._thread: typing.Optional[threading.Thread] = None
        self._incoming: collections.deque = collections.deque()
        self._wake_pending = False
        self._ready: collections.deque = collections.deque()
        self._running: dict = {}
        self._capacity: typing.Optional[Resources] = None
        self._cores_in_use = 0
        self._gpus_in_use = 0
        self._unfinished = 0
        # Set while no added task is unfinished; close() waits on it. A completion wakes no
        # thread unless it is the last one (or a waiter registered on that task).
        self._idle = threading.Event()
        self._idle.set()
        self._state = "new"
        self._scope_token = None
        # Task counts by state, plus "added" and "cached"; a plain dict, updated on every task.
        self._counts = dict.fromkeys(("added", "cached", *(state.value for state in TaskState)), 0)
        self._progress = None
        self._flush_scheduled = False
        # The backend starts when the first task needs it: a re-run whose results are all
        # recorded never starts a session (or queues a pilot job on a batch system).
        self._backend_state = "new"
        self._backend_starter: typing.Optional[asyncio.Task] = None
        self.backend_error: typing.Optional[BaseException] = None

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
        return self._backend_state in ("running", "failed")

    @property
    def counts(self) -> collections.Counter:
        """How many tasks were added, are in each state, and came from earlier runs (a snapshot)."""
        return collections.Counter({key: n for key, n in self._counts.items() if n})

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def start(self) -> "WorkflowManager":
        """Open the work directory, start the dispatcher and the backend; make this the current scope."""
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
        self._digest_file = store.file_digest
        try:
            self._backend = self._executor_factory(self, self._params)
            self._capacity = self._backend.capacity()
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="scalems-dispatcher", daemon=True)
            self._thread.start()
            ready.wait()
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
                    while not self._idle.wait(0.5):
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
        self._drain_incoming()
        if cancel:
            with self._lock:
                pending = [t for t in self._order if t._state in (TaskState.WAITING, TaskState.READY)]
            for task in pending:
                self._complete(task, TaskState.CANCELLED, exception=TaskCancelledError(task.label, uid=task.uid))
            self._ready.clear()
            running = list(self._running.values())
            for job in running:
                job.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        try:
            if self._backend_state == "starting":
                self._backend_starter.cancel()
                await asyncio.gather(self._backend_starter, return_exceptions=True)
            if self._backend_state == "running":
                await self._backend.__aexit__(None, None, None)
        finally:
            self._store.flush()

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
    ) -> Task:
        """Add one command-line task. See :func:`scalems.executable`."""
        self._check_open()
        if isinstance(stdin, (list, tuple)):
            stdin = "".join(line if line.endswith("\n") else line + "\n" for line in stdin)
        elif stdin is not None and not isinstance(stdin, str):
            raise TypeError(f"stdin must be text or a list of lines, got {type(stdin).__name__}")
        env = {str(k): str(v) for k, v in (env or {}).items()}
        for name in (stdout, stderr):
            OutputFile(name)  # validates: relative, inside the task directory
        if stdout == stderr:
            raise ValueError(f"stdout and stderr must be different files (both are {stdout!r})")
        spec = ExecutableSpec(
            argv=normalize_argv(argv, inputs=inputs, outputs=outputs),
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            resources=Resources.coerce(resources),
        )
        clash = set(spec.outputs()) & {stdout, stderr}
        if clash:
            raise ValueError(f"output file name(s) {sorted(clash)} clash with the stdout/stderr file names")
        default_name = os.path.basename(str(spec.argv[0])) if isinstance(spec.argv[0], str) else spec.argv[0].name
        return self._add("executable", spec, label, default_name)

    def add_function(
        self,
        func: typing.Callable,
        args: typing.Sequence = (),
        kwargs: typing.Optional[typing.Mapping] = None,
        *,
        resources=None,
        label: typing.Optional[str] = None,
        comm_arg: typing.Optional[str] = None,
    ) -> Task:
        """Add one function-call task. See :func:`scalems.function_task`."""
        # This is the path of every task of a large ensemble (and of its re-runs): kept lean.
        if self._state != "running":
            self._check_open()
        if not callable(func):
            raise TypeError(f"the first argument must be a callable, got {type(func).__name__}")
        if resources is None:
            resources = DEFAULT_RESOURCES
        else:
            resources = Resources.coerce(resources)
            if resources.ranks > 1 and comm_arg is None:
                comm_arg = "comm"
        spec = FunctionSpec(
            func,
            args if type(args) is tuple else tuple(args),
            dict(kwargs) if kwargs else {},
            resources,
            comm_arg,
        )
        name = getattr(func, "__name__", None) or type(func).__name__
        return self._add("function", spec, label, name)

    def _check_open(self):
        if self._state != "running":
            raise ContextError(f"Cannot add tasks: the workflow is {self._state}.")

    def _add(self, kind: str, spec, label: typing.Optional[str], default_name: str) -> Task:
        uid = spec.plain_uid() if kind == "function" else None
        if uid is not None:
            upstream = _NO_UPSTREAM
        else:
            encoder = Encoder(self._digest_file)
            uid = spec.uid(encoder)
            upstream = encoder.upstream
            for task in upstream.values():
                if task._manager is not self:
                    raise ContextError(f"{task!r} belongs to another workflow and cannot be an input here.")
        if label is not None or uid in self._tasks:
            existing = self._existing(uid, label)
            if existing is not None:
                return existing
        found = self._store.get_complete(uid) if self.use_cache else None
        if found is None and kind == "function" and not upstream:
            # Encode the call now, so the task runs with the values it was fingerprinted with
            # even if the script later rebinds a closure variable or mutates an argument; a value
            # that cannot be sent to another process is reported at the script's line.
            spec.call = _serialize_call(spec, spec.args, spec.kwargs)
        with self._lock:
            if uid in self._tasks or (label is not None and label in self._labels):
                existing = self._existing(uid, label)  # added meanwhile by another thread
                if existing is not None:
                    return existing
            if label is None:
                label = f"{_safe_prefix(default_name)}-{uid[:_LABEL_DIGITS]}"
                if label in self._labels:  # another task's uid starts alike: likely among ~100k tasks
                    label = self._longer_label(default_name, uid)
                dirname = label  # already safe
            else:
                dirname = _safe_name(label)
            if spec.resources is not DEFAULT_RESOURCES:
                self._backend.check_fits(label, spec.resources)
            task = Task(self, uid, label, kind, spec)
            self._tasks[uid] = task
            self._labels[label] = uid
            if self._dir_owner.setdefault(dirname, label) != label:  # labels differing only in unsafe characters
                self._dir_renamed[label] = f"{dirname}-{uid[:8]}"
            self._order.append(task)
            counts = self._counts
            counts["added"] += 1
            if found is not None and kind == "function":
                # A recorded function result: done now, decoded when first asked for.
                task._cached = True
                task._recorded = found[1]
                task._state = TaskState.DONE
                counts["cached"] += 1
                counts["done"] += 1
                return task
        if not self.use_cache:
            self._store.forget_task(uid)  # a complete record is final unless dropped first
        elif found is not None and self._finish_from_record(task, found):
            return task
        with self._lock:
            self._unfinished += 1
            if self._unfinished == 1:
                self._idle.clear()
        self._incoming.append((task, list(upstream.values())))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain_incoming)
        return task

    def _longer_label(self, name: str, uid: str) -> str:
        """A default label with more of the uid, for a task whose short one is taken (call with the lock)."""
        prefix = _safe_prefix(name)
        for digits in (16, len(uid)):
            label = f"{prefix}-{uid[:digits]}"
            if label not in self._labels:
                return label
        return next(f"{label}-{n}" for n in itertools.count(2) if f"{label}-{n}" not in self._labels)

    def _existing(self, uid: str, label: typing.Optional[str]) -> typing.Optional[Task]:
        """The task already added for *uid* (a second label becomes its alias); checks label clashes."""
        with self._lock:
            existing = self._tasks.get(uid)
            if label is not None and self._labels.get(label, uid) != uid:
                raise DuplicateKeyError(
                    f"Label {label!r} is already used by a different task in this workflow; labels must be unique."
                )
            if existing is not None and label is not None:
                self._labels[label] = uid
            return existing

    def _task_directory(self, label: str) -> pathlib.Path:
        name = self._dir_renamed.get(label) or _safe_name(label)
        return pathlib.Path(os.path.join(self.directory, TASKS_DIRNAME, name))

    # ---- the result cache --------------------------------------------------------------------------
    def _finish_from_record(self, task: Task, found: tuple) -> bool:
        """Complete a new executable task from its record (``get_complete``); False if that is unusable.

        A new task has no dependents or callbacks yet, so this is only a state change.
        """
        kind, recorded, files = found
        result = self._restore_executable(task, recorded, files)
        if result is None:
            return False
        with self._lock:
            task._cached = True
            task._finish(TaskState.DONE, result, None)
            self._counts["cached"] += 1
            self._counts["done"] += 1
        return True

    def _restore_executable(self, task: Task, recorded: bytes, files: dict) -> typing.Optional[ExecutableResult]:
        """The recorded result of an executable, with its output files put back if they were removed."""
        try:
            info = json.loads(recorded)
            for name, file_record in files.items():
                path = task.directory / name
                try:
                    intact = path.stat().st_size == file_record.size
                except OSError:
                    intact = False
                if not intact:
                    if not self._store.has_file(file_record.digest):
                        logger.info("Cached output %s of %s is gone; running it again.", name, task.label)
                        self._store.forget_task(task.uid)
                        return None
                    self._store.restore_file(file_record.digest, path)
            return _executable_result(task, info["exitcode"])
        except Exception as error:  # a damaged record never stops a run: compute again.
            logger.warning("Ignoring unusable cached result of %s: %s", task.label, error)
            self._store.forget_task(task.uid)
            return None

    # ---- dispatcher-side graph handling (event loop thread) ----------------------------------------
    def _drain_incoming(self):
        self._wake_pending = False
        incoming = self._incoming
        while incoming:
            task, upstream = incoming.popleft()
            if task._state is not TaskState.WAITING:
                continue  # cancelled before it reached the dispatcher
            failed = None
            for dep in upstream:
                if dep._state is TaskState.DONE:
                    continue
                if dep._state in FINAL_STATES:
                    failed = dep
                    break
                task._waiting_on += 1
                if dep._dependents is None:
                    dep._dependents = []
                dep._dependents.append(task)
            if failed is not None:
                self._fail_downstream(task, failed)
            elif task._waiting_on == 0:
                self._make_ready(task)
        self._pump()

    def _make_ready(self, task: Task):
        with self._lock:
            if task._state is not TaskState.WAITING:
                return
            task._state = TaskState.READY
        self._ready.append(task)

    def _pump(self):
        if self._state not in ("running", "closing") or not self._ready:
            return
        if self._backend_state != "running":
            if self._backend_state == "new":
                self._backend_state = "starting"
                self._backend_starter = self._loop.create_task(self._start_backend())
            elif self._backend_state == "failed":
                self._fail_ready(self.backend_error)
            return
        capacity = self._capacity
        ready = self._ready
        while ready:
            task = ready[0]
            if task._state is not TaskState.READY:
                ready.popleft()
                continue
            resources = task.spec.resources
            if capacity is not None and self._cores_in_use:
                cores = capacity.cores
                if task.kind == "function" and resources.cores == 1 and not resources.gpus:
                    cores += self._backend.prefetch
                if self._cores_in_use + resources.cores > cores or self._gpus_in_use + resources.gpus > capacity.gpus:
                    break
            ready.popleft()
            self._cores_in_use += resources.cores
            self._gpus_in_use += resources.gpus
            with self._lock:
                task._state = TaskState.RUNNING
            self._counts["running"] += 1
            self._running[task] = self._loop.create_task(self._execute(task))

    async def _start_backend(self):
        try:
            await self._backend.__aenter__()
        except asyncio.CancelledError:
            self._backend_state = "failed"
            self.backend_error = DispatchError(f"the {self._backend.name} backend start was cancelled")
            raise
        except Exception as error:
            logger.debug("Backend start-up failed", exc_info=True)
            self._backend_state = "failed"
            self.backend_error = error
        else:
            self._backend_state = "running"
            self._capacity = self._backend.capacity()
            logger.info("Backend %s is running", self._backend.name)
        self._pump()

    def _fail_ready(self, error: BaseException):
        """The backend cannot run anything: fail every task that is ready to run."""
        while self._ready:
            task = self._ready.popleft()
            failure = TaskFailedError(task.label, uid=task.uid, reason=f"the {self._backend.name} backend could not start: {error}")
            failure.__cause__ = error
            self._complete(task, TaskState.FAILED, exception=failure)

    async def _execute(self, task: Task):
        resources = task.spec.resources
        try:
            if task.kind == "executable":
                result = await self._execute_executable(task)
            else:
                result = await self._execute_function(task)
        except asyncio.CancelledError:
            self._complete(task, TaskState.CANCELLED, exception=TaskCancelledError(task.label, uid=task.uid))
        except TaskFailedError as error:
            self._record_failure(task, error)
            self._complete(task, TaskState.FAILED, exception=error)
        except Exception as error:
            logger.exception("Internal error while running %s", task.label)
            failure = TaskFailedError(task.label, uid=task.uid, reason=f"internal error in scalems: {error!r}")
            failure.__cause__ = error
            self._complete(task, TaskState.FAILED, exception=failure)
        else:
            self._complete(task, TaskState.DONE, result=result)
        finally:
            self._running.pop(task, None)
            self._counts["running"] -= 1
            self._cores_in_use -= resources.cores
            self._gpus_in_use -= resources.gpus
            self._pump()

    def _prepare_directory(self, task: Task):
        """Give the attempt an empty working directory (removing what an earlier attempt left)."""
        directory = task.directory
        try:
            os.mkdir(directory)
            return
        except FileNotFoundError:
            directory.mkdir(parents=True)
            return
        except FileExistsError:
            pass
        if directory.is_dir() and not directory.is_symlink():
            import shutil  # only to clear what an earlier attempt left

            shutil.rmtree(directory)
        else:
            directory.unlink()
        os.mkdir(directory)

    async def _execute_executable(self, task: Task) -> ExecutableResult:
        # String paths (os.path) rather than pathlib here: this runs once per task, and the
        # pathlib operations alone cost more than spawning a short program's bookkeeping.
        spec: ExecutableSpec = task.spec
        self._prepare_directory(task)
        directory = os.fspath(task.directory)
        join = os.path.join
        stdin_path = None
        if spec.stdin is not None:
            stdin_path = pathlib.Path(directory, ".scalems-stdin")
            stdin_path.write_text(spec.stdin)
        argv = []
        staged_names = set()
        for item in spec.argv:
            if type(item) is str:
                argv.append(item)
            elif isinstance(item, OutputFile):
                argv.append(item.name)
            else:
                source = pathlib.Path(item.path()) if isinstance(item, FileReference) else item
                name = source.name
                if name in staged_names:
                    name = f"{len(staged_names)}-{name}"
                staged_names.add(name)
                argv.append(InputFile(source=source, name=name))
        outputs = spec.outputs()
        job = ExecutableJob(
            uid=task.uid,
            label=task.label,
            directory=task.directory,
            argv=argv,
            env=spec.env,
            stdin=stdin_path,
            stdout=spec.stdout,
            stderr=spec.stderr,
            outputs=list(outputs),
            resources=spec.resources,
        )
        outcome = await self._backend.run(job)
        if not isinstance(outcome, ExecutableOutcome):
            raise ProtocolError(f"backend returned {type(outcome).__name__} for an executable job")
        exitcode = outcome.exitcode
        if outcome.error is not None or exitcode != 0:
            raise TaskFailedError(
                task.label, uid=task.uid, exitcode=exitcode, reason=outcome.error or "", stderr=join(directory, spec.stderr)
            )
        missing = [name for name in outputs if not os.path.exists(join(directory, name))]
        if missing:
            raise TaskFailedError(
                task.label,
                uid=task.uid,
                exitcode=0,
                reason=f"declared output file(s) not produced: {', '.join(missing)}",
                stderr=join(directory, spec.stderr),
            )
        files = await self._store_outputs(directory, (spec.stdout, spec.stderr, *outputs))
        self._record(
            task.uid,
            label=task.label,
            kind="executable",
            state="complete",
            result=b'{"exitcode":%d}' % exitcode,
            files=files,
        )
        return _executable_result(task, exitcode)

    async def _store_outputs(self, directory: str, names) -> dict:
        found, total = [], 0
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            total += st.st_size
            found.append((name, path, st))
        add = self._store.add_file
        if total < (1 << 20):
            return {name: add(path, st=st) for name, path, st in found}
        # Hashing large outputs would stall the dispatcher: do it in a thread.
        return await asyncio.to_thread(lambda: {name: add(path, st=st) for name, path, st in found})

    async def _execute_function(self, task: Task):
        spec: FunctionSpec = task.spec
        directory = None
        if spec.resources.ranks > 1 or self._backend.function_jobs_need_directory:
            self._prepare_directory(task)
            directory = task.directory
        call, spec.call = spec.call, None  # encoded when added, unless it waited for other tasks
        if call is None:
            call = _serialize_call(spec, _resolve(spec.args), _resolve(spec.kwargs))
        job = FunctionJob(
            uid=task.uid, label=task.label, call=call, directory=directory, resources=spec.resources, comm_arg=spec.comm_arg
        )
        outcome = await self._backend.run(job)
        if not isinstance(outcome, FunctionOutcome):
            raise ProtocolError(f"backend returned {type(outcome).__name__} for a function job")
        if outcome.error is not None or outcome.result is None:
            raise TaskFailedError(task.label, uid=task.uid, reason=outcome.error or "no result was returned")
        text = outcome.result if isinstance(outcome.result, str) else json.dumps(outcome.result)
        value = decode_function_result(task, text)
        self._record(task.uid, label=task.label, kind="function", state="complete", result=text.encode())
        return value

    def _record(self, uid: str, **fields):
        """Record a task outcome; the store batches writes, committed within FLUSH_DELAY seconds."""
        self._store.record_task(uid, **fields)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(FLUSH_DELAY, self._flush)

    def _flush(self):
        self._flush_scheduled = False
        try:
            self._store.flush()
        except Exception:
            logger.exception("Could not write the task record to %s", self._store.path)

    def _record_failure(self, task: Task, error: BaseException):
        try:
            self._record(task.uid, label=task.label, kind=task.kind, state="failed", error=str(error))
        except Exception:
            logger.exception("Could not record the failure of %s", task.label)

    # ---- completion ---------------------------------------------------------------------------------
    def _complete(self, task: Task, state: TaskState, result=None, exception=None):
        with self._lock:
            if task._state in FINAL_STATES:
                return
            callbacks = task._finish(state, result, exception)
            self._unfinished -= 1
            if not self._unfinished:
                self._idle.set()
            self._counts[state.value] += 1
        if callbacks:
            for fn in callbacks:
                _invoke_callback(fn, task)
        dependents, task._dependents = task._dependents, None
        if not dependents:
            return
        if threading.current_thread() is not self._thread:
            self._loop.call_soon_threadsafe(self._release_dependents, task, dependents)
        else:
            self._release_dependents(task, dependents)

    def _release_dependents(self, task: Task, dependents: list):
        if task._state is TaskState.DONE:
            for dependent in dependents:
                dependent._waiting_on -= 1
                if dependent._waiting_on == 0 and dependent._state is TaskState.WAITING:
                    self._make_ready(dependent)
            self._pump()
        else:
            for dependent in dependents:
                self._fail_downstream(dependent, task)

    def _fail_downstream(self, task: Task, failed: Task):
        root = failed._exception
        upstream = root.upstream if isinstance(root, UpstreamFailedError) else failed.label
        cause = getattr(root, "reason", "") if not isinstance(root, UpstreamFailedError) else ""
        error = UpstreamFailedError(task.label, upstream=upstream, uid=task.uid, cause=cause)
        error.__cause__ = root
        self._complete(task, TaskState.FAILED, exception=error)

    def _cancel_task(self, task: Task) -> bool:
        with self._lock:
            if task._state in FINAL_STATES:
                return task._state is TaskState.CANCELLED
            if task._state is TaskState.RUNNING:
                return False
        self._complete(task, TaskState.CANCELLED, exception=TaskCancelledError(task.label, uid=task.uid, reason="cancelled by the workflow"))
        return True

    def _check_can_block(self, task: Task):
        if threading.current_thread() is self._thread:
            raise ContextError(
                f"Waiting for {task!r} on the scalems dispatcher thread would deadlock; use 'await task' instead."
            )
        if self._state not in ("running", "closing") and task._state not in FINAL_STATES:
            raise ContextError(f"{task!r} can never finish: its workflow is {self._state}.")

    # ---- reporting --------------------------------------------------------------------------------------
    @property
    def tasks(self) -> list:
        """All tasks added so far, in the order they were added."""
        with self._lock:
            return list(self._order)

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


def _serialize_call(spec: FunctionSpec, args, kwargs) -> str:
    import scalems.call

    return scalems.call.serialize_call(
        spec.func, args=args, kwargs=kwargs, requirements=spec.resources.as_dict(), comm_arg=spec.comm_arg
    )


def _resolve(value):
    """Replace task handles and file references in call arguments by their results / paths."""
    if isinstance(value, Task):
        return value.result()
    if isinstance(value, Ensemble):
        return value.result()
    if isinstance(value, FileReference):
        return value.path()
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(_resolve(v) for v in value)
    return value


def _executable_result(task: Task, exitcode: int) -> ExecutableResult:
    spec: ExecutableSpec = task.spec
    directory = os.fspath(task.directory)
    join = os.path.join
    return ExecutableResult(
        exitcode=exitcode,
        stdout=join(directory, spec.stdout),
        stderr=join(directory, spec.stderr),
        directory=directory,
        file={name: join(directory, name) for name in spec.output_names()},
    )
