"""RP tasks in and final states out: the one submitter and the one watcher of a backend run.

Every RP task of a run goes through here, whatever it carries: an executable,
a ``python -m scalems.call`` task, the scalems Raptor master, or a command
sent to that master.

* :class:`Submitter` — one daemon thread that submits and cancels RP tasks,
  in bulk (whatever has queued up), in order of request, so that the event
  loop never blocks on RP. :meth:`Submitter.run` submits one task and awaits
  its end; cancelling the awaiting coroutine cancels the RP task.
* :class:`TaskWatcher` — the TaskManager's state callback; it resolves one
  asyncio future per task uid, from RP's callback thread.
* :class:`FinalTaskState` — what RP reported about a task when it ended,
  copied in RP's callback thread (later reads of an ``rp.Task`` take locks).
"""

from __future__ import annotations

__all__ = ("FinalTaskState", "TaskWatcher", "Submitter", "CANCEL_CONFIRM_TIMEOUT")

import asyncio
import dataclasses
import logging
import queue
import threading
import typing

from scalems.exceptions import DispatchError, MissingDependencyError
from scalems.execution.waiting import wait_within

try:
    import radical.pilot as rp
except ImportError as _error:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("radical.pilot", "radical") from _error

logger = logging.getLogger(__name__)

#: After cancelling an RP task, wait this long for RP to confirm, so that no late
#: staging writes into a task directory the workflow may already reuse.
CANCEL_CONFIRM_TIMEOUT = 10.0


def _text(value) -> str:
    """RP's stdout/stderr of a task: text, or (Raptor MPI workers) a list of it per rank."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(part) for part in value if part)
    return str(value)


@dataclasses.dataclass(frozen=True)
class FinalTaskState:
    """The final state of an RP task as the client saw it (copied in RP's callback thread).

    *stdout* and *stderr* are RP's copies (the last 1024 characters of each
    stream; per-rank copies joined by newlines). *return_value* is what a
    function task returned (for Raptor: a list with one value per rank).
    """

    uid: str
    state: str
    exit_code: typing.Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    exception: typing.Optional[str] = None
    exception_detail: typing.Optional[str] = None
    sandbox: typing.Optional[str] = None
    return_value: typing.Any = None

    @classmethod
    def of(cls, task, state: str) -> "FinalTaskState":
        def field(name):
            try:
                return getattr(task, name)
            except Exception:  # noqa: BLE001 - a missing field must not lose the final state
                return None

        return cls(
            uid=task.uid,
            state=state,
            exit_code=field("exit_code"),
            stdout=_text(field("stdout")),
            stderr=_text(field("stderr")),
            exception=field("exception"),
            exception_detail=field("exception_detail"),
            sandbox=str(field("sandbox") or "") or None,
            return_value=field("return_value"),
        )

    def describe(self) -> str:
        """``RADICAL-Pilot task UID ended STATE with exit status N: EXCEPTION``."""
        text = f"RADICAL-Pilot task {self.uid} ended {self.state}"
        if self.exit_code is not None:
            text += f" with exit status {self.exit_code}"
        if self.exception:
            text += f": {self.exception}"
        return text

    def reason(self, lines: int = 20) -> str:
        """Why the task failed, as far as RP knows: its exception and the end of its stderr."""
        tail = "\n".join(self.stderr.rstrip().splitlines()[-lines:])
        text = "\n".join(part for part in (self.exception or "", tail) if part)
        return text or f"exit code {self.exit_code}"


class TaskWatcher:
    """Resolves one asyncio future per RP task uid from RP's callback thread.

    Register :attr:`callback` with the TaskManager once (RP identifies callbacks
    by ``id()``, so it is created once). Futures get a :class:`FinalTaskState`;
    they are resolved with ``loop.call_soon_threadsafe``; a closed loop means
    nobody waits any more.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._futures: typing.Dict[str, asyncio.Future] = {}
        self.callback = self._on_task_state

    def expect(self, uid: str) -> "asyncio.Future[FinalTaskState]":
        """A future for the final state of task *uid* (call on the loop thread)."""
        future = self._loop.create_future()
        with self._lock:
            self._futures[uid] = future
        return future

    def forget(self, uid: str) -> None:
        with self._lock:
            self._futures.pop(uid, None)

    def pending(self) -> typing.List[str]:
        with self._lock:
            return list(self._futures)

    def _post(self, future: asyncio.Future, result=None, exception: typing.Optional[BaseException] = None):
        def settle():
            if future.done():
                return
            if exception is not None:
                future.set_exception(exception)
            else:
                future.set_result(result)

        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:  # loop closed
            pass

    def _on_task_state(self, task, state=None, *args):
        # RADICAL_PILOT_BULK_CB=true makes RP pass a collection of tasks and no state.
        if isinstance(task, (list, tuple, set)):
            for one in task:
                self._on_task_state(one, one.state)
            return
        if state not in rp.FINAL:
            return
        with self._lock:
            future = self._futures.pop(task.uid, None)
        if future is not None:
            self._post(future, result=FinalTaskState.of(task, state))

    def fail(self, uid: str, exception: BaseException) -> None:
        """Fail the future of task *uid* (if anyone waits for it) with *exception*."""
        with self._lock:
            future = self._futures.pop(uid, None)
        if future is not None:
            self._post(future, exception=exception)

    def fail_all(self, exception: BaseException) -> None:
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            self._post(future, exception=exception)


