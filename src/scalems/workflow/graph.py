"""The task graph: every task of a workflow, its state, and who waits for whom.

The graph owns task state. A :class:`~scalems.workflow.task.Task` handle asks
its graph (the owner interface: :attr:`TaskGraph.lock`,
:meth:`TaskGraph.directory_of`, :meth:`TaskGraph.check_can_block`,
:meth:`TaskGraph.cancel`) and the graph writes the handle's state fields; no
other object does.

State changes happen under one lock. Nobody sleeps on it: a thread waiting
for a task registers a done-callback, so a completion wakes only the threads
that wait for it, and the manager's ``close()`` waits for :attr:`TaskGraph.idle`,
set when the last unfinished task ends.

Tasks are linked to the tasks they need on the dispatcher's event loop; the
graph hands newly ready tasks to the scheduler through :attr:`TaskGraph.release`,
which posts to that loop when called from another thread.
"""

from __future__ import annotations

__all__ = ("TaskGraph",)

import threading
import typing

from scalems.exceptions import ContextError, TaskCancelledError, UpstreamFailedError
from .naming import TaskNames
from .task import FINAL_STATES, Task, TaskState, invoke_callback

#: Keys of :attr:`TaskGraph.counts`: tasks added, found in the record, and in each state.
COUNT_KEYS = ("added", "cached", *(state.value for state in TaskState))


