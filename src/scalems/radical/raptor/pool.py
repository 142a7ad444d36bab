"""The master's worker pool: how many workers run, which call each holds, when the next call goes out.

RP's Raptor workers pull calls from the master's queue in bulk and hold them
until one of their ranks is free. A call pushed there may therefore wait behind
a long call on a busy worker while another worker idles, and it vanishes with
that worker if the worker dies. So the master keeps calls in its own backlog
and hands out two per worker (:data:`CALLS_PER_WORKER`); each worker marks, in a folder
it shares with the master, the calls it pulled (``<uid>.held``) and the one it
runs (``<uid>.run``) (see :mod:`.worker`). When a worker ends unexpectedly, the
master fails the call it was running (that call is never run again here) and
puts the calls it merely held back into the backlog, then starts a replacement.

The pool grows and shrinks on :class:`~.messages.ResizeWorkers`: growing submits
workers; shrinking stops handing out calls until enough workers are idle and
then ends exactly those, so no call is ever lost with a retired worker.
"""

from __future__ import annotations

__all__ = ("WorkerPool", "MARKS_ENV", "NOT_STARTED")

import collections
import logging
import os
import threading
import time
import typing

from radical.pilot import constants as rpc_constants

from .config import TaskDictionary

logger = logging.getLogger(__name__)

#: Calls handed to each worker at a time: one running and one waiting in the worker, so that it
#: never idles between calls. (A worker's task puller blocks on the waiting one, so a worker with
#: two calls takes no more, and idle workers get the next.)
CALLS_PER_WORKER = 2

#: Seconds after which a handed-out call that no worker marked, while some worker was free to
#: take it from the queue, counts as lost (it went to a worker that died before marking it).
#: Seconds a crashed worker's exit code is awaited for the message of the call it ran.
EXIT_CODE_WAIT = 3.0
LOST_AFTER = 5.0

#: Environment variable that tells a worker where to mark the calls it holds and runs.
MARKS_ENV = "SCALEMS_RAPTOR_MARKS"

#: Start of the ``exception`` of a call the master gives back unstarted (it is stopping):
#: the client may run such a call elsewhere, since it never began.
NOT_STARTED = "scalems.raptor.NotStarted"


