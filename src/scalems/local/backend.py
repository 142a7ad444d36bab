"""Run jobs on this machine: asyncio subprocesses, MPI launches, warm Python workers."""

from __future__ import annotations

__all__ = ("LocalConfiguration", "LocalBackend", "LocalExecutor", "backend_factory", "executor_factory")

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import typing

from scalems.exceptions import ConfigurationError
from scalems.execution.waiting import wait_within
from scalems.execution import (
    Backend,
    CoreLimiter,
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    Resources,
    place_inputs,
)
from .children import spawn
from .guardian import Guardian, end_leftovers
from .placement import GPU_VARIABLES, SlotMap, detect_gpus, pin, usable_cpus
from .worker_pool import QUEUE_DEPTH, WorkerDied, WorkerPool

#: Seconds after which a one-core task is pinned to its core (see LocalBackend._pin).
PIN_AFTER = 0.02

#: The local backend's own folder in the work directory (the guardian's records of running processes).
LOCAL_DIRNAME = "scalems_local"

logger = logging.getLogger(__name__)


def _default_launcher() -> str:
    """``mpiexec`` next to the running interpreter (the ``mpich`` wheel puts it there), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        import shlex

        return f"{shlex.quote(beside)} -n {{ranks}}"
    return "mpiexec -n {ranks}"


@dataclasses.dataclass
class LocalConfiguration:
    """Settings of the local backend.

    Attributes:
        cores: cores tasks may use at once (default: all cores of this machine).
        gpus: GPUs tasks may use at once (default: the GPUs found, see :func:`~.placement.detect_gpus`).
        mpi_launcher: command prefix for tasks with ``ranks > 1``; ``{ranks}`` is replaced.
        grace_period: seconds between SIGTERM and SIGKILL when stopping a task.
        bind: pin each executable task's processes to the cores it reserved (``--no-bind``: don't).
    """

    cores: typing.Optional[int] = None
    gpus: typing.Optional[int] = None
    mpi_launcher: typing.Optional[str] = None
    grace_period: float = 5.0
    bind: bool = True

    def __post_init__(self):
        if self.cores is None:
            self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if not isinstance(self.cores, int) or self.cores < 1:
            raise ConfigurationError(f"cores must be a positive integer, got {self.cores!r}")
        if self.gpus is None:
            self.gpus = len(detect_gpus())
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise ConfigurationError(f"gpus must be a non-negative integer, got {self.gpus!r}")
        if self.mpi_launcher is None:
            self.mpi_launcher = _default_launcher()
        elif "{ranks}" not in self.mpi_launcher:
            raise ConfigurationError(
                f"mpi_launcher {self.mpi_launcher!r} must contain '{{ranks}}', e.g. 'mpiexec -n {{ranks}}'"
            )

    def launcher(self, ranks: int) -> list:
        import shlex

        return shlex.split(self.mpi_launcher.format(ranks=ranks))


class _LocalLimiter(CoreLimiter):
    """The core budget, plus room for single-core calls queued in warm workers behind running ones.

    A queued call is not running, so it uses no core; handing it over early keeps
    workers busy between calls. How many fit follows the pool's queue depth, which
    adapts to how long calls take.
    """

    __slots__ = ("backend",)

    def __init__(self, backend: "LocalBackend", cores: int, gpus: int):
        super().__init__(cores, gpus)
        self.backend = backend

    def extra_cores(self, kind: str, resources: Resources) -> int:
        if kind != "function" or resources.cores != 1 or resources.gpus:
            return 0
        pool = self.backend.runtime
        depth = pool.queue_depth if pool is not None else QUEUE_DEPTH
        return self.cores * (depth - 1)


class LocalBackend(Backend[LocalConfiguration, WorkerPool]):
    """Backend running everything as child processes of this process."""

    name = "local"
    function_jobs_need_directory = False

    def __init__(self, *, configuration: typing.Optional[LocalConfiguration] = None, work_dir=None):
        super().__init__(configuration=configuration or LocalConfiguration())
        config = self.configuration()
        self.limiter = _LocalLimiter(self, config.cores, config.gpus)
        self._work_dir = None if work_dir is None else os.fspath(work_dir)
        self._processes: set = set()
        self._null_fd: typing.Optional[int] = None
        self._guardian: typing.Optional[Guardian] = None
        cpus = usable_cpus()
        self._bind = config.bind and hasattr(os, "sched_setaffinity")
        self._cores = SlotMap([cpus[i % len(cpus)] for i in range(config.cores)])
        found = detect_gpus()
        self._gpus = SlotMap([*found[: config.gpus], *(str(i) for i in range(len(found), config.gpus))])
        self._environments: dict = {}  # OMP_NUM_THREADS -> the inherited environment with it set

    async def runtime_startup(self) -> WorkerPool:
        config = self.configuration()
        running = os.path.join(self._work_dir or os.getcwd(), LOCAL_DIRNAME, "running")
        # Processes an earlier run of this directory left running (it was killed along with its
        # guardian) must end before their tasks start again: a task never runs twice at once.
        await asyncio.to_thread(end_leftovers, running, config.grace_period)
        self._guardian = Guardian(running, grace=config.grace_period)
        return WorkerPool(config.cores, cwd=self._work_dir, guardian=self._guardian)

    async def runtime_shutdown(self, runtime: WorkerPool) -> None:
        processes = list(self._processes)
        if processes:
            logger.warning("Stopping %d running task process(es).", len(processes))
            await asyncio.gather(*(self._terminate(p) for p in processes), return_exceptions=True)
        if runtime is not None:
            await runtime.close()
        if self._null_fd is not None:
            os.close(self._null_fd)
            self._null_fd = None
        if self._guardian is not None:
            self._guardian.close()
            self._guardian = None

    # ---- executables ---------------------------------------------------------------------------------
    async def run_executable(self, job: ExecutableJob) -> ExecutableOutcome:
        if job.inputs:
            error = place_inputs(job)
            if error is not None:
                return ExecutableOutcome(None, error=error)
        argv = [os.fspath(a.source) if isinstance(a, InputFile) else a for a in job.argv]
        if job.resources.ranks > 1:
            launcher = self.configuration().launcher(job.resources.ranks)
            import shutil

            if shutil.which(launcher[0]) is None:
                return ExecutableOutcome(
                    None,
                    error=f"ranks={job.resources.ranks} needs an MPI launcher, but {launcher[0]!r} was not found. "
                    "Install one (pip install 'scalems[mpi]') or choose it with --mpi-launcher.",
                )
            argv = launcher + argv
        resources = job.resources
        cores = self._cores.take(resources.cores) if self._bind else None
        gpus = self._gpus.take(resources.gpus) if resources.gpus else None
        try:
            return await self._spawn_and_wait(job, argv, cores, gpus)
        finally:
            if cores:
                self._cores.give(cores)
            if gpus:
                self._gpus.give(gpus)

    def _environment(self, job: ExecutableJob, gpus) -> dict:
        """The task's environment: inherited, the run's mark (see :mod:`.guardian`), ``OMP_NUM_THREADS`` =
        cores per rank, its GPUs, its ``env``."""
        threads = str(job.resources.cores_per_rank)
        if not job.env and not gpus:
            env = self._environments.get(threads)
            if env is None:
                env = self._environments[threads] = {**os.environ, **self._guardian.environment, "OMP_NUM_THREADS": threads}
            return env
        env = {**os.environ, **self._guardian.environment, "OMP_NUM_THREADS": threads}
        if gpus:
            devices = ",".join(self._gpus.names_of(gpus))
            env.update(dict.fromkeys(GPU_VARIABLES, devices))
        env.update(job.env)  # the task's own settings win
        return env

    async def _spawn_and_wait(self, job: ExecutableJob, argv: list, cores, gpus) -> ExecutableOutcome:
        env = self._environment(job, gpus)
        directory = os.fspath(job.directory)
        # Plain descriptors: the child inherits them; Python file objects would only add cost.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        fds = []
        try:
            if job.stdin is not None:
                stdin = os.open(job.stdin, os.O_RDONLY | os.O_CLOEXEC)
                fds.append(stdin)
            else:
                stdin = self._devnull()
            out = os.open(os.path.join(directory, job.stdout), flags, 0o644)
            fds.append(out)
            err = os.open(os.path.join(directory, job.stderr), flags, 0o644)
            fds.append(err)
            try:
                process = await spawn(
                    argv, cwd=directory, stdin=stdin, stdout=out, stderr=err, env=env, start_new_session=True
                )
                if cores:
                    pinning = self._pin(process.pid, cores, job.resources)
            except FileNotFoundError:
                return ExecutableOutcome(None, error=_not_found(argv[0], env))
            except PermissionError:
                return ExecutableOutcome(None, error=f"program {argv[0]!r} is not executable (permission denied)")
            except OSError as error:
                return ExecutableOutcome(None, error=f"could not start {argv[0]!r}: {error}")
        finally:
            for fd in fds:
                os.close(fd)
        self._processes.add(process)
        try:
            exitcode = await process.wait()
        except asyncio.CancelledError:
            await self._terminate(process)
            raise
        finally:
            self._processes.discard(process)
            if cores and pinning is not None:
                pinning.cancel()
        return ExecutableOutcome(exitcode, where=_where(self._cores.names_of(cores)) if cores else "local")

    def _pin(self, pid: int, cores: list, resources: Resources):
        """Pin a task to its cores: at once if it has several (its threads and ranks start early),
        else once it has run for :data:`PIN_AFTER` seconds (all its threads).

        Pinning a one-core task at once made a stream of millisecond tasks a quarter slower on a
        two-core machine (a pinned task waits for its core while another is idle); a task that
        ends sooner than that needs no core of its own.
        """
        cpus = self._cores.names_of(cores)
        if len(cores) > 1 or resources.ranks > 1:
            pin(pid, cpus)
            return None
        return asyncio.get_running_loop().call_later(PIN_AFTER, pin, pid, cpus)

    def _devnull(self) -> int:
        """One /dev/null descriptor for every task's stdin (Popen would open and close one each time)."""
        if self._null_fd is None:
            self._null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._null_fd

    async def _terminate(self, process) -> None:
        """SIGTERM the task's process group, wait the grace period, then SIGKILL."""
        if process.returncode is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # members that outlived the leader (MPI ranks)
            except ProcessLookupError:
                pass
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await wait_within(asyncio.ensure_future(process.wait()), self.configuration().grace_period)
        except asyncio.TimeoutError:
            logger.warning("Process %s ignored SIGTERM for %.0f s; killing it.", process.pid, self.configuration().grace_period)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
        # Leave no stray members of the group (e.g. MPI ranks) behind.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---- functions ---------------------------------------------------------------------------------------
    async def run_function(self, job: FunctionJob) -> FunctionOutcome:
        if job.resources.ranks > 1:
            return await self._run_function_mpi(job)
        try:
            result, pid = await self.runtime.run_on(job.call)
        except WorkerDied as error:
            return FunctionOutcome(error=str(error))
        return FunctionOutcome(result=result, where=f"worker {pid}")

    async def _run_function_mpi(self, job: FunctionJob) -> FunctionOutcome:
        import scalems.call

        directory = job.directory
        process = scalems.call.call_to_subprocess(job.call, label=job.label, directory=directory)
        outcome = await self.run_executable(
            ExecutableJob(
                uid=job.uid,
                label=job.label,
                directory=directory,
                argv=[process.executable, *process.arguments],
                # Functions pickled by reference must import from where the workflow script imports.
                env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)},
                stdin=None,
                stdout="stdout",
                stderr="stderr",
                outputs=list(process.output_filenames),
                resources=job.resources,
            )
        )
        result = directory / process.output_filenames[0]
        if outcome.error is not None:
            return FunctionOutcome(error=outcome.error)
        if not result.exists():
            return FunctionOutcome(
                error=f"the MPI call exited with status {outcome.exitcode} without writing a result "
                f"(see {directory / 'stderr'})"
            )
        return FunctionOutcome(result=result.read_text(), where=outcome.where)


def _where(cpus: list) -> str:
    """``cores 0-3`` or ``cores 0,2``: the CPUs a task was pinned to, for the run history."""
    if len(cpus) > 1 and cpus == list(range(cpus[0], cpus[0] + len(cpus))):
        return f"cores {cpus[0]}-{cpus[-1]}"
    return "cores " + ",".join(map(str, cpus))


def _not_found(program: str, env) -> str:
    path = (env or os.environ).get("PATH", "")
    if os.sep in program:
        return f"program {program!r} does not exist"
    return f"program {program!r} was not found on PATH ({path})"


def backend_factory(manager, params: typing.Optional[LocalConfiguration] = None) -> LocalBackend:
    """Create the local backend for *manager* (a workflow manager; only its ``directory`` is used)."""
    if params is not None and not isinstance(params, LocalConfiguration):
        raise TypeError(f"scalems.local needs a LocalConfiguration, got {type(params).__name__}")
    return LocalBackend(configuration=params, work_dir=getattr(manager, "directory", None))


# The names of the original SCALE-MS design.
LocalExecutor = LocalBackend
executor_factory = backend_factory
