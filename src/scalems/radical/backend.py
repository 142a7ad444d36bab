"""The RADICAL-Pilot execution backend: :class:`RadicalBackend`.

The workflow layer enters the backend on its dispatcher event loop and calls
:meth:`~scalems.execution.RuntimeManager.run` concurrently for many jobs. RP
calls block, so they run in worker threads: session start-up and close in
their own threads, task submission and cancellation in one long-lived
submitter thread (which submits whatever has queued up as one bulk). RP
reports task states from its own thread; a :class:`~.watch.TaskWatcher` hands
them to the event loop. The Raptor client (``enable_raptor``) shares that
submitter and watcher (:mod:`.watch`). The backend's limiter is the pilot's
cores (:mod:`.allocation`): it sizes the Raptor pool and keeps it from
starving executables.
"""

from __future__ import annotations

__all__ = ("RadicalBackend", "executor_factory", "current_configuration")

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import logging
import os
import pathlib
import typing

from scalems.exceptions import (
    APIError,
    ConfigurationError,
    DispatchError,
    MissingDependencyError,
    SoftwareCompatibilityError,
)

try:
    import radical.pilot as rp
except ImportError as _error:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("radical.pilot", "radical") from _error

from scalems.execution import (
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    RuntimeManager,
)
from scalems.execution.waiting import await_bounded, in_thread, wait_within

from . import task_environment
from .allocation import PilotBudget, PilotShape, pilot_shape
from .batch_job import batch_system, pilot_job_note
from .queue_watch import QueueWatch
from .runtime_configuration import RuntimeConfiguration
from .session import RuntimeSession
from .task import (
    CALL_FILE,
    PathAliases,
    StagingError,
    describe_executable,
    describe_function,
    executable_outcome,
    function_outcome,
)
from .watch import FinalTaskState, Submitter, TaskWatcher

logger = logging.getLogger(__name__)

#: Name of the folder (in the work directory) holding RP's client-side session folders.
SESSION_DIRNAME = "scalems_radical"

#: Local pilots that are no batch job (local.localhost) start in ~20 s; one that takes this
#: long has a problem. A batch job may wait in the queue: it gets no default limit.
LOCAL_PILOT_STARTUP_TIMEOUT = 300.0

#: Sessions tried when RP hangs while creating one (see ``session_startup_timeout``).
SESSION_START_ATTEMPTS = 2

_configuration: contextvars.ContextVar[typing.Optional[RuntimeConfiguration]] = contextvars.ContextVar(
    "scalems.radical.configuration", default=None
)


def current_configuration() -> typing.Optional[RuntimeConfiguration]:
    """The configuration of the RADICAL backend active in this context, if any.

    Set while a :class:`RadicalBackend` is entered, in the context that
    entered it (and tasks created from there).
    """
    return _configuration.get()


def _raptor_client_class():
    """The Raptor client class, or a ConfigurationError saying why --enable-raptor cannot work."""
    try:
        from scalems.radical.raptor import RaptorClient
    except ImportError as error:
        raise ConfigurationError(
            f"--enable-raptor needs scalems.radical.raptor.RaptorClient, which is not available here ({error}). "
            "Run without --enable-raptor: function tasks then run as 'python -m scalems.call' RP tasks."
        ) from error
    return RaptorClient


