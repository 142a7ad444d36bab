"""Client side of the scalems Raptor master: what the RADICAL-Pilot backend calls.

:class:`RaptorClient` starts a ``scalems_rp_master`` task on a pilot, waits
(bounded) until a worker answers, and then runs :class:`FunctionJob` s as
:class:`~.messages.AddItem` command tasks, returning the
:mod:`scalems.call` result text as a :class:`FunctionOutcome`.

Threading: RP calls can block (and some can block forever if the pilot dies),
so they run in daemon threads, never on the event loop thread, and every wait
has a timeout. A daemon thread (rather than :func:`asyncio.to_thread`) is
used so that a hung RP call can never keep the interpreter from exiting.
RP's task callbacks run in RP threads; they only hand a snapshot of the task
to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

__all__ = ("RaptorClient",)

import asyncio
import dataclasses
import functools
import itertools
import json
import logging
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
import threading
import time
import typing
import uuid

import radical.pilot as rp
import radical.utils as ru

import scalems.call
from scalems.exceptions import DispatchError, ResourceError
from scalems.execution.jobs import FunctionJob, FunctionOutcome

from scalems.execution.waiting import in_thread, wait_within
from .messages import AddItem, HelloCommand, StopCommand
from .config import CPI_MESSAGE, BackendVersion, backend_version, master_input, master_script
from .worker import decode_rank_result

logger = logging.getLogger(__name__)

_FINAL = frozenset((rp.DONE, rp.FAILED, rp.CANCELED))
_T = typing.TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class _Final:
    """What the client keeps of a finished RP task (copied in the RP callback thread)."""

    uid: str
    state: str
    return_value: typing.Any = None
    exception: typing.Optional[str] = None
    exception_detail: typing.Optional[str] = None
    stdout: typing.Any = None
    stderr: typing.Any = None
    exit_code: typing.Optional[int] = None

    @classmethod
    def of(cls, task, state: str) -> "_Final":
        def field(name):
            try:
                return getattr(task, name)
            except Exception:  # noqa: BLE001 - RP properties may raise on odd tasks
                return None

        return cls(
            uid=task.uid,
            state=state,
            return_value=field("return_value"),
            exception=field("exception"),
            exception_detail=field("exception_detail"),
            stdout=field("stdout"),
            stderr=field("stderr"),
            exit_code=field("exit_code"),
        )

    def describe(self) -> str:
        text = self.exception or ""
        stderr = self.stderr
        if isinstance(stderr, list):
            stderr = "\n".join(s for s in stderr if s)
        if stderr:
            text = f"{text}\n{_tail(stderr)}" if text else _tail(stderr)
        return text or f"exit code {self.exit_code}"


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(str(text).rstrip().splitlines()[-lines:])


def _resolve(obj, name: str):
    """``obj.name()`` or ``obj.name``: the backend's session object may offer either."""
    value = getattr(obj, name, None)
    if callable(value) and not isinstance(value, (rp.Pilot, rp.TaskManager, rp.Session)):
        value = value()
    return value


async def _blocking(func: typing.Callable[..., _T], *args, timeout: float, what: str) -> _T:
    """Run a blocking RP call in a daemon thread; wait at most *timeout* seconds."""
    try:
        return await wait_within(in_thread(func, *args, name=f"scalems-rp-{what}"), timeout)
    except asyncio.TimeoutError:
        raise DispatchError(f"RADICAL-Pilot did not complete {what} within {timeout:g} s") from None


def _current_venv() -> typing.Optional[str]:
    return sys.prefix if sys.prefix != getattr(sys, "base_prefix", sys.prefix) else None


def _probe():
    """Run on the worker at start-up: proves the worker imports scalems and runs calls."""
    return os.getpid()


