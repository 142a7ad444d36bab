"""The scalems Raptor master task: ``scalems_rp_master CONFIG.json``.

The client never submits scalems work as ordinary RP tasks. It submits
*command* tasks (``mode == CPI_MESSAGE``) to this master, whose
:meth:`ScaleMSMaster.request_cb` intercepts them:

* :class:`~scalems.radical.raptor.messages.HelloCommand` is answered by the master itself
  (with :data:`backend_version` and its number of workers);
* :class:`~scalems.radical.raptor.messages.StopCommand` is acknowledged, then the master
  gives back the calls no worker has started (the client runs them elsewhere), lets
  the started ones finish and shuts down with its workers;
* :class:`~scalems.radical.raptor.messages.ResizeWorkers` grows or shrinks the worker
  pool (:mod:`.pool`);
* :class:`~scalems.radical.raptor.messages.AddItem` is rewritten *in place* into a
  ``TASK_FUNCTION`` task for :meth:`ScaleMSWorker.run_in_worker` and queued in the
  pool, which hands it to a worker that has nothing else to do. Keeping the
  client's task uid means the worker's result travels back to the client on
  the very task it submitted: no second lookup, no extra round trip.

A worker that dies is replaced; the call it was running fails, the calls it
merely held go to other workers (see :mod:`.pool`).

Everything else passes through to normal RP handling.
"""

from __future__ import annotations

__all__ = (
    "CpiCommand",
    "CpiHello",
    "CpiStop",
    "CpiAddItem",
    "CpiResize",
    "ScaleMSMaster",
    "master",
    "parser",
)

import abc
import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import typing
import warnings

import radical.pilot as rp
from radical.pilot import constants as rpc_constants

from scalems.exceptions import ProtocolError, SoftwareCompatibilityError

from . import messages
from .config import (
    CPI_MESSAGE,
    ClientWorkerRequirements,
    MasterTaskConfiguration,
    RaptorWorkerConfig,
    ScalemsRaptorWorkItem,
    TaskDictionary,
    backend_version,
    check_versioned_modules,
    worker_description,
)
from .pool import MARKS_ENV, NOT_STARTED, WorkerPool
from .worker import ScaleMSWorker

logger = logging.getLogger(__name__)


class CpiCommand(abc.ABC):
    """Master-side implementation of one :class:`~scalems.radical.raptor.messages.Command` type.

    Subclasses register themselves under the command's class name, so the
    master finds the implementation from the decoded message alone.
    """

    _registry: typing.ClassVar[typing.Dict[str, typing.Type["CpiCommand"]]] = {}

    @classmethod
    @abc.abstractmethod
    def command_class(cls) -> str:
        """``__qualname__`` of the :mod:`~scalems.radical.raptor.messages` command this class implements."""

    @classmethod
    @abc.abstractmethod
    def launch(cls, manager: "ScaleMSMaster", task: TaskDictionary) -> typing.List[TaskDictionary]:
        """Act on the command carried by *task* (called from ``request_cb``).

        Returns the tasks to hand on to normal RP handling; a command resolved
        by the master itself finalizes *task* and returns an empty list.
        """

    @classmethod
    def result_hook(cls, manager: "ScaleMSMaster", task: TaskDictionary) -> None:
        """Called from ``result_cb`` when *task* (still a command task) completes."""
        logger.debug("Finalized %s %s.", cls.command_class(), task.get("uid"))

    @typing.final
    @classmethod
    def get(cls, command: messages.Command) -> typing.Type["CpiCommand"]:
        name = type(command).__qualname__
        try:
            return CpiCommand._registry[name]
        except KeyError:
            raise ProtocolError(
                f"The scalems Raptor master has no implementation for {name} commands"
            ) from None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            CpiCommand._registry[cls.command_class()] = cls


class CpiHello(CpiCommand):
    """Answer with the backend version; proves the master reads commands."""

    @classmethod
    def command_class(cls) -> str:
        return messages.HelloCommand.__qualname__

    @classmethod
    def launch(cls, manager, task):
        pool = manager.pool
        answer = dataclasses.replace(backend_version, workers=len(pool.active()) if pool is not None else None)
        task["return_value"] = dataclasses.asdict(answer)
        task["stdout"] = repr(answer)
        manager.cpi_finalize(task)
        return []


