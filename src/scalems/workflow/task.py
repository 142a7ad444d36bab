"""Task handles: what ``scalems.executable`` and ``scalems.submit`` return.

A :class:`Task` behaves like :class:`concurrent.futures.Future` (``result``,
``exception``, ``done``, ``cancel``, ``add_done_callback``) and can also be
awaited from any event loop. An :class:`Ensemble` is a sequence of member
tasks whose ``result()`` is the list of member results.

Handles are created and completed by their owner, the workflow's
:class:`~scalems.workflow.graph.TaskGraph`; user code only reads them. A
handle talks to its owner through four names (``lock``, ``directory_of``,
``check_can_block``, ``cancel``), and only the owner writes the underscored
state fields. Handles are kept small (``__slots__``, one shared lock per
workflow) because workflows reach 100,000 tasks.
"""

from __future__ import annotations

__all__ = ("TaskState", "FINAL_STATES", "Task", "Ensemble", "ExecutableResult", "executable_result")

import asyncio
import concurrent.futures
import dataclasses
import enum
import logging
import os
import pathlib
import threading
import typing

from scalems.exceptions import TaskFailedError
from scalems.file import FileReference

logger = logging.getLogger(__name__)


class TaskState(enum.Enum):
    """Life cycle of a task."""

    WAITING = "waiting"
    """Added; some task it depends on has not finished."""
    READY = "ready"
    """All inputs are available; waiting for resources."""
    RUNNING = "running"
    """Handed to the backend."""
    DONE = "done"
    """Finished successfully (ran now, or its result was found in the work directory)."""
    FAILED = "failed"
    """Ran and failed, or could not run because a task it needs failed."""
    CANCELLED = "cancelled"
    """Cancelled by the user or by an interrupted run."""


FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


@dataclasses.dataclass(frozen=True)
class ExecutableResult:
    """Result of a command-line task. All paths are absolute."""

    exitcode: int
    stdout: str
    stderr: str
    directory: str
    file: typing.Mapping[str, str]


def executable_result(task: "Task", exitcode: int) -> ExecutableResult:
    """The result of executable *task* that exited with *exitcode*: paths in its directory."""
    spec = task.spec
    directory = os.fspath(task.directory)
    join = os.path.join
    return ExecutableResult(
        exitcode=exitcode,
        stdout=join(directory, spec.stdout),
        stderr=join(directory, spec.stderr),
        directory=directory,
        file={name: join(directory, name) for name in spec.output_names()},
    )


