"""The in-memory backend: jobs run as Python calls in a thread pool of this process.

It implements the same contract as the process-based backends (the contract
suite in the tests runs on all of them), so what it shows about the workflow
layer holds there too. A stand-in program gets a :class:`ProgramRun` with the
job's argv, directory, environment and stdin, writes its output through
``run.stdout`` / ``run.stderr`` (the task's stdout and stderr files) and
returns an exit status.

Threads cannot be killed: a cancelled job (a time limit, Ctrl-C) sets
``run.cancelled``, and a stand-in that waits for something should watch it
(``run.cancelled.wait(seconds)`` instead of ``time.sleep``); one that ignores
it keeps its thread until it returns.
"""

from __future__ import annotations

__all__ = ("MemoryBackend", "MemoryConfiguration", "ProgramRun", "BUILTIN_PROGRAMS", "backend_factory")

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import pathlib
import threading
import typing

from scalems.exceptions import ConfigurationError
from scalems.execution import (
    Backend,
    CoreLimiter,
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    place_inputs,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ProgramRun:
    """What a stand-in program gets: one run of it in a task's directory.

    Attributes:
        argv: the command line; input files are absolute paths, output files names in *directory*.
        directory: the task's working directory (a stand-in must not ``chdir``: threads share it).
        env: the environment the program would see (this process's, plus the task's ``env``).
        stdin: the task's stdin text, or None.
        stdout: text stream into the task's stdout file.
        stderr: text stream into the task's stderr file.
        cancelled: set when the job is cancelled (a time limit, an interrupted run); a stand-in
            that waits should wait on it and return early.
    """

    argv: typing.List[str]
    directory: pathlib.Path
    env: typing.Mapping[str, str]
    stdin: typing.Optional[str]
    stdout: typing.TextIO
    stderr: typing.TextIO
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)

    def path(self, name: typing.Union[str, os.PathLike]) -> pathlib.Path:
        """*name* resolved the way the program would: relative to its working directory."""
        return self.directory / name


def _echo(run: ProgramRun) -> int:
    run.stdout.write(" ".join(run.argv[1:]) + "\n")
    return 0


def _cat(run: ProgramRun) -> int:
    if len(run.argv) == 1:
        run.stdout.write(run.stdin or "")
        return 0
    status = 0
    for name in run.argv[1:]:
        try:
            run.stdout.write(run.path(name).read_text())
        except OSError as error:
            run.stderr.write(f"cat: {name}: {error.strerror}\n")
            status = 1
    return status


#: Stand-ins every in-memory workflow has.
BUILTIN_PROGRAMS: typing.Mapping[str, typing.Callable[[ProgramRun], int]] = {
    "echo": _echo,
    "cat": _cat,
    "true": lambda run: 0,
    "false": lambda run: 1,
}


@dataclasses.dataclass
class MemoryConfiguration:
    """Settings of the in-memory backend: the thread (and core) budget and the stand-in programs."""

    cores: int = 4
    programs: typing.Dict[str, typing.Callable[[ProgramRun], int]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.cores, bool) or not isinstance(self.cores, int) or self.cores < 1:
            raise ConfigurationError(f"cores must be a positive integer, got {self.cores!r}")
        for name, program in self.programs.items():
            if not callable(program):
                raise ConfigurationError(f"program {name!r} must be a callable taking a ProgramRun, got {program!r}")


class MemoryBackend(Backend[MemoryConfiguration, concurrent.futures.ThreadPoolExecutor]):
    """Backend that runs calls and stand-in programs in threads of this process."""

    name = "memory"
    function_jobs_need_directory = False

    def __init__(self, *, configuration: typing.Optional[MemoryConfiguration] = None):
        super().__init__(configuration=configuration or MemoryConfiguration())
        config = self.configuration()
        self.limiter = CoreLimiter(config.cores)
        self.programs = {**BUILTIN_PROGRAMS, **config.programs}

    async def runtime_startup(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(self.configuration().cores, thread_name_prefix="scalems-memory")

    async def runtime_shutdown(self, runtime) -> None:
        if runtime is not None:
            runtime.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.runtime, func, *args)

    async def run_executable(self, job: ExecutableJob) -> ExecutableOutcome:
        if job.resources.ranks > 1:
            return ExecutableOutcome(None, error="the in-memory backend runs no MPI (ranks > 1); use scalems.local")
        argv = [os.fspath(a.source) if isinstance(a, InputFile) else a for a in job.argv]
        program = self.programs.get(argv[0])
        if program is None:
            known = ", ".join(sorted(self.programs))
            return ExecutableOutcome(
                None, error=f"program {argv[0]!r} was not found among the in-memory backend's programs ({known})"
            )
        cancelled = threading.Event()
        try:
            return await self._in_thread(self._run_program, program, argv, job, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _run_program(self, program, argv: list, job: ExecutableJob, cancelled: threading.Event) -> ExecutableOutcome:
        error = place_inputs(job)
        if error is not None:
            return ExecutableOutcome(None, error=error)
        directory = pathlib.Path(job.directory)
        stdin = pathlib.Path(job.stdin).read_text() if job.stdin is not None else None
        env = {**os.environ, **job.env}
        with open(directory / job.stdout, "w") as out, open(directory / job.stderr, "w") as err:
            run = ProgramRun(
                argv=argv, directory=directory, env=env, stdin=stdin, stdout=out, stderr=err, cancelled=cancelled
            )
            try:
                status = program(run)
            except Exception as error:  # a stand-in's bug is the task's failure, as a crash would be
                logger.debug("Stand-in for %s raised", argv[0], exc_info=True)
                err.write(f"{argv[0]}: {type(error).__name__}: {error}\n")
                return ExecutableOutcome(None, error=f"the stand-in for {argv[0]!r} raised {type(error).__name__}: {error}")
        if isinstance(status, bool) or not isinstance(status, int):
            return ExecutableOutcome(None, error=f"the stand-in for {argv[0]!r} returned {status!r}, not an exit status")
        return ExecutableOutcome(status)

    async def run_function(self, job: FunctionJob) -> FunctionOutcome:
        if job.resources.ranks > 1:
            return FunctionOutcome(error="the in-memory backend runs no MPI (ranks > 1); use scalems.local")
        import scalems.call

        return FunctionOutcome(result=await self._in_thread(scalems.call.execute, job.call))


def backend_factory(manager, params: typing.Optional[MemoryConfiguration] = None) -> MemoryBackend:
    """Create the in-memory backend (*manager* is not used: nothing here touches the work directory)."""
    if params is not None and not isinstance(params, MemoryConfiguration):
        raise TypeError(f"scalems.memory needs a MemoryConfiguration, got {type(params).__name__}")
    return MemoryBackend(configuration=params)