class CpiStop(CpiCommand):
    """Acknowledge, then stop the master once pending work is done."""

    @classmethod
    def command_class(cls) -> str:
        return messages.StopCommand.__qualname__

    @classmethod
    def launch(cls, manager, task):
        logger.info("Stop requested by %s.", task.get("uid"))
        manager.cpi_finalize(task)
        manager.request_stop()
        return []


class CpiResize(CpiCommand):
    """Grow or shrink the worker pool; acknowledged at once (workers come and go later)."""

    @classmethod
    def command_class(cls) -> str:
        return messages.ResizeWorkers.__qualname__

    @classmethod
    def launch(cls, manager, task):
        command = messages.ResizeWorkers.decode(task["description"]["metadata"])
        if manager.pool is None:
            raise RuntimeError("this master has no worker pool (it does not run in an RP task)")
        manager._check_accepting()
        logger.info("Resize to %d worker(s) requested by %s.", command.count, task.get("uid"))
        manager.pool.resize(command.count)
        manager.cpi_finalize(task)
        return []


class CpiAddItem(CpiCommand):
    """Turn an encoded work item into a TASK_FUNCTION task for the workers."""

    @classmethod
    def command_class(cls) -> str:
        return messages.AddItem.__qualname__

    @staticmethod
    def work_item(add_item: messages.AddItem) -> ScalemsRaptorWorkItem:
        """Decode and check the item, keeping only fields the worker understands."""
        try:
            item = json.loads(add_item.encoded_item)
        except ValueError as err:
            raise ProtocolError(f"AddItem does not carry JSON: {err}") from err
        if not isinstance(item, dict) or not isinstance(item.get("call"), str):
            raise ProtocolError("AddItem must encode an object whose 'call' is a scalems.call record (JSON text)")
        work_item = ScalemsRaptorWorkItem(call=item["call"], comm_arg_name=item.get("comm_arg_name"))
        if "label" in item:
            work_item["label"] = str(item["label"])
        return work_item

    @classmethod
    def launch(cls, manager, task):
        command = messages.AddItem.decode(task["description"]["metadata"])
        work_item = cls.work_item(command)
        description = task["description"]
        # Rewrite in place: the worker's result then completes the client's own task.
        description["mode"] = rp.TASK_FUNCTION
        description["function"] = "run_in_worker"
        description["args"] = []
        description["kwargs"] = {"work_item": work_item}
        return [task]