class Task:
    """Handle for one task. Future-like and awaitable."""

    __slots__ = (
        "uid",
        "label",
        "kind",
        "spec",
        "_owner",
        "_state",
        "_result",
        "_exception",
        "_callbacks",
        "_dependents",
        "_waiting_on",
        "_cached",
        "_recorded",
        "_directory",
        "__weakref__",
    )

    def __init__(self, owner, uid: str, label: str, kind: str, spec):
        self.uid = uid
        self.label = label
        self.kind = kind
        self.spec = spec
        self._owner = owner
        self._state = TaskState.WAITING
        self._result = None
        self._exception: typing.Optional[BaseException] = None
        self._callbacks: typing.Optional[list] = None
        self._dependents: typing.Optional[list] = None
        self._waiting_on = 0
        self._cached = False
        self._recorded: typing.Optional[bytes] = None  # a recorded function result, decoded on first use
        self._directory: typing.Optional[pathlib.Path] = None

    # ---- queries -------------------------------------------------------------------------
    @property
    def state(self) -> TaskState:
        return self._state

    @property
    def directory(self) -> pathlib.Path:
        """The task's working directory (under the work directory's ``scalems_tasks/``)."""
        directory = self._directory
        if directory is None:
            directory = self._directory = self._owner.directory_of(self.label)
        return directory

    @property
    def from_cache(self) -> bool:
        """True if the result was found in the work directory instead of being computed now."""
        return self._cached

    @property
    def file(self) -> "_FileMapping":
        """Declared output files by name; usable as inputs to other tasks before this one runs."""
        return _FileMapping(self)

    def done(self) -> bool:
        return self._state in FINAL_STATES

    def running(self) -> bool:
        return self._state is TaskState.RUNNING

    def cancelled(self) -> bool:
        return self._state is TaskState.CANCELLED

    def result(self, timeout: typing.Optional[float] = None):
        """Wait for the task and return its result, or raise why it has none."""
        self._wait(timeout)
        if self._recorded is not None:
            self._decode_result()
        if self._exception is not None:
            raise self._exception
        return self._result

    def _decode_result(self):
        with self._owner.lock:
            recorded, self._recorded = self._recorded, None
            if recorded is None:
                return
            try:
                self._result = decode_function_result(self, recorded)
            except BaseException as error:
                self._exception = error

    def exception(self, timeout: typing.Optional[float] = None) -> typing.Optional[BaseException]:
        self._wait(timeout)
        if self._recorded is not None:
            self._decode_result()
        return self._exception

    def _wait(self, timeout):
        if self._state in FINAL_STATES:
            return
        self._owner.check_can_block(self)
        # A private event set by a done-callback: the waiting thread wakes for this task only,
        # not for each of the thousands of other completions.
        finished = threading.Event()
        with self._owner.lock:
            if self._state in FINAL_STATES:
                return
            if self._callbacks is None:
                self._callbacks = []
            wake = _Wake(finished)
            self._callbacks.append(wake)
        if not finished.wait(timeout):
            with self._owner.lock:
                if self._callbacks is not None and wake in self._callbacks:
                    self._callbacks.remove(wake)  # so polling with short timeouts does not pile them up
            raise concurrent.futures.TimeoutError(f"task {self.label!r} did not finish within {timeout} s")

    def cancel(self) -> bool:
        """Cancel the task if it has not started. Tasks that need it fail. Returns True if cancelled."""
        return self._owner.cancel(self)

    def add_done_callback(self, fn: typing.Callable[["Task"], typing.Any]) -> None:
        """Call ``fn(task)`` when the task finishes (at once if it has). Errors in *fn* are logged."""
        with self._owner.lock:
            if self._state not in FINAL_STATES:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        invoke_callback(fn, self)

    def __await__(self):
        if self._state not in FINAL_STATES:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()

            def wake(_task, loop=loop, waiter=waiter):
                def set_done():
                    if not waiter.done():
                        waiter.set_result(None)

                try:
                    loop.call_soon_threadsafe(set_done)
                except RuntimeError:  # the awaiting loop is closed
                    pass

            self.add_done_callback(wake)
            yield from waiter
        return self.result()

    def __repr__(self):
        extra = ""
        if self.kind == "executable" and self._state is TaskState.DONE and self._result is not None:
            extra = f" exitcode={self._result.exitcode}"
        elif self._state is TaskState.FAILED:
            exitcode = getattr(self._exception, "exitcode", None)
            if exitcode is not None:
                extra = f" exitcode={exitcode}"
        cached = " cached" if self._cached else ""
        return f"<Task {self.label} state={self._state.value}{extra}{cached}>"

    # ---- completion (called by the owner with its lock held) ---------------------------------
    def _finish(self, state: TaskState, result=None, exception: typing.Optional[BaseException] = None):
        self._state = state
        self._result = result
        self._exception = exception
        callbacks, self._callbacks = self._callbacks, None
        return callbacks


class _Wake:
    """Done-callback that sets an event (a class, so it has a readable repr in logs)."""

    __slots__ = ("event",)

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, _task):
        self.event.set()


def invoke_callback(fn, task):
    """Call a done-callback; its errors are logged, never raised into the completing thread."""
    try:
        fn(task)
    except Exception:
        logger.exception("Exception in done-callback %r of %r", fn, task)


class _FileMapping(typing.Mapping[str, FileReference]):
    """``task.file``: output name -> :class:`FileReference`."""

    __slots__ = ("_task",)

    def __init__(self, task: Task):
        self._task = task

    def _names(self) -> tuple:
        return self._task.spec.output_names() if self._task.kind == "executable" else ()

    def __getitem__(self, name: str) -> FileReference:
        names = self._names()
        if name not in names:
            raise KeyError(
                f"Task {self._task.label!r} declares no output file {name!r}; "
                f"declared: {', '.join(names) or '(none)'}. Declare it with scalems.output_file({name!r})."
            )
        return FileReference(self._task, name)

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())