def _read(path: str) -> typing.Optional[str]:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class WorkerPool:
    """Backlog, hand-out and worker count of one :class:`~.master.ScaleMSMaster`.

    All methods may be called from any thread (RP callbacks, the master's pool
    thread); one lock guards the bookkeeping. Submitting to RP happens outside it.

    Args:
        master: the RP master (its ``workers`` registry, ``publish``, ``_submit_tasks``,
            ``submit_workers`` and ``cpi_finalize`` are used).
        marks: the folder the workers mark their calls in.
        describe: returns one more worker description for ``submit_workers``.
        target: workers to run at first.
    """

    def __init__(self, master, *, marks: str, describe: typing.Callable[[], typing.Any], target: int = 1):
        self.master = master
        self.marks = marks
        self.describe = describe
        self.target = target
        self.stopping = False
        self._lock = threading.RLock()
        self._backlog: typing.Deque[TaskDictionary] = collections.deque()
        self._out: typing.Dict[str, TaskDictionary] = {}  # handed to the workers' queue, not finished
        self._retiring: typing.Dict[str, float] = {}  # worker uid -> when it was asked to end
        self._registered: typing.Set[str] = set()  # workers seen ACTIVE at least once
        self._ended: typing.Set[str] = set()  # workers whose end was dealt with
        self.exit_codes: typing.Dict[str, typing.Optional[int]] = {}
        self.replaced = 0
        self._pushed: typing.Dict[str, float] = {}  # call uid -> when it was handed out
        self._since: typing.Dict[str, float] = {}  # worker uid -> when it was first seen registered
        self._checked = 0.0

    # -- counts ------------------------------------------------------------------------------
    def _statuses(self) -> typing.Dict[str, str]:
        return {uid: info.get("status") for uid, info in list(self.master.workers.items())}

    def live(self) -> typing.List[str]:
        """Workers that have not ended and are not being retired."""
        done = self.master.DONE
        gone = self._ended
        return [
            uid
            for uid, status in self._statuses().items()
            if status != done and uid not in self._retiring and uid not in gone
        ]

    def active(self) -> typing.List[str]:
        """Registered workers that take calls (not being retired)."""
        active = self.master.ACTIVE
        gone = self._ended
        return [
            uid
            for uid, status in self._statuses().items()
            if status == active and uid not in self._retiring and uid not in gone
        ]

    def waiting(self) -> int:
        """Calls in the backlog or with a worker."""
        with self._lock:
            return len(self._backlog) + len(self._out)

    # -- calls -------------------------------------------------------------------------------
    def enqueue(self, task: TaskDictionary) -> None:
        with self._lock:
            self._backlog.append(task)
        self.pump()

    def pump(self) -> None:
        """Hand out calls while some worker has none (and the pool is not shrinking)."""
        with self._lock:
            # While shrinking, hand out nothing: a worker being retired must not pick up a call.
            if self.stopping or self._retiring or len(self.live()) > self.target:
                return
            room = CALLS_PER_WORKER * len(self.active()) - len(self._out)
            batch = []
            now = time.monotonic()
            while room > 0 and self._backlog:
                task = self._backlog.popleft()
                self._out[task["uid"]] = task
                self._pushed[task["uid"]] = now
                batch.append(task)
                room -= 1
        if batch:
            self.master._submit_tasks(batch)

    def finished(self, uid: str) -> None:
        """A call came back from a worker (or was failed here)."""
        with self._lock:
            self._out.pop(uid, None)
            self._pushed.pop(uid, None)
        _unlink(os.path.join(self.marks, f"{uid}.run"))
        _unlink(os.path.join(self.marks, f"{uid}.held"))
        self.pump()

    def give_back(self) -> typing.List[TaskDictionary]:
        """Take every call no worker has yet out of the backlog (the master is stopping)."""
        with self._lock:
            tasks, self._backlog = list(self._backlog), collections.deque()
        return tasks

    # -- workers ----------------------------------------------------------------------------
    def resize(self, count: int) -> None:
        """Run *count* workers from now on (see the module docstring)."""
        with self._lock:
            self.target = count
            missing = count - len(self.live())
        if missing > 0 and not self.stopping:
            self._submit(missing)
        self.tend()

    def _submit(self, count: int) -> None:
        uids = self.master.submit_workers([self.describe() for _ in range(count)])
        logger.info("Submitted worker(s) %s (pool of %d).", ", ".join(uids), self.target)

    def tend(self) -> None:
        """Deal with ended workers, retire surplus idle ones, hand out calls (the pool thread's round)."""
        statuses = self._statuses()
        for uid, status in statuses.items():
            if status == self.master.ACTIVE:
                self._registered.add(uid)
                self._since.setdefault(uid, time.monotonic())
            elif status == self.master.DONE and uid not in self._ended:
                self._ended.add(uid)
                self._worker_ended(uid)
        self._retire_surplus()
        self._recover_lost()
        self._give_up_retiring()
        self.pump()

    def _give_up_retiring(self) -> None:
        """A worker asked to end that has not ended within a minute is cancelled and forgotten,
        so that handing out calls (paused while workers retire) resumes."""
        now = time.monotonic()
        with self._lock:
            stuck = [uid for uid, since in self._retiring.items() if now - since > 60.0]
            for uid in stuck:
                del self._retiring[uid]
                self._ended.add(uid)
        if stuck:
            logger.warning("Worker(s) %s did not end when asked to; cancelling them.", ", ".join(stuck))
            self.master.publish(rpc_constants.CONTROL_PUBSUB, {"cmd": "cancel_tasks", "arg": {"uids": stuck}})

    def _recover_lost(self) -> None:
        """Put back handed-out calls no worker took although one was free to (see :data:`LOST_AFTER`).

        A worker whose task puller is not blocked on a waiting call (it marks none ``.held``)
        polls the master's queue all the time, so a call left there is taken within
        milliseconds. One that stays unmarked went to a worker that died between receiving
        and marking it: it never started, and goes back to the backlog.
        """
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        with self._lock:
            old = [uid for uid in self._out if now - self._pushed.get(uid, now) > LOST_AFTER]
            if not old:
                return
            owners = {uid: self._owner(uid) for uid in self._out}
            unmarked = [uid for uid in old if owners[uid] is None]
            if not unmarked:
                return
            waiting = {owner for uid, owner in owners.items() if owner is not None and owner[1] == "held"}
            polling = [
                worker
                for worker in self.active()
                if (worker, "held") not in waiting and now - self._since.get(worker, now) > LOST_AFTER
            ]
            if not polling:
                return
            for uid in reversed(unmarked):
                self._backlog.appendleft(self._out.pop(uid))
                self._pushed.pop(uid, None)
        logger.warning("Call(s) %s were lost in transit to a worker; handing them out again.", ", ".join(unmarked))

    def _owner(self, uid: str) -> typing.Optional[typing.Tuple[str, str]]:
        """(worker, "run" or "held") from the marks of call *uid*, or None if unmarked."""
        # In the order a worker renames them, so a call that moves on meanwhile is still seen.
        for kind in ("held", "run"):
            owner = _read(os.path.join(self.marks, f"{uid}.{kind}"))
            if owner:
                return owner, kind
        return None

    def _worker_ended(self, uid: str) -> None:
        with self._lock:
            retired = self._retiring.pop(uid, None) is not None
        crashed, held = self._calls_of(uid)
        code = self.exit_codes.get(uid)
        if crashed and code is None and not (retired or self.stopping):
            # RP may mark the worker done before the state update that carries its exit code.
            deadline = time.monotonic() + EXIT_CODE_WAIT
            while code is None and time.monotonic() < deadline:
                time.sleep(0.1)
                code = self.exit_codes.get(uid)
        status = f" (exit status {code})" if code is not None else ""
        sandbox = os.environ.get("RP_TASK_SANDBOX", os.getcwd())
        expected = retired or self.stopping
        logger.log(
            logging.INFO if expected and not crashed else logging.ERROR,
            "Worker %s ended%s%s; it was running %s and held %d more call(s).",
            uid,
            "" if expected else " unexpectedly",
            status,
            ", ".join(task["uid"] for task in crashed) or "no call",
            len(held),
        )
        for task in crashed:
            name = task["description"].get("name") or task["uid"]
            error = RuntimeError(
                f"The Raptor worker {uid} ended{status} while running {name!r}; the call did not finish "
                f"and is not run again here. Worker logs: {os.path.join(sandbox, uid)}.err/.out"
            )
            self.master.cpi_finalize(task, error=error)
        if expected:
            pass
        elif uid not in self._registered:
            logger.error("Worker %s ended before it registered; it is not replaced.", uid)
        elif len(self.live()) < self.target:
            self.replaced += 1
            self._submit(1)
        self.pump()

    def _calls_of(self, worker: str) -> typing.Tuple[typing.List[TaskDictionary], typing.List[TaskDictionary]]:
        """(the call *worker* was running, the calls it only held), from its marks; the held ones go back."""
        crashed, held = [], []
        with self._lock:
            for uid, task in list(self._out.items()):
                run = os.path.join(self.marks, f"{uid}.run")
                pulled = os.path.join(self.marks, f"{uid}.held")
                if _read(run) == worker:
                    crashed.append(task)
                    _unlink(run)
                elif _read(pulled) == worker:
                    held.append(task)
                    _unlink(pulled)
                else:
                    continue
                del self._out[uid]
                self._pushed.pop(uid, None)
            for task in reversed(held):
                self._backlog.appendleft(task)
        return crashed, held

    def _retire_surplus(self) -> None:
        with self._lock:
            surplus = len(self.live()) - self.target
            if surplus <= 0:
                return
            statuses = self._statuses()
            # Workers not registered yet hold nothing: cancel those first.
            fresh = [uid for uid in self.live() if statuses.get(uid) == self.master.NEW][:surplus]
            surplus -= len(fresh)
            idle = []
            if surplus > 0:
                holders = self._holders()
                if holders is not None:
                    idle = [uid for uid in self.active() if uid not in holders][:surplus]
            now = time.monotonic()
            self._retiring.update((uid, now) for uid in fresh + idle)
        if fresh:
            logger.info("Cancelling worker(s) %s (pool of %d).", ", ".join(fresh), self.target)
            self.master.publish(rpc_constants.CONTROL_PUBSUB, {"cmd": "cancel_tasks", "arg": {"uids": fresh}})
        for uid in idle:
            logger.info("Retiring idle worker %s (pool of %d).", uid, self.target)
            self.master.publish(rpc_constants.CONTROL_PUBSUB, {"cmd": "worker_terminate", "arg": {"uid": uid}})

    def _holders(self) -> typing.Optional[typing.Set[str]]:
        """Workers holding a call; None while some handed-out call is not marked yet (in transit)."""
        holders = set()
        for uid in self._out:
            owner = _read(os.path.join(self.marks, f"{uid}.run")) or _read(os.path.join(self.marks, f"{uid}.held"))
            if owner is None:
                return None
            holders.add(owner)
        return holders