class ScaleMSMaster(rp.raptor.Master):
    """Raptor master that understands scalems command tasks.

    The versions in the configuration are checked *before* the RP base class
    is initialized, so an incompatible installation fails fast with
    :class:`SoftwareCompatibilityError` (and the check can be exercised
    without an RP agent). Without the RP task environment (``RP_TASK_ID``...)
    the base class is skipped with a warning: such an instance can prepare
    worker descriptions but cannot talk to RP.
    """

    def __init__(self, configuration: MasterTaskConfiguration):
        check_versioned_modules(configuration.versioned_modules)
        self.configuration = configuration
        self._pending: typing.Dict[str, str] = {}  # uid -> task name, of work handed to workers
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_thread: typing.Optional[threading.Thread] = None
        self.exit_status = 0
        self.pool: typing.Optional[WorkerPool] = None
        self._worker_files: typing.Dict[type, str] = {}
        self._rp_ready = "RP_TASK_ID" in os.environ
        if self._rp_ready:
            super().__init__()
        else:
            warnings.warn(
                "ScaleMSMaster created outside an RP task (no RP_TASK_ID): it can describe workers "
                "but cannot run them.",
                stacklevel=2,
            )

    # -- workers ---------------------------------------------------------------

    @contextlib.contextmanager
    def configure_worker(self, requirements: ClientWorkerRequirements) -> typing.Iterator[RaptorWorkerConfig]:
        """Write the worker module file and yield the worker descriptions that use it.

        The file exists for the duration of the ``with`` block (workers import
        it when they start). It goes in the master's working directory (its
        task sandbox), which the workers share even on other nodes.
        """
        with self._worker_file() as worker_file:
            marks = os.path.join(os.path.dirname(worker_file), "marks")
            os.makedirs(marks, exist_ok=True)
            describe = functools.partial(_configure_worker, requirements=requirements, filename=worker_file, marks=marks)
            if self._rp_ready:
                self.pool = WorkerPool(self, marks=marks, describe=lambda: describe()[0])
            yield describe()

    @contextlib.contextmanager
    def _worker_file(self) -> typing.Iterator[str]:
        worker = ScaleMSWorker
        if worker in self._worker_files:
            yield self._worker_files[worker]
            return
        with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix="scalems_worker_") as tmp:
            filename = os.path.join(tmp, "scalems_worker.py")
            with open(filename, "w") as fh:
                fh.write(f"from {worker.__module__} import {worker.__name__}\n")
            self._worker_files[worker] = filename
            try:
                yield filename
            finally:
                del self._worker_files[worker]

    def _state_cb(self, topic, msg):
        """Also mark workers DONE when their task ends without running (cancelled, failed).

        RP only marks a worker DONE when it passes output staging, so a worker
        that never ran would otherwise look alive forever.
        """
        result = super()._state_cb(topic, msg)
        if isinstance(msg, dict) and msg.get("cmd") == "update":
            arg = msg.get("arg")
            for thing in arg if isinstance(arg, list) else [arg]:
                if isinstance(thing, dict) and thing.get("uid") in self._workers:
                    if self.pool is not None and thing.get("exit_code") is not None:
                        self.pool.exit_codes[thing["uid"]] = thing.get("exit_code")
                    if thing.get("state") in rp.FINAL:
                        self._workers[thing["uid"]]["status"] = self.DONE
        return result

    def live_workers(self) -> typing.Tuple[int, int]:
        """(active, not yet finished) worker counts, from RP's registration records."""
        statuses = [info.get("status") for info in list(self.workers.values())]
        return statuses.count(self.ACTIVE), sum(1 for s in statuses if s != self.DONE)

    def wait_for_worker(self, timeout: float) -> typing.Optional[str]:
        """Wait until one worker is registered; return None, or why none will come."""
        deadline = time.monotonic() + timeout
        while True:
            active, alive = self.live_workers()
            if active:
                return None
            if not alive:
                return "every worker task ended before registering with the master"
            if self._stopping.is_set() or not self.alive():
                return "the master was stopped while waiting for workers"
            if time.monotonic() > deadline:
                return f"no worker registered within {timeout:g} s"
            time.sleep(0.2)

    # -- life cycle ------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop accepting work; stop the master when pending work is done (in a helper thread)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.pool is not None:
            self.pool.stopping = True
        self._stop_thread = threading.Thread(target=self._drain_and_stop, name="scalems-stop", daemon=True)
        self._stop_thread.start()

    def _give_back(self):
        """Fail the calls no worker has started, marked :data:`~.pool.NOT_STARTED`: the client runs them elsewhere."""
        if self.pool is None:
            return
        for task in self.pool.give_back():
            self.cpi_finalize(
                task, error=RuntimeError(f"{NOT_STARTED}: the scalems Raptor master {self.uid} is stopping")
            )

    def _drain_and_stop(self):
        while True:
            self._give_back()
            with self._pending_lock:
                pending = len(self._pending)
            if pending == 0:
                break
            if not self.live_workers()[0]:
                # Without a registered worker nothing pending can finish; the client
                # learns about the abandoned tasks when this master ends.
                logger.warning("No active worker for %d pending task(s); stopping anyway.", pending)
                break
            time.sleep(0.1)
        # Give the acknowledgement of the Stop command time to leave before channels close.
        time.sleep(0.5)
        logger.info("Pending work done; stopping the master.")
        self.stop()

    def cancel_workers(self, *, unregistered_only: bool = False) -> None:
        """Ask the agent to cancel worker tasks that have not ended.

        A worker that never registered (e.g. it cannot be scheduled) does not
        hear the master's terminate message, so its task must be cancelled or
        it would hold its place in the agent until the pilot ends.
        """
        uids = [
            uid
            for uid, info in list(self.workers.items())
            if info.get("status") != self.DONE and (info.get("status") == self.NEW or not unregistered_only)
        ]
        if uids:
            logger.info("Cancelling worker task(s) %s.", ", ".join(uids))
            try:
                self.publish(rpc_constants.CONTROL_PUBSUB, {"cmd": "cancel_tasks", "arg": {"uids": uids}})
            except Exception as err:  # noqa: BLE001
                logger.warning("Could not cancel workers %s: %s", uids, err)

    def stop(self):
        """Stop serving (see ``rp.raptor.Master.stop``) and cancel workers that never registered."""
        super().stop()
        self.cancel_workers(unregistered_only=True)

    def fail(self, reason: str) -> None:
        """Stop with a non-zero exit status (the master task then ends FAILED)."""
        logger.error("Raptor master failing: %s", reason)
        self.exit_status = 1
        self._stopping.set()
        if self.pool is not None:
            self.pool.stopping = True
        self.stop()

    # -- RP callbacks ----------------------------------------------------------

    def cpi_finalize(self, task: TaskDictionary, *, error: typing.Optional[BaseException] = None) -> None:
        """Complete a command task here, without a worker (success, or *error*)."""
        task.setdefault("stdout", "")
        task.setdefault("stderr", "")
        task.setdefault("return_value", None)
        if error is None:
            task["exit_code"] = 0
            task["exception"] = None
            task["exception_detail"] = None
        else:
            task["exit_code"] = 1
            # Plain text (not a repr): the client shows it as the reason the task failed.
            task["exception"] = f"{type(error).__name__}: {error}"
            task["exception_detail"] = "".join(traceback.format_exception(error))
        self._result_cb(task)

    def request_cb(self, tasks: typing.Sequence[TaskDictionary]) -> typing.List[TaskDictionary]:
        """Intercept scalems command tasks; pass everything else on.

        A malformed command fails its own task; it never stops the master.
        """
        forward = []
        calls = []
        for task in tasks:
            description = task["description"]
            try:
                if description.get("mode") != CPI_MESSAGE:
                    self._check_accepting()
                    forward.append(task)
                    continue
                command = messages.Command.decode(description.get("metadata"))
                implementation = CpiCommand.get(command)
                logger.debug("%s carries %s.", task["uid"], command)
                if isinstance(command, messages.AddItem):
                    self._check_accepting()
                    launched = implementation.launch(self, task)
                    calls.extend(launched)
                else:
                    launched = implementation.launch(self, task)
                forward.extend(launched)
            except Exception as err:  # noqa: BLE001
                logger.warning("Failing task %s: %s", task.get("uid"), err)
                self.cpi_finalize(task, error=err)
        with self._pending_lock:
            for task in forward:
                self._pending[task["uid"]] = task["description"].get("name") or task["uid"]
        if self.pool is None or not calls:
            return forward
        # scalems calls wait in the pool until a worker is free; only other tasks go on to RP now.
        for task in calls:
            self.pool.enqueue(task)
        queued = {id(task) for task in calls}
        return [task for task in forward if id(task) not in queued]

    def _check_accepting(self):
        if self._stopping.is_set():
            raise RuntimeError(f"The scalems Raptor master {self.uid} is stopping and accepts no more work")

    def result_cb(self, tasks: typing.Sequence[TaskDictionary]) -> None:
        """Account for finished work; let command implementations see their completion."""
        finished = []
        for task in tasks:
            if task["description"].get("mode") == CPI_MESSAGE:
                try:
                    command = messages.Command.decode(task["description"].get("metadata"))
                    CpiCommand.get(command).result_hook(self, task)
                except Exception:  # noqa: BLE001 - a broken command was already failed in request_cb
                    logger.debug("No result hook for %s.", task.get("uid"), exc_info=True)
            else:
                finished.append(task["uid"])
        if finished:
            with self._pending_lock:
                for uid in finished:
                    self._pending.pop(uid, None)
            if self.pool is not None:
                for uid in finished:
                    self.pool.finished(uid)

    def pending_work(self) -> typing.List[str]:
        """Names of tasks handed to workers and not yet finished."""
        with self._pending_lock:
            return list(self._pending.values())