class RaptorClient:
    """A running scalems Raptor master (and its worker) on one pilot.

    Create with :meth:`start`; finish with :meth:`stop` (or ``async with``).
    All methods must be called from the event loop that ran :meth:`start`.
    """

    #: Seconds allowed for one ``TaskManager.submit_tasks`` call.
    submit_timeout: float = 120.0

    def __init__(
        self,
        *,
        task_manager,
        pilot,
        master_uid: str,
        worker_ranks: int,
        config_file: pathlib.Path,
        cleanup_dir: typing.Optional[str] = None,
    ):
        self._tmgr = task_manager
        self._pilot = pilot
        self.master_uid = master_uid
        self.worker_ranks = worker_ranks
        self.config_file = config_file
        self._cleanup_dir = cleanup_dir
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._futures: typing.Dict[str, asyncio.Future] = {}
        self._queue: typing.List[rp.TaskDescription] = []
        self._flusher: typing.Optional[asyncio.Task] = None
        self._background: typing.Set[asyncio.Task] = set()
        self._counter = itertools.count()
        self._master_done: asyncio.Future = self._loop.create_future()
        self.master_task = None
        self.worker_pid: typing.Optional[int] = None
        self._master_sandbox: typing.Optional[str] = None
        self._closed = False
        self._registered = False
        # One bound-method object: RP identifies callbacks by id().
        self._callback = self._on_task_state

    # -- construction ------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        session,
        configuration=None,
        datastore_dir: typing.Union[None, str, os.PathLike] = None,
        *,
        filestore=None,
        pre_exec: typing.Optional[typing.Sequence[str]] = None,
        venv: typing.Optional[str] = None,
        jobs: typing.Iterable = (),
        worker_ranks: typing.Optional[int] = None,
        startup_timeout: float = 300.0,
    ) -> "RaptorClient":
        """Submit the master (which starts one worker) and wait until the worker runs a call.

        Args:
            session: gives ``pilot()``, ``task_manager()`` (methods or attributes)
                and ``session``, the RP objects to use. The task manager must
                already have the pilot added.
            configuration: backend configuration; ``target_venv`` and ``pre_exec``
                are used when present.
            datastore_dir: directory for the master configuration file (a temporary
                directory, removed by :meth:`stop`, if None and no *filestore*).
            filestore: the work directory's store; if given, the configuration file is
                stored there (content-addressed) instead of in *datastore_dir*.
            pre_exec: shell lines for the master and worker tasks (overrides
                ``configuration.pre_exec``).
            venv: virtual environment with scalems and RP at the execution site
                (default: ``configuration.target_venv``, else this interpreter's venv).
            jobs: known function jobs; the worker gets as many ranks as the largest.
            worker_ranks: minimum worker size (default 1).
            startup_timeout: seconds to wait for the master and its worker.

        Raises:
            DispatchError: the master or worker did not come up (the message says
                where their logs are); nothing is left running.
        """
        pilot = _resolve(session, "pilot")
        tmgr = _resolve(session, "task_manager")
        if pilot is None or tmgr is None:
            raise DispatchError("RaptorClient.start() needs a session object with pilot() and task_manager()")
        ranks = max(
            [int(worker_ranks or 1)] + [job.resources.ranks for job in jobs if isinstance(job, FunctionJob)]
        )
        venv = venv or getattr(configuration, "target_venv", None) or _current_venv()
        if pre_exec is None:
            pre_exec = getattr(configuration, "pre_exec", None) or ()
        pre_exec = list(pre_exec)
        if venv:
            venv = str(venv)
            pre_exec.append(f"export PATH={shlex.quote(os.path.join(venv, 'bin'))}:$PATH")
        executable = os.path.join(venv, "bin", master_script()) if venv else master_script()

        cleanup_dir = None
        if datastore_dir is None and filestore is None:
            datastore_dir = cleanup_dir = tempfile.mkdtemp(prefix="scalems_raptor_")
        config_file = await asyncio.to_thread(
            master_input,
            directory=None if filestore is not None else datastore_dir,
            filestore=filestore,
            worker_pre_exec=pre_exec,
            worker_venv=venv,
            cpu_processes=ranks,
            worker_startup_timeout=startup_timeout,
        )
        client = cls(
            task_manager=tmgr,
            pilot=pilot,
            master_uid=f"scalems.raptor.{uuid.uuid4().hex[:8]}",
            worker_ranks=ranks,
            config_file=config_file,
            cleanup_dir=cleanup_dir,
        )
        # Store files are named by their digest alone; give the staged copy a readable name.
        staged_name = config_file.name if config_file.suffix == ".json" else f"scalems_raptor_{config_file.name[:16]}.json"
        description = rp.TaskDescription(
            {
                "uid": client.master_uid,
                "mode": rp.RAPTOR_MASTER,
                "executable": executable,
                "arguments": [staged_name],
                "pre_exec": pre_exec,
                "ranks": 1,
                "cores_per_rank": 1,
                "pilot": pilot.uid,
                "input_staging": [
                    {
                        "source": str(config_file),
                        "target": f"task:///{staged_name}",
                        "action": rp.TRANSFER,
                    }
                ],
            }
        )
        try:
            await _blocking(tmgr.register_callback, client._callback, timeout=60, what="register_callback")
            client._registered = True
            client.master_task = (
                await _blocking(
                    tmgr.submit_tasks, [description], timeout=cls.submit_timeout, what="master submission"
                )
            )[0]
            logger.info("Submitted scalems Raptor master %s (worker ranks: %d).", client.master_uid, ranks)
            await _blocking(lambda: client.master_sandbox, timeout=30, what="pilot sandbox lookup")
            await client._await_ready(startup_timeout)
        except BaseException:
            await asyncio.shield(client.stop(timeout=60))
            raise
        return client

    async def _await_ready(self, timeout: float):
        deadline = time.monotonic() + timeout

        def remaining():
            return max(1.0, deadline - time.monotonic())

        version = await self.hello(timeout=remaining())
        if version.name != backend_version.name:
            raise DispatchError(f"{self.master_uid} answered as {version}, not as a scalems Raptor master")
        probe = FunctionJob(
            uid="probe", label=f"{self.master_uid} worker probe", call=scalems.call.serialize_call(_probe)
        )
        outcome = await self.run_function(probe, timeout=remaining())
        if outcome.error is not None:
            raise DispatchError(
                f"The Raptor worker of {self.master_uid} did not come up: {outcome.error}. "
                f"The worker's .err/.out files are in {self.master_sandbox}"
            )
        result = scalems.call.deserialize_result(outcome.result)
        if result.exception is not None:
            raise DispatchError(
                f"The Raptor worker of {self.master_uid} cannot run scalems calls: {result.exception}"
            )
        self.worker_pid = result.return_value
        logger.info("Raptor worker of %s is up (pid %s).", self.master_uid, self.worker_pid)

    # -- public API --------------------------------------------------------------

    @property
    def master_state(self) -> typing.Optional[str]:
        """Final RP state of the master task, or None while it runs."""
        if self._master_done.done() and not self._master_done.cancelled():
            return self._master_done.result().state
        return None

    @property
    def master_sandbox(self) -> typing.Optional[str]:
        """Directory of the master task, where the worker ``.err``/``.out`` files also are.

        Known once the pilot has a sandbox; computed once (RP takes a lock for it).
        """
        if self._master_sandbox is None:
            try:
                sandbox = self._pilot.pilot_sandbox
            except Exception:  # noqa: BLE001
                sandbox = None
            if sandbox:
                self._master_sandbox = os.path.join(ru.Url(str(sandbox)).path, self.master_uid)
        return self._master_sandbox

    async def hello(self, *, timeout: float = 60.0) -> BackendVersion:
        """Ask the master who it is; returns its :class:`BackendVersion`."""
        final = await self._command(HelloCommand(), timeout=timeout, what="Hello")
        value = final.return_value
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if final.state != rp.DONE or not isinstance(value, dict):
            raise DispatchError(f"{self.master_uid} did not answer Hello: {final.state} {final.describe()}")
        return BackendVersion(**value)

    async def run_function(
        self, job: FunctionJob, *, timeout: typing.Optional[float] = None
    ) -> FunctionOutcome:
        """Run *job* on the Raptor worker.

        Returns:
            ``FunctionOutcome(result=text)`` with the :mod:`scalems.call` result
            record (for ``ranks > 1``: a list of them, in rank order), whether or
            not the function raised; ``FunctionOutcome(error=...)`` if the call
            could not be run (master or worker gone, RP failure, *timeout*).

        Raises:
            ResourceError: the job needs more ranks than the worker has.
            DispatchError: the client was stopped.
        """
        if self._closed:
            raise DispatchError(f"The Raptor client for {self.master_uid} was stopped; it runs no more work")
        ranks = job.resources.ranks
        if ranks > self.worker_ranks:
            raise ResourceError(job.label, ranks, self.worker_ranks, what="MPI ranks in the Raptor worker")
        item = {"call": job.call, "comm_arg_name": job.comm_arg, "ranks": ranks, "label": job.label}
        description = self._describe(AddItem(json.dumps(item)), name=job.label)
        try:
            final = await self._wait(self._submit(description), timeout=timeout)
        except asyncio.TimeoutError:
            self._cancel_later([description.uid])
            return FunctionOutcome(
                error=f"{job.label!r} did not finish within {timeout:g} s (Raptor task {description.uid})"
            )
        except asyncio.CancelledError:
            self._cancel_later([description.uid])
            raise
        except DispatchError as err:
            return FunctionOutcome(error=str(err))
        return self._outcome(job, final)

    async def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the master after its pending work; cancel it if it does not end in time.

        Idempotent. Afterwards no task of this client is left running and
        :attr:`master_state` tells how the master ended.
        """
        if self._closed and self._master_done.done():
            return
        self._closed = True
        deadline = time.monotonic() + timeout

        def remaining():
            return max(0.5, deadline - time.monotonic())

        try:
            if self.master_task is not None and not self._master_done.done():
                try:
                    await self._command(StopCommand(), timeout=min(remaining(), 30.0), what="Stop")
                except (DispatchError, asyncio.TimeoutError) as err:
                    logger.warning("Stop command to %s not acknowledged: %s", self.master_uid, err)
                await self._wait_master(remaining())
                if not self._master_done.done():
                    logger.warning("%s did not stop within %g s; cancelling it.", self.master_uid, timeout)
                    try:
                        await _blocking(self._tmgr.cancel_tasks, [self.master_uid], timeout=30, what="cancel")
                    except Exception as err:  # noqa: BLE001
                        logger.error("Could not cancel %s: %s", self.master_uid, err)
                    await self._wait_master(30.0)
                if not self._master_done.done():
                    logger.error(
                        "%s is still running; the pilot's runtime limit (or closing the session) will end it.",
                        self.master_uid,
                    )
        finally:
            await self._shutdown()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.stop()
        return False

    # -- internals ---------------------------------------------------------------

    def _describe(self, command, *, name: typing.Optional[str] = None) -> rp.TaskDescription:
        description = {
            "uid": f"{self.master_uid}.{next(self._counter):06d}",
            "mode": CPI_MESSAGE,
            "raptor_id": self.master_uid,
            "metadata": command.encode(),
        }
        if name:
            description["name"] = name
        return rp.TaskDescription(description)

    async def _command(self, command, *, timeout: float, what: str) -> _Final:
        description = self._describe(command)
        try:
            return await self._wait(self._submit(description), timeout=timeout)
        except asyncio.TimeoutError:
            self._cancel_later([description.uid])
            raise DispatchError(
                f"{self.master_uid} did not answer {what} within {timeout:g} s; "
                f"master logs: {self.master_sandbox}"
            ) from None

    def _submit(self, description: rp.TaskDescription) -> asyncio.Future:
        """Queue *description*; one flusher submits everything queued in one RP call."""
        if self._master_done.done():
            raise DispatchError(self._master_gone())
        future = self._loop.create_future()
        with self._lock:
            self._futures[description.uid] = future
        self._queue.append(description)
        if self._flusher is None or self._flusher.done():
            self._flusher = self._loop.create_task(self._flush())
        return future

    async def _flush(self):
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await _blocking(
                    self._tmgr.submit_tasks, batch, timeout=self.submit_timeout, what="task submission"
                )
            except BaseException as err:
                for description in batch:
                    self._settle(
                        description.uid, exception=DispatchError(f"Could not submit {description.uid}: {err}")
                    )
                if not isinstance(err, Exception):
                    raise

    async def _wait(self, future: asyncio.Future, *, timeout: typing.Optional[float]) -> _Final:
        try:
            return await wait_within(future, timeout)
        finally:
            if not future.done() or future.cancelled():
                with self._lock:
                    for uid, pending in list(self._futures.items()):
                        if pending is future:
                            del self._futures[uid]

    async def _wait_master(self, timeout: float):
        await asyncio.wait({self._master_done}, timeout=timeout)

    def _cancel_later(self, uids: typing.List[str]):
        """Best-effort cancellation of RP tasks whose caller went away (never awaited by it)."""

        async def cancel():
            try:
                await _blocking(self._tmgr.cancel_tasks, uids, timeout=30, what="cancel")
            except Exception as err:  # noqa: BLE001
                logger.debug("Cancelling %s failed: %s", uids, err)

        task = self._loop.create_task(cancel())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _settle(self, uid: str, *, result=None, exception=None):
        with self._lock:
            future = self._futures.pop(uid, None)
        if future is not None and not future.done():
            if exception is not None:
                future.set_exception(exception)
            else:
                future.set_result(result)

    def _on_task_state(self, task, state=None):
        """RP callback (RP thread): snapshot finished tasks and hand them to the loop.

        With ``RADICAL_PILOT_BULK_CB`` set, RP passes a list of tasks and no state.
        """
        if isinstance(task, list):
            for each in task:
                self._on_task_state(each, each.state)
            return
        if state not in _FINAL:
            return
        uid = task.uid
        if uid == self.master_uid:
            self._post(self._on_master_final, _Final.of(task, state))
            return
        with self._lock:
            if uid not in self._futures:
                return
        self._post(functools.partial(self._settle, uid, result=_Final.of(task, state)))

    def _post(self, func, *args):
        try:
            self._loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass

    def _on_master_final(self, final: _Final):
        if not self._master_done.done():
            self._master_done.set_result(final)
        level = logging.INFO if final.state == rp.DONE else logging.ERROR
        logger.log(level, "Raptor master %s ended: %s.", self.master_uid, final.state)
        self._fail_pending(self._master_gone())

    def _master_gone(self) -> str:
        final = self._master_done.result() if self._master_done.done() else None
        if final is None:
            return f"The Raptor master {self.master_uid} is gone"
        detail = final.describe() if final.state != rp.DONE else ""
        message = f"The Raptor master {self.master_uid} ended ({final.state}) before the task finished"
        if detail:
            message += f": {detail}"
        if self.master_sandbox:
            message += f" (master and worker logs in {self.master_sandbox})"
        return message

    def _fail_pending(self, message: str):
        with self._lock:
            pending, self._futures = self._futures, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DispatchError(message))

    def _outcome(self, job: FunctionJob, final: _Final) -> FunctionOutcome:
        if final.state == rp.CANCELED:
            return FunctionOutcome(error=f"{job.label!r} was cancelled in RADICAL-Pilot ({final.uid})")
        if final.state != rp.DONE:
            return FunctionOutcome(
                error=f"{job.label!r} could not run in the Raptor worker ({final.uid}): {final.describe()}"
            )
        values = final.return_value if isinstance(final.return_value, list) else [final.return_value]
        ranks = job.resources.ranks
        ordered: typing.List[typing.Any] = [None] * ranks
        unranked = []
        for value in values:
            rank, text = decode_rank_result(value)
            if rank is None:
                unranked.append(text)
            elif 0 <= rank < ranks:
                ordered[rank] = text
        for index, rank in enumerate([r for r in range(ranks) if ordered[r] is None]):
            if index < len(unranked):
                ordered[rank] = unranked[index]
        if any(not isinstance(text, str) for text in ordered):
            return FunctionOutcome(
                error=f"The Raptor worker returned no result record for {job.label!r} ({final.uid}): {values!r}"
            )
        return FunctionOutcome(result=ordered[0] if ranks == 1 else ordered)

    async def _shutdown(self):
        self._fail_pending(f"The Raptor client for {self.master_uid} was stopped")
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        if self._background:
            # Outstanding best-effort cancellations; bounded, they may not outlive the loop.
            await asyncio.wait(set(self._background), timeout=35)
        if self._registered:
            self._registered = False
            try:
                await _blocking(
                    self._tmgr.unregister_callback, self._callback, timeout=30, what="unregister_callback"
                )
            except Exception as err:  # noqa: BLE001
                logger.debug("unregister_callback failed: %s", err)
        if self._cleanup_dir:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            self._cleanup_dir = None
