"""Client side of the scalems Raptor master: what the RADICAL-Pilot backend calls.

:class:`RaptorClient` starts a ``scalems_rp_master`` task on the backend's
pilot, waits (bounded) until its worker answers, and then runs single-rank
:class:`FunctionJob` s as :class:`~.messages.AddItem` command tasks, returning
the :mod:`scalems.call` result text as a :class:`FunctionOutcome`. The
backend's budget (:mod:`scalems.radical.allocation`) decides how many workers
the master runs (:meth:`RaptorClient.resize`) and when the pool must make way
for an executable (:meth:`RaptorClient.stop_soon`).

All RP traffic goes through the backend's :class:`~scalems.radical.watch.Submitter`
(one submitter thread, one task watcher per run), so the event loop never
blocks on RP, and every wait has a bound. The master's configuration file
goes into the RP session folder, with RP's own client-side files.
"""

from __future__ import annotations

__all__ = ("RaptorClient",)

import asyncio
import itertools
import json
import logging
import os
import shlex
import time
import typing
import uuid

import radical.pilot as rp
import radical.utils as ru

import scalems.call
from scalems.exceptions import DispatchError, ResourceError
from scalems.execution.jobs import FunctionJob, FunctionOutcome

from ..runtime_configuration import RuntimeConfiguration
from ..session import RuntimeSession
from ..task import python_path_pre_exec
from ..watch import FinalTaskState, Submitter
from .config import CPI_MESSAGE, BackendVersion, backend_version, master_input, master_script
from .messages import AddItem, Command, HelloCommand, ResizeWorkers, StopCommand
from .pool import NOT_STARTED

logger = logging.getLogger(__name__)


def _probe():
    """Run on the worker at start-up: proves the worker imports scalems and runs calls."""
    return os.getpid()