class TaskGraph:
    """Tasks by uid, their labels, dependencies and counts."""

    def __init__(self, names: TaskNames):
        self.lock = threading.RLock()
        self.names = names
        self.tasks: dict = {}  # uid -> Task
        self.order: list = []
        # Task counts by state, plus "added" and "cached"; a plain dict, updated on every task.
        self.counts = dict.fromkeys(COUNT_KEYS, 0)
        self.unfinished = 0
        #: Uids of the tasks done from the record, and the tasks that ended other than done, in order:
        #: what the run history lists at the end (kept as they happen: a loop over 100,000 tasks
        #: at the end would cost the run milliseconds).
        self.cached_uids: list = []
        self.not_done: list = []
        # Set while no added task is unfinished. A completion wakes no thread unless it is the
        # last one (or a waiter registered on that task).
        self.idle = threading.Event()
        self.idle.set()
        #: ``check(task)`` raising ContextError where waiting for *task* could never end (set by the manager).
        self.blocking_check: typing.Callable[[Task], None] = lambda task: None
        #: ``release(task, dependents)``: hand the dependents of a finished task to the scheduler.
        self.release: typing.Callable[[Task, list], None] = lambda task, dependents: None

    # ---- the owner interface of Task handles ---------------------------------------------------
    def directory_of(self, label: str):
        return self.names.directory(label)

    def check_can_block(self, task: Task) -> None:
        self.blocking_check(task)

    def cancel(self, task: Task) -> bool:
        """Cancel a task that has not started; True if it is (or already was) cancelled."""
        with self.lock:
            if task._state in FINAL_STATES:
                return task._state is TaskState.CANCELLED
            if task._state is TaskState.RUNNING:
                return False
        error = TaskCancelledError(task.label, uid=task.uid, reason="cancelled by the workflow")
        self.complete(task, TaskState.CANCELLED, exception=error)
        return True

    # ---- adding ----------------------------------------------------------------------------------
    def existing(self, uid: str, label: typing.Optional[str]) -> typing.Optional[Task]:
        """The task already added for *uid* (a second label becomes its alias); checks label clashes."""
        with self.lock:
            existing = self.tasks.get(uid)
            if label is not None:
                self.names.owner(label, uid)
                if existing is not None:
                    self.names.alias(label, uid)
            return existing

    def add(self, uid: str, label, kind: str, spec, fits=None, recorded=None) -> Task:
        """Create the task for *uid*, or return the one another thread added meanwhile.

        *fits(label, resources)* (the backend limiter's ``check_fits``) raises if the task
        could never run; None for the default resources, which always fit. *recorded* is a
        function result found in the record: the task is then done at once, decoded when
        first asked for.
        """
        with self.lock:
            names = self.names
            if uid in self.tasks or (label is not None and label in names.labels):
                existing = self.existing(uid, label)
                if existing is not None:
                    return existing
            label = names.claim(label, uid, spec, fits)
            task = Task(self, uid, label, kind, spec)
            self.tasks[uid] = task
            self.order.append(task)
            counts = self.counts
            counts["added"] += 1
            if recorded is not None:
                task._cached = True
                task._recorded = recorded
                task._state = TaskState.DONE
                counts["cached"] += 1
                counts["done"] += 1
                self.cached_uids.append(uid)
            return task

    def finish_cached(self, task: Task, result) -> None:
        """A new task whose result came from the record."""
        with self.lock:
            task._cached = True
            callbacks = task._finish(TaskState.DONE, result, None)
            self.counts["cached"] += 1
            self.counts["done"] += 1
            self.cached_uids.append(task.uid)
        for fn in callbacks or ():
            invoke_callback(fn, task)

    def expect(self, task: Task) -> None:
        """*task* will run: count it as unfinished until :meth:`complete`."""
        with self.lock:
            self.unfinished += 1
            if self.unfinished == 1:
                self.idle.clear()

    # ---- dependencies (dispatcher thread) ----------------------------------------------------------
    def link(self, task: Task, upstream: typing.Iterable[Task]) -> bool:
        """Make *task* wait for the unfinished tasks in *upstream*; True if it can run now.

        If one of them already failed, *task* fails with it (and False is returned).
        """
        if task._state is not TaskState.WAITING:
            return False  # cancelled before it reached the dispatcher
        for dep in upstream:
            state = dep._state
            if state is TaskState.DONE:
                continue
            if state in FINAL_STATES:
                self.fail_downstream(task, dep)
                return False
            task._waiting_on += 1
            if dep._dependents is None:
                dep._dependents = []
            dep._dependents.append(task)
        return task._waiting_on == 0 and self.make_ready(task)

    def make_ready(self, task: Task) -> bool:
        with self.lock:
            if task._state is not TaskState.WAITING:
                return False
            task._state = TaskState.READY
        return True

    def start(self, task: Task) -> None:
        with self.lock:
            task._state = TaskState.RUNNING
        self.counts["running"] += 1

    def ended(self, task: Task) -> None:
        """A running task's attempt is over (whatever its outcome)."""
        self.counts["running"] -= 1

    def released(self, task: Task, dependents: list) -> list:
        """The dependents of finished *task* that can run now; the others fail if *task* did."""
        ready = []
        if task._state is TaskState.DONE:
            for dependent in dependents:
                dependent._waiting_on -= 1
                if dependent._waiting_on == 0 and dependent._state is TaskState.WAITING and self.make_ready(dependent):
                    ready.append(dependent)
        else:
            for dependent in dependents:
                self.fail_downstream(dependent, task)
        return ready

    def fail_downstream(self, task: Task, failed: Task) -> None:
        root = failed._exception
        if isinstance(root, UpstreamFailedError):
            upstream, cause = root.upstream, ""
        else:
            upstream, cause = failed.label, getattr(root, "reason", "")
        error = UpstreamFailedError(task.label, upstream=upstream, uid=task.uid, cause=cause)
        error.__cause__ = root
        self.complete(task, TaskState.FAILED, exception=error)

    # ---- completion (any thread) ----------------------------------------------------------------------
    def complete(self, task: Task, state: TaskState, result=None, exception=None) -> None:
        with self.lock:
            if task._state in FINAL_STATES:
                return
            callbacks = task._finish(state, result, exception)
            self.unfinished -= 1
            if not self.unfinished:
                self.idle.set()
            self.counts[state.value] += 1
            if state is not TaskState.DONE:
                self.not_done.append(task)
        if callbacks:
            for fn in callbacks:
                invoke_callback(fn, task)
        dependents, task._dependents = task._dependents, None
        if dependents:
            self.release(task, dependents)

    def unstarted(self) -> list:
        """Tasks that wait for inputs or resources."""
        with self.lock:
            return [t for t in self.order if t._state in (TaskState.WAITING, TaskState.READY)]

    def check_owner(self, upstream: typing.Iterable[Task]) -> None:
        """Tasks of another workflow cannot be inputs: their results live in another work directory."""
        for task in upstream:
            if task._owner is not self:
                raise ContextError(f"{task!r} belongs to another workflow and cannot be an input here.")