class Ensemble(typing.Sequence[Task]):
    """A sequence of member tasks created together. ``result()`` lists member results in order."""

    __slots__ = ("_members", "label")

    def __init__(self, members: typing.Sequence[Task], label: typing.Optional[str] = None):
        self._members = tuple(members)
        self.label = label

    def __getitem__(self, index):
        return self._members[index]

    def __len__(self):
        return len(self._members)

    def __iter__(self):
        return iter(self._members)

    def done(self) -> bool:
        return all(member.done() for member in self._members)

    def result(self, timeout: typing.Optional[float] = None) -> list:
        """Member results in member order. Raises the first member failure (in member order)."""
        done, not_done = wait(self._members, timeout=timeout)
        if not_done:
            raise concurrent.futures.TimeoutError(f"{len(not_done)} ensemble members did not finish in time")
        return [member.result() for member in self._members]

    def exception(self, timeout: typing.Optional[float] = None):
        wait(self._members, timeout=timeout)
        for member in self._members:
            if member.exception() is not None:
                return member.exception()
        return None

    def cancel(self) -> bool:
        return all([member.cancel() for member in self._members])

    @property
    def file(self) -> list:
        """Per-member ``task.file`` mappings."""
        return [member.file for member in self._members]

    def __await__(self):
        results = []
        for member in self._members:
            results.append((yield from member.__await__()))
        return results

    def __repr__(self):
        states = {}
        for member in self._members:
            states[member.state.value] = states.get(member.state.value, 0) + 1
        summary = " ".join(f"{k}={v}" for k, v in sorted(states.items()))
        return f"<Ensemble {self.label or ''} size={len(self._members)} {summary}>"


# ---- waiting on several tasks ---------------------------------------------------------------
FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED


def _flatten(tasks) -> list:
    flat = []
    for item in tasks:
        if isinstance(item, Ensemble):
            flat.extend(item)
        elif isinstance(item, Task):
            flat.append(item)
        else:
            raise TypeError(f"expected scalems tasks or ensembles, got {type(item).__name__}")
    return flat


class _Waiter:
    """Collects completions from done-callbacks for wait()/as_completed().

    It wakes the waiting thread only when the wait may end (not on every one of
    thousands of completions), and keeps counts so checking is O(1).
    """

    def __init__(self, total: int, return_when: str = ALL_COMPLETED):
        self.event = threading.Condition()
        self.finished: list = []
        self.total = total
        self.return_when = return_when
        self.failed = False

    def __call__(self, task):
        with self.event:
            self.finished.append(task)
            if task._state is not TaskState.DONE:
                self.failed = True
            if self.satisfied():
                self.event.notify_all()

    def satisfied(self) -> bool:
        if self.return_when == ALL_COMPLETED:
            return len(self.finished) >= self.total
        if self.return_when == FIRST_COMPLETED:
            return bool(self.finished)
        return self.failed or len(self.finished) >= self.total


def _check_blocking(tasks):
    for task in tasks:
        if not task.done():
            task._owner.check_can_block(task)
            return


def wait(tasks, timeout: typing.Optional[float] = None, return_when: str = ALL_COMPLETED):
    """Wait for tasks (or ensembles). Returns ``(done, not_done)`` sets, as :func:`concurrent.futures.wait`."""
    import time

    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, not {return_when!r}")
    flat = list(dict.fromkeys(_flatten(tasks)))
    _check_blocking(flat)
    waiter = _Waiter(len(flat), return_when)
    for task in flat:
        task.add_done_callback(waiter)
    deadline = None if timeout is None else time.monotonic() + timeout
    with waiter.event:
        while not waiter.satisfied():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            waiter.event.wait(remaining)
    done = {t for t in flat if t.done()}
    return done, set(flat) - done


def as_completed(tasks, timeout: typing.Optional[float] = None) -> typing.Iterator[Task]:
    """Yield tasks as they finish (finished ones first), as :func:`concurrent.futures.as_completed`."""
    import time

    flat = list(dict.fromkeys(_flatten(tasks)))
    _check_blocking(flat)
    deadline = None if timeout is None else time.monotonic() + timeout
    waiter = _Waiter(len(flat), FIRST_COMPLETED)
    for task in flat:
        task.add_done_callback(waiter)
    yielded = 0
    while yielded < len(flat):
        with waiter.event:
            while len(waiter.finished) == yielded:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise concurrent.futures.TimeoutError(f"{len(flat) - yielded} (of {len(flat)}) tasks unfinished")
                waiter.event.wait(remaining)
            batch = waiter.finished[yielded:]
        for task in batch:
            yielded += 1
            yield task


def decode_function_result(task: Task, text: typing.Union[str, bytes]):
    """The return value in a :mod:`scalems.call` result record, or the task failure it reports."""
    import scalems.call

    result = scalems.call.deserialize_result(text)
    if result.exception is not None:
        exc = result.exception_object
        error = TaskFailedError(
            task.label,
            uid=task.uid,
            reason=f"{type(exc).__name__}: {exc}",
            remote_traceback=getattr(result, "traceback", "") or "",
        )
        error.__cause__ = exc if isinstance(exc, BaseException) else None
        raise error
    return result.return_value