class RaptorClient:
    """A running scalems Raptor master (and its pool of workers) on the backend's pilot.

    Create with :meth:`start`; finish with :meth:`stop`. All methods must be
    called from the event loop that ran :meth:`start`.
    """

    #: Seconds allowed for the master and its first worker to come up.
    startup_timeout: float = 300.0

    #: MPI ranks of the worker. Function jobs with more ranks run as plain RP tasks.
    worker_ranks: int = 1

    def __init__(self, *, submitter: Submitter, master_uid: str, pilot_sandbox: typing.Optional[str]):
        self._submitter = submitter
        self.master_uid = master_uid
        #: Directory of the master task, where the worker ``.err``/``.out`` files also are.
        self.master_sandbox: typing.Optional[str] = (
            os.path.join(ru.Url(pilot_sandbox).path, master_uid) if pilot_sandbox else None
        )
        self.config_file: typing.Optional[str] = None
        self.worker_pid: typing.Optional[int] = None
        self._counter = itertools.count()
        self._outstanding: typing.Set[str] = set()
        self._master_done: typing.Optional["asyncio.Future[FinalTaskState]"] = None
        self._closed = False
        #: Workers the master was asked to run (it starts with one).
        self.workers = 1
        self._resizing: typing.Optional[asyncio.Task] = None
        self._stopping: typing.Optional[asyncio.Task] = None
        self._loop: typing.Optional[asyncio.AbstractEventLoop] = None

    # -- construction ------------------------------------------------------------

    @classmethod
    async def start(
        cls, session: RuntimeSession, configuration: RuntimeConfiguration, submitter: Submitter
    ) -> "RaptorClient":
        """Submit the master (which starts one worker) and wait until the worker runs a call.

        Args:
            session: the backend's open session, its pilot active.
            configuration: the backend configuration: the master and worker run in
                ``target_venv``, after the shell lines of ``pre_exec``.
            submitter: the backend's submitter (its watcher is registered with the
                session's TaskManager).

        Raises:
            DispatchError: the master or worker did not come up (the message says
                where their logs are); nothing of this client is left running.
        """
        venv = configuration.target_venv
        pre_exec = [
            *configuration.pre_exec,
            f"export PATH={shlex.quote(os.path.join(venv, 'bin'))}:$PATH",
            *python_path_pre_exec(configuration),
        ]
        config_file = await asyncio.to_thread(
            master_input,
            directory=session.session.path,
            worker_pre_exec=pre_exec,
            worker_venv=venv,
            cpu_processes=cls.worker_ranks,
            worker_startup_timeout=cls.startup_timeout,
        )
        client = cls(
            submitter=submitter, master_uid=f"scalems.raptor.{uuid.uuid4().hex[:8]}", pilot_sandbox=session.sandbox
        )
        client.config_file = str(config_file)
        client._loop = asyncio.get_running_loop()
        description = rp.TaskDescription(
            {
                "uid": client.master_uid,
                "mode": rp.RAPTOR_MASTER,
                "executable": os.path.join(venv, "bin", master_script()),
                "arguments": [config_file.name],
                "pre_exec": pre_exec,
                "ranks": 1,
                "cores_per_rank": 1,
                "pilot": session.pilot().uid,
                "input_staging": [
                    {"source": str(config_file), "target": f"task:///{config_file.name}", "action": rp.TRANSFER}
                ],
            }
        )
        try:
            client._master_done = submitter.submit(description)
            client._master_done.add_done_callback(client._on_master_final)
            logger.info("Submitted scalems Raptor master %s.", client.master_uid)
            await client._await_ready(cls.startup_timeout)
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
    def alive(self) -> bool:
        """Whether the master runs and this client takes work (not stopped, master not ended)."""
        return not self._closed and self._master_done is not None and not self._master_done.done()

    @property
    def cores(self) -> int:
        """Cores the master and its workers hold on the pilot (0 once stopped or ended)."""
        master = self._master_done
        if master is None or master.done():
            return 0
        return 1 + self.workers * self.worker_ranks

    def _soon(self, func) -> None:
        """Run *func* on this client's event loop (the budget may decide on another thread's loop)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            func()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(func)

    def resize(self, count: int) -> None:
        """Ask the master for *count* workers (returns at once; the master adds or retires workers soon).

        Requests are sent one at a time, the latest count last, so they cannot overtake each other.
        """
        self.workers = count
        self._soon(self._start_resizing)

    def _start_resizing(self):
        if self._resizing is None or self._resizing.done():
            self._resizing = asyncio.ensure_future(self._send_resize())

    async def _send_resize(self):
        sent = None
        while sent != self.workers and self.alive:
            sent = self.workers
            try:
                final = await self._command(ResizeWorkers(sent), timeout=60.0, what="ResizeWorkers")
            except DispatchError as err:
                final = None
                problem = str(err)
            else:
                problem = None if final.state == rp.DONE else final.reason()
            if problem is not None:
                # E.g. an older master that knows no ResizeWorkers: it keeps the workers it has.
                logger.warning("Could not resize the Raptor pool of %s: %s", self.master_uid, problem)
                return

    def stop_soon(self) -> None:
        """Stop the master in the background (see :meth:`stop`); takes no new work from now on."""
        if self._closed:
            return
        self._closed = True
        self._soon(self._start_stopping)

    def _start_stopping(self):
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.stop())

    @property
    def master_state(self) -> typing.Optional[str]:
        """Final RP state of the master task; None while it runs (or if the backend failed it)."""
        final = self._master_final()
        return final.state if final is not None else None

    async def hello(self, *, timeout: float = 60.0) -> BackendVersion:
        """Ask the master who it is; returns its :class:`BackendVersion`."""
        final = await self._command(HelloCommand(), timeout=timeout, what="Hello")
        value = final.return_value
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if final.state != rp.DONE or not isinstance(value, dict):
            raise DispatchError(f"{self.master_uid} did not answer Hello: {final.state} {final.reason()}")
        return BackendVersion.from_dict(value)

    async def run_function(
        self, job: FunctionJob, *, timeout: typing.Optional[float] = None
    ) -> typing.Optional[FunctionOutcome]:
        """Run *job* on a Raptor worker.

        Returns:
            ``FunctionOutcome(result=text)`` with the :mod:`scalems.call` result
            record, whether or not the function raised; ``FunctionOutcome(error=...)``
            if the call could not be run (its worker died while running it, master
            gone, RP failure, *timeout*); None if the master gave the call back
            unstarted because it is stopping (the caller may run it elsewhere).

        Raises:
            ResourceError: the job needs more ranks than the worker has.
            DispatchError: the client was stopped.
        """
        if self._closed:
            raise DispatchError(f"The Raptor client for {self.master_uid} was stopped; it runs no more work")
        ranks = job.resources.ranks
        if ranks > self.worker_ranks:
            raise ResourceError(job.label, ranks, self.worker_ranks, what="MPI ranks in the Raptor worker")
        item = {"call": job.call, "comm_arg_name": job.comm_arg, "label": job.label}
        description = self._describe(AddItem(json.dumps(item)), name=job.label)
        try:
            final = await self._run(description, timeout)
        except asyncio.TimeoutError:
            return FunctionOutcome(
                error=f"{job.label!r} did not finish within {timeout:g} s (Raptor task {description.uid})"
            )
        except DispatchError as err:
            return FunctionOutcome(error=str(err))
        if final.state != rp.DONE and (final.exception or "").find(NOT_STARTED) >= 0:
            return None
        return self._outcome(job, final)

    async def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the master after its pending work; cancel it if it does not end in time.

        Idempotent. Afterwards no task of this client is left running and
        :attr:`master_state` tells how the master ended.
        """
        master = self._master_done
        if self._closed and (master is None or master.done()):
            return
        self._closed = True
        if self._stopping is not None and not self._stopping.done() and asyncio.current_task() is not self._stopping:
            await asyncio.wait({self._stopping}, timeout=timeout)
            return
        deadline = time.monotonic() + timeout

        def remaining():
            return max(0.5, deadline - time.monotonic())

        try:
            if master is not None and not master.done():
                try:
                    await self._command(StopCommand(), timeout=min(remaining(), 30.0), what="Stop")
                except DispatchError as err:
                    logger.warning("Stop command to %s not acknowledged: %s", self.master_uid, err)
                await asyncio.wait({master}, timeout=remaining())
                if not master.done():
                    logger.warning("%s did not stop within %g s; cancelling it.", self.master_uid, timeout)
                    self._submitter.cancel(self.master_uid)
                    await asyncio.wait({master}, timeout=30.0)
                if not master.done():
                    logger.error(
                        "%s is still running; the pilot's runtime limit (or closing the session) will end it.",
                        self.master_uid,
                    )
        finally:
            self._fail_outstanding(f"The Raptor client for {self.master_uid} was stopped")

    # -- internals ---------------------------------------------------------------

    def _describe(self, command: Command, *, name: typing.Optional[str] = None) -> rp.TaskDescription:
        description = {
            "uid": f"{self.master_uid}.{next(self._counter):06d}",
            "mode": CPI_MESSAGE,
            "raptor_id": self.master_uid,
            "metadata": command.encode(),
        }
        if name:
            description["name"] = name
        return rp.TaskDescription(description)

    async def _run(self, description: rp.TaskDescription, timeout: typing.Optional[float]) -> FinalTaskState:
        """Submit one command task to the master and wait for its final state.

        Raises:
            DispatchError: the master is gone (before or while the task ran), or RP refused it.
            asyncio.TimeoutError: not done within *timeout* (the task is cancelled).
        """
        if self._master_done is None or self._master_done.done():
            raise DispatchError(self._master_gone())
        uid = description.uid
        self._outstanding.add(uid)
        try:
            return await self._submitter.run(description, timeout=timeout)
        finally:
            self._outstanding.discard(uid)

    async def _command(self, command: Command, *, timeout: float, what: str) -> FinalTaskState:
        try:
            return await self._run(self._describe(command), timeout)
        except asyncio.TimeoutError:
            raise DispatchError(
                f"{self.master_uid} did not answer {what} within {timeout:g} s; "
                f"master logs: {self.master_sandbox}"
            ) from None

    def _master_final(self) -> typing.Optional[FinalTaskState]:
        master = self._master_done
        if master is None or not master.done() or master.cancelled() or master.exception() is not None:
            return None
        return master.result()

    def _on_master_final(self, master: asyncio.Future):
        final = self._master_final()
        if final is not None:
            level = logging.INFO if final.state == rp.DONE else logging.ERROR
            logger.log(level, "Raptor master %s ended: %s.", self.master_uid, final.state)
        self._fail_outstanding(self._master_gone())

    def _master_gone(self) -> str:
        master = self._master_done
        if master is not None and master.done() and not master.cancelled() and master.exception() is not None:
            return f"The Raptor master {self.master_uid} is gone: {master.exception()}"
        final = self._master_final()
        if final is None:
            return f"The Raptor master {self.master_uid} is gone"
        message = f"The Raptor master {self.master_uid} ended ({final.state}) before the task finished"
        if final.state != rp.DONE:
            message += f": {final.reason()}"
        if self.master_sandbox:
            message += f" (master and worker logs in {self.master_sandbox})"
        return message

    def _fail_outstanding(self, message: str):
        outstanding, self._outstanding = self._outstanding, set()
        for uid in outstanding:
            self._submitter.watcher.fail(uid, DispatchError(message))

    def _outcome(self, job: FunctionJob, final: FinalTaskState) -> FunctionOutcome:
        if final.state == rp.CANCELED:
            return FunctionOutcome(error=f"{job.label!r} was cancelled in RADICAL-Pilot ({final.uid})")
        if final.state != rp.DONE:
            return FunctionOutcome(
                error=f"{job.label!r} could not run in the Raptor worker ({final.uid}): {final.reason()}"
            )
        value = final.return_value
        if isinstance(value, list) and len(value) == 1:  # MPIWorker: one value per rank
            value = value[0]
        if not isinstance(value, str):
            return FunctionOutcome(
                error=f"The Raptor worker returned no result record for {job.label!r} ({final.uid}): {value!r}"
            )
        return FunctionOutcome(result=value, where=final.uid)