class Submitter:
    """One daemon thread that submits and cancels RP tasks, in bulk, in order of request.

    :meth:`submit`, :meth:`run` and :meth:`cancel` are called on the event loop
    thread; the final states come back through *watcher*. A description RP
    refuses fails its own future (with :class:`DispatchError`), not its bulk.
    """

    def __init__(self, task_manager: rp.TaskManager, watcher: TaskWatcher):
        self._tmgr = task_manager
        self.watcher = watcher
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="scalems-rp-submit", daemon=True)
        self._thread.start()

    def submit(self, description: rp.TaskDescription) -> "asyncio.Future[FinalTaskState]":
        """Queue *description* for submission; a future for its final state.

        Raises:
            DispatchError: the submitter was stopped.
        """
        if self._stopped:
            raise DispatchError(f"RP task {description.uid} was not submitted: the RADICAL backend is closed")
        future = self.watcher.expect(description.uid)
        self._queue.put(("submit", description))
        return future

    async def run(self, description: rp.TaskDescription, *, timeout: typing.Optional[float] = None) -> FinalTaskState:
        """Submit *description* and wait for its final state.

        Raises:
            asyncio.TimeoutError: not final within *timeout* seconds (the RP task is cancelled).
            asyncio.CancelledError: the caller was cancelled; the RP task is cancelled, and
                RP's confirmation awaited (at most :data:`CANCEL_CONFIRM_TIMEOUT` seconds).
            DispatchError: RP refused the task, or the backend failed it (pilot gone, closed).
        """
        uid = description.uid
        future = self.submit(description)
        try:
            return await wait_within(future, timeout, cancel=False)
        except asyncio.TimeoutError:
            self.cancel(uid)
            self.watcher.forget(uid)
            raise
        except asyncio.CancelledError:
            self.cancel(uid)
            try:
                await asyncio.wait({future}, timeout=CANCEL_CONFIRM_TIMEOUT)
            finally:
                self.watcher.forget(uid)
                if future.done() and not future.cancelled():
                    future.exception()  # mark retrieved
            raise

    def cancel(self, uid: str) -> None:
        if not self._stopped:
            self._queue.put(("cancel", uid))

    def stop(self) -> None:
        """Let the thread end after what is queued (later requests are refused)."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)

    def _run(self):
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            submit = [value for kind, value in (b for b in batch if b is not None) if kind == "submit"]
            cancel = [value for kind, value in (b for b in batch if b is not None) if kind == "cancel"]
            if submit:
                try:
                    self._tmgr.submit_tasks(submit)
                except Exception:  # noqa: BLE001 - one bad description must not fail the whole bulk
                    for description in submit:
                        self._submit_one(description)
            if cancel:
                try:
                    self._tmgr.cancel_tasks(cancel)
                except Exception:  # noqa: BLE001
                    logger.exception("Could not cancel RP task(s) %s", cancel)
            if batch[-1] is None:
                return

    def _submit_one(self, description: rp.TaskDescription):
        try:
            self._tmgr.submit_tasks([description])
        except Exception as error:  # noqa: BLE001 - reported to the waiting job
            logger.exception("RADICAL-Pilot refused task %s (%s)", description.uid, description.name)
            self.watcher.fail(
                description.uid, DispatchError(f"RADICAL-Pilot refused task {description.name!r}: {error}")
            )