class RadicalBackend(RuntimeManager[RuntimeConfiguration, RuntimeSession]):
    """Runs jobs as RADICAL-Pilot tasks on one pilot.

    Executables become ``rp.TaskDescription`` s with staging of their inputs,
    stdin, stdout, stderr and declared outputs; function calls become ``python
    -m scalems.call`` tasks, or go to the scalems Raptor workers when
    ``enable_raptor`` is set. Results are staged back into each job's local
    directory. The limiter (:class:`~.allocation.PilotBudget`) counts the
    pilot's cores: it grows the Raptor pool while calls wait and cores are free,
    and shrinks or stops it when an executable needs the cores. A call that
    kills its worker fails (the master replaces the worker); calls the master
    gives back unstarted, and all calls once the pool is stopped, run as their
    own RP tasks. A job that can never fit the pilot fails at once.

    Args:
        configuration: the backend settings.
        work_dir: the workflow's work directory; RP's client-side session folder
            goes into its ``scalems_radical`` folder unless the configuration says otherwise.
    """

    name = "radical"
    function_jobs_need_directory = True

    def __init__(
        self,
        *,
        configuration: RuntimeConfiguration,
        work_dir: typing.Optional[os.PathLike] = None,
    ):
        if not isinstance(configuration, RuntimeConfiguration):
            raise TypeError(
                f"scalems.radical needs a RuntimeConfiguration, got {type(configuration).__name__}; "
                "use scalems.radical.configuration(...)"
            )
        if configuration.enable_raptor:
            _raptor_client_class()  # fail now, before a pilot is started for nothing
        super().__init__(configuration=configuration)
        params = configuration.rp_resource_params
        requested = (
            PilotShape(cores=int(params["cores"]), gpus=int(params.get("gpus") or 0))
            if params.get("cores")
            else None
        )
        self.limiter = PilotBudget(requested)
        if configuration.session_dir is not None:
            session_dir = pathlib.Path(configuration.session_dir)
        else:
            session_dir = (
                pathlib.Path(work_dir if work_dir is not None else os.getcwd()).absolute() / SESSION_DIRNAME
            )
        self.session_dir = session_dir
        self._watcher: typing.Optional[TaskWatcher] = None
        self._submitter: typing.Optional[Submitter] = None
        self._raptor = None
        self._raptor_lost = False
        self._aliases = PathAliases()
        self._counter = itertools.count()
        self._pilot_error: typing.Optional[str] = None
        self._closing = False

    # -- configuration scope -------------------------------------------------------------
    @contextlib.contextmanager
    def runtime_configuration(self) -> typing.Iterator[RuntimeConfiguration]:
        """Publish the configuration for :func:`current_configuration`; refuse nesting."""
        if _configuration.get() is not None:
            raise APIError(
                "A scalems.radical runtime is already active in this context; it cannot be nested."
            )
        config = self.configuration()
        token = _configuration.set(config)
        try:
            yield config
        finally:
            try:
                _configuration.reset(token)
            except ValueError:
                # Left from another asyncio task than the one that entered: that context is gone anyway.
                _configuration.set(None)

    # -- start-up and shut-down ------------------------------------------------------------
    @property
    def raptor(self):
        """The Raptor client, when ``enable_raptor`` is set and the backend is running."""
        return self._raptor

    async def runtime_startup(self) -> RuntimeSession:
        """Start the RP session and pilot, prepare the task environment; with
        ``enable_raptor``, the scalems Raptor master.

        Raises:
            DispatchError: the pilot could not be started (the message says where its logs are).
            ConfigurationError: RP refused the configuration.
            SoftwareCompatibilityError: the task environment could not be created, or does
                not match the client's versions.
        """
        config = self.configuration()
        self._watcher = TaskWatcher(asyncio.get_running_loop())
        runtime: typing.Optional[RuntimeSession] = None
        try:
            runtime = await self._open_session(config)
            tmgr = runtime.task_manager()
            await self._step(
                runtime, tmgr.register_callback, self._watcher.callback, what="callback registration"
            )
            self._submitter = Submitter(tmgr, self._watcher)
            timeout = config.pilot_startup_timeout
            watch = None
            if batch_system(runtime.pilot()) is not None:
                # A batch job may wait in the queue for as long as the site likes: no time limit
                # unless the user set one, but the log and the progress line say that it waits.
                watch = QueueWatch(runtime.pilot(), self._set_status_note)
            elif timeout is None and config.is_local:
                timeout = LOCAL_PILOT_STARTUP_TIMEOUT
            try:
                await self._step(runtime, runtime.wait_for_pilot, timeout, watch, what="pilot start-up")
                if config.enable_raptor and runtime.pilot().state != rp.PMGR_ACTIVE:
                    # The pool is sized from the active pilot; the master could not start before anyway.
                    await self._step(
                        runtime, runtime.wait_for_pilot, _raptor_client_class().startup_timeout, what="pilot activation"
                    )
                await self._prepare_task_environment(runtime)
            finally:
                self.status_note = None
            pilot = runtime.pilot()
            shape = pilot_shape(pilot, pilot.description or {}) if pilot.state == rp.PMGR_ACTIVE else None
            shape = shape or self.limiter.shape
            if config.enable_raptor and shape is not None and shape.cores < 2:
                logger.warning(
                    "The pilot has %d core: too few for a Raptor master and a worker. Function calls run as "
                    "separate RP tasks (ask for more with --pilot-option cores=N).",
                    shape.cores,
                )
            elif config.enable_raptor:
                self._raptor = await self._start_raptor(runtime)
            if shape is not None:
                self.limiter.set_pilot(shape, self._raptor)
        except BaseException as error:
            expected = (asyncio.CancelledError, DispatchError, ConfigurationError, SoftwareCompatibilityError)
            if not isinstance(error, expected):
                logger.exception("RADICAL-Pilot start-up failed")
            try:
                await self._teardown(runtime)
            except asyncio.CancelledError:
                pass
            if isinstance(error, (ValueError, RuntimeError)) and not isinstance(error, expected):
                raise DispatchError(f"RADICAL-Pilot could not be started: {error}") from error
            raise
        return runtime

    def _set_status_note(self, note: typing.Optional[str]) -> None:
        self.status_note = note

    async def _prepare_task_environment(self, runtime: RuntimeSession) -> None:
        """Before any task: provision the task environment (no ``--venv``, not
        ``local.localhost``), then check it against the client (:mod:`.task_environment`).

        A provisioned environment replaces the configuration by a copy naming it, which
        every task (and the Raptor master) then activates.
        """
        config = self.configuration()
        provisioned = config.provisions_task_environment
        if provisioned:
            plan = await asyncio.to_thread(
                task_environment.plan, config, runtime.pilot(), self.session_dir / "task-env"
            )
            path = await task_environment.provision(
                config, plan, self._submitter, self._aliases, status=self._set_status_note
            )
            config = dataclasses.replace(config, target_venv=path, provisioned=True)
            self._configuration = config
            _configuration.set(config)
        if task_environment.needs_version_check(config):
            await task_environment.check_versions(
                config, self._submitter, provisioned=provisioned, status=self._set_status_note
            )

    async def _open_session(self, config: RuntimeConfiguration) -> RuntimeSession:
        """Create the RP session, its managers and the pilot; start over once if RP hangs.

        RP 1.103 occasionally never answers a registry request while it sets up its
        managers (seen in CI); that thread cannot be interrupted. Past
        ``session_startup_timeout`` the stuck session is closed (its local processes
        reaped) and a fresh one is started. Any other failure closes the session and
        propagates.
        """
        timeout = config.session_startup_timeout
        attempt = 0
        while True:
            attempt += 1
            runtime = RuntimeSession(config, self.session_dir)
            try:
                callback = self._pilot_callback(runtime)
                await self._step(runtime, runtime.open, callback, what="session start-up", timeout=timeout)
                return runtime
            except asyncio.TimeoutError:
                where = f"; its client logs are in {runtime.session.path}" if runtime.session is not None else ""
                problem = f"RADICAL-Pilot hung while {runtime.stage} (no answer for {timeout:g} s){where}"
                runtime.abort()
                await self._close_session(runtime)
                if attempt == SESSION_START_ATTEMPTS:
                    raise DispatchError(
                        f"{problem}. Gave up after {attempt} sessions. If RP is merely slow on this machine, "
                        "raise RuntimeConfiguration.session_startup_timeout."
                    ) from None
                logger.warning("%s. Closed that session; starting a new one.", problem)
            except BaseException:
                try:
                    await self._close_session(runtime)
                except asyncio.CancelledError:
                    pass
                raise

    async def _step(self, runtime: RuntimeSession, func, *args, what: str, timeout: typing.Optional[float] = None):
        """Run one blocking start-up step in a thread; on cancellation, stop it and wait for it.

        With *timeout*, raise :class:`asyncio.TimeoutError` when the step has not ended by
        then; the thread is left running (the caller closes the session under it).
        """
        future = in_thread(func, *args, name=f"scalems-rp-{what.replace(' ', '-')}")
        try:
            return await wait_within(future, timeout, cancel=False)
        except asyncio.CancelledError:
            runtime.abort()
            try:
                await await_bounded(future, self.configuration().close_timeout, f"RADICAL-Pilot {what}")
            except BaseException:  # noqa: BLE001 - we are leaving anyway
                pass
            raise

    async def _start_raptor(self, runtime: RuntimeSession):
        RaptorClient = _raptor_client_class()
        # ---- Raptor hook -----------------------------------------------------------------
        # scalems.radical.raptor owns the master/worker protocol; this backend only hands it
        # the running session and its submitter, and routes function jobs to it (see run_function).
        return await RaptorClient.start(runtime, self.configuration(), self._submitter)

    async def runtime_shutdown(self, runtime: RuntimeSession) -> None:
        """Stop Raptor, cancel what is still queued, close the session (bounded, even on Ctrl-C)."""
        self._closing = True
        try:
            raptor, self._raptor = self._raptor, None
            if raptor is not None:
                try:
                    # ---- Raptor hook: shut the master and its workers down. ----
                    await raptor.stop()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the session close below ends it anyway
                    logger.exception("Stopping the scalems Raptor master failed")
            if self._watcher is not None:
                pending = self._watcher.pending()
                if pending:
                    logger.warning("Closing the RADICAL backend with %d task(s) still pending.", len(pending))
                    if self._submitter is not None:
                        for uid in pending:
                            self._submitter.cancel(uid)
                self._watcher.fail_all(
                    DispatchError("the RADICAL backend was closed before the task finished")
                )
        finally:
            await self._teardown(runtime)

    async def _teardown(self, runtime: typing.Optional[RuntimeSession]) -> None:
        self._closing = True
        if self._submitter is not None:
            self._submitter.stop()
            self._submitter = None
        try:
            if runtime is not None:
                await self._close_session(runtime)
        finally:
            self._aliases.close()

    async def _close_session(self, runtime: RuntimeSession) -> None:
        """Close *runtime* in a thread, bounded by ``close_timeout`` even on cancellation."""
        closing = in_thread(runtime.close, name="scalems-rp-close")
        await await_bounded(closing, self.configuration().close_timeout, "closing the RADICAL-Pilot session")

    def _pilot_callback(self, runtime: RuntimeSession):
        """The pilot state callback for *runtime*: silent once that session is being closed
        (a replaced session's pilot must not fail the jobs of its successor)."""

        def callback(pilot, state=None, *args):
            if not runtime.closed:
                self._on_pilot_state(pilot, state, *args)

        return callback

    def _on_pilot_state(self, pilot, state=None, *args):
        """RP thread: a pilot that ends while the backend runs fails every waiting job.

        RP 1.103 calls pilot callbacks as ``cb([pilot])`` (a list, no state), not as
        documented ``cb(pilot, state)``; accept both.
        """
        if isinstance(pilot, (list, tuple)):
            for one in pilot:
                self._pilot_ended(one, one.state)
        else:
            self._pilot_ended(pilot, pilot.state if state is None else state)

    def _pilot_ended(self, pilot, state):
        if state not in rp.FINAL or self._closing or self._pilot_error is not None:
            return
        message = (
            f"Pilot {pilot.uid} on {self.configuration().execution_target!r} ended ({state}) while the workflow "
            f"was running; its sandbox: {getattr(pilot, 'pilot_sandbox', '?')}{pilot_job_note(pilot)}"
        )
        if state == rp.DONE:
            message += " (the pilot's run time limit may have been reached: raise it with --pilot-option runtime=MINUTES)"
        self._pilot_error = message
        logger.error(message)
        if self._watcher is not None:
            self._watcher.fail_all(DispatchError(message))

    # -- running jobs ----------------------------------------------------------------------
    def _check_running(self):
        if self._pilot_error is not None:
            raise DispatchError(self._pilot_error)
        if self._submitter is None or self._watcher is None:
            raise DispatchError("The RADICAL backend is not running (enter it with 'async with' first).")

    def _next_uid(self) -> str:
        return f"scalems.task.{next(self._counter):06d}"

    async def _submit_and_wait(self, description: rp.TaskDescription) -> FinalTaskState:
        self._check_running()
        return await self._submitter.run(description)

    async def run_executable(self, job: ExecutableJob) -> ExecutableOutcome:
        misfit = self.limiter.misfit(job.label, job.resources)
        if misfit is not None:
            return ExecutableOutcome(exitcode=None, error=str(misfit))
        uid = self._next_uid()
        try:
            description = describe_executable(job, uid, self.configuration(), self._aliases)
        except StagingError as error:
            return ExecutableOutcome(exitcode=None, error=str(error))
        final = await self._submit_and_wait(description)
        first = job.argv[0]
        program = first.name if isinstance(first, InputFile) else os.fspath(first)
        return executable_outcome(job, final, program)

    async def run_function(self, job: FunctionJob) -> FunctionOutcome:
        misfit = self.limiter.misfit(job.label, job.resources)
        if misfit is not None:
            return FunctionOutcome(error=str(misfit))
        raptor = self._raptor
        if raptor is not None and job.resources.ranks <= raptor.worker_ranks:
            if raptor.alive:
                # ---- Raptor hook: function calls go to the scalems Raptor workers. ----
                outcome = await raptor.run_function(job)
                if outcome is not None:
                    return outcome
                # Given back unstarted: the pool stopped to make room for an executable.
                logger.info("Running %r as its own RP task: the Raptor pool stopped before it started.", job.label)
            if not self._raptor_lost:
                self._raptor_lost = True
                logger.warning(
                    "The scalems Raptor master %s has ended (%s); function calls run as separate RP tasks "
                    "from now on.",
                    raptor.master_uid,
                    raptor.master_state or "stopped",
                )
        directory = job.directory
        if directory is None:
            directory = self.session_dir / "calls" / job.uid
        directory = pathlib.Path(directory)
        if directory != job.directory:
            job = job._replace(directory=directory)
        await asyncio.to_thread(_write_call, directory, job.call)
        uid = self._next_uid()
        try:
            description = describe_function(job, uid, self.configuration(), self._aliases)
        except StagingError as error:
            return FunctionOutcome(error=str(error))
        final = await self._submit_and_wait(description)
        return await asyncio.to_thread(function_outcome, job, final)


def _write_call(directory: pathlib.Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CALL_FILE).write_text(text)


def executor_factory(manager, params: typing.Optional[RuntimeConfiguration] = None) -> RadicalBackend:
    """Create the RADICAL backend for *manager* (the workflow manager).

    Args:
        manager: the workflow manager; only its ``directory`` (the work directory, which holds
            RP's session folder) is used.
        params: the backend configuration (from :func:`scalems.radical.configuration`).
    """
    if params is None:
        params = current_configuration()
    if params is None:
        raise ConfigurationError(
            "scalems.radical needs a configuration: pass scalems.radical.configuration([...]) "
            "(at least --resource) to the workflow manager."
        )
    return RadicalBackend(configuration=params, work_dir=manager.directory)