def _worker_launcher() -> str:
    """The RP worker launcher of *this* environment (the master's), as an absolute path if possible."""
    name = "radical-pilot-raptor-worker"
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(name) or name


def _configure_worker(
    *, requirements: ClientWorkerRequirements, filename: str, marks: typing.Optional[str] = None
) -> RaptorWorkerConfig:
    """One worker sized by the client's requirements; *marks* is the pool's marks folder (:mod:`.pool`)."""
    return [
        worker_description(
            worker_file=filename,
            named_env=requirements.named_env,
            cpu_processes=requirements.cpu_processes,
            gpus_per_process=requirements.gpus_per_process,
            pre_exec=requirements.pre_exec,
            environment={MARKS_ENV: marks} if marks else None,
            executable=_worker_launcher(),
        )
    ]


parser = argparse.ArgumentParser(
    prog="scalems_rp_master",
    description="Run the scalems RADICAL-Pilot Raptor master (started by scalems as an RP task).",
)
parser.add_argument("file", help="JSON configuration written by scalems.radical.raptor.master_input()")


def _setup_logging():
    level = os.environ.get("SCALEMS_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    scalems_logger = logging.getLogger("scalems")
    scalems_logger.addHandler(handler)
    scalems_logger.setLevel(level if isinstance(logging.getLevelName(level), int) else logging.INFO)


def master(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    """Entry point of the ``scalems_rp_master`` console script; returns the exit status.

    Reads the configuration, checks the software versions, starts one worker,
    waits (bounded) for it to register, then serves until stopped, tending the
    worker pool (:mod:`.pool`) every 0.1 s. Exits 1 if the first worker never
    comes up or no worker is left that could run queued calls (replacements
    failed to start), so the client sees the master task fail instead of
    waiting forever; exits 2 for configuration or compatibility errors.
    """
    _setup_logging()
    args = parser.parse_args(argv)
    try:
        with open(args.file) as fh:
            configuration = MasterTaskConfiguration.from_dict(json.load(fh))
    except (OSError, ValueError) as err:
        logger.error("Cannot read the master configuration %s: %s", args.file, err)
        return 2
    logger.info("scalems Raptor master %s (rp %s): %s", backend_version.version, rp.version, configuration)
    try:
        _master = ScaleMSMaster(configuration)
    except SoftwareCompatibilityError as err:
        logger.error("%s", err)
        return 2
    if not _master._rp_ready:
        logger.error("scalems_rp_master must run as a RADICAL-Pilot task (RP_TASK_ID is not set).")
        return 2

    with _master.configure_worker(configuration.worker) as descriptions:
        pool = _master.pool
        uids = _master.submit_workers(descriptions)
        logger.info("Submitted worker(s) %s.", ", ".join(uids))
        _master.start()
        problem = _master.wait_for_worker(configuration.worker_startup_timeout)
        if problem is None:
            logger.info("Worker ready.")
        elif _master._stopping.is_set():
            logger.info("Stopped before a worker was ready: %s.", problem)
        else:
            sandbox = os.environ.get("RP_TASK_SANDBOX", os.getcwd())
            _master.fail(f"{problem}; see the worker .err files in {sandbox}")
        while _master.alive():
            pool.tend()
            if pool.target and not pool.live() and not _master._stopping.is_set():
                pending = _master.pending_work()
                running = f" while running {', '.join(map(repr, pending[:5]))}" if pending else ""
                more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
                _master.fail(
                    f"all workers ended unexpectedly{running}{more} (replacements failed to start; "
                    f"see the worker .err files in {os.environ.get('RP_TASK_SANDBOX', os.getcwd())})"
                )
                break
            time.sleep(0.1)
        _master.join()
        # Let workers see the stop and leave before their module file goes away.
        deadline = time.monotonic() + 10
        while _master.live_workers()[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        _master.cancel_workers()
    logger.info("Master done (exit status %d).", _master.exit_status)
    return _master.exit_status
