"""The contract every execution backend implements.

A backend is an async context manager that runs jobs. The workflow layer
enters it on the dispatcher's event loop when the first job has to run,
calls :meth:`Backend.run` for each job its :attr:`Backend.limiter` admits
(concurrently) and leaves it at the end. Leaving must cancel whatever still
runs and release every process and session, whatever the reason for leaving.

What a backend sees is a job (:mod:`scalems.execution.jobs`): never a task
handle, the task graph or the work directory's store. That keeps backends
small and lets the in-memory backend (:mod:`scalems.memory`) stand in for the
real ones in tests of the workflow layer.
"""

from __future__ import annotations

__all__ = ("Backend", "RuntimeManager")

import abc
import contextlib
import typing

from scalems.exceptions import APIError
from .jobs import ExecutableJob, FunctionJob, Job, Outcome
from .limits import Limiter, Unlimited

ConfigT = typing.TypeVar("ConfigT")
RuntimeT = typing.TypeVar("RuntimeT")


class Backend(abc.ABC, typing.Generic[ConfigT, RuntimeT]):
    """Base class of execution backends.

    Subclasses implement :meth:`runtime_startup`, :meth:`runtime_shutdown`,
    :meth:`run_executable` and :meth:`run_function`, set :attr:`limiter` when
    they have a fixed budget, and may override :meth:`runtime_configuration`.
    """

    #: Short name used in messages and in the store record ("local", "radical", ...).
    name: str = "backend"

    #: Whether single-rank function jobs need a task directory (FunctionJob.directory).
    #: Remote backends stage call records through it; the local warm workers do not.
    function_jobs_need_directory: bool = True

    #: The budget jobs are admitted against (the one place that knows the backend's capacity).
    limiter: Limiter = Unlimited()

    runtime: typing.Optional[RuntimeT] = None

    #: What the backend is busy with before it can run tasks (e.g. creating a task
    #: environment), for the progress line; None when there is nothing to say.
    status: typing.Optional[str] = None

    def __init__(self, *, configuration: ConfigT):
        self._configuration = configuration
        self._exit_stack: typing.Optional[contextlib.AsyncExitStack] = None
        self._closed = False

    def configuration(self) -> ConfigT:
        return self._configuration

    @contextlib.contextmanager
    def runtime_configuration(self) -> typing.Iterator[ConfigT]:
        """Scope in which the configuration is active. Override to publish it (e.g. a ContextVar)."""
        yield self._configuration

    @abc.abstractmethod
    async def runtime_startup(self) -> RuntimeT:
        """Acquire what the backend needs (processes, sessions). Returns the runtime object."""

    @abc.abstractmethod
    async def runtime_shutdown(self, runtime: RuntimeT) -> None:
        """Cancel outstanding work and release everything acquired by :meth:`runtime_startup`."""

    async def run(self, job: Job) -> Outcome:
        """Run one job to completion. Cancellation of the awaiting task must stop the job."""
        if isinstance(job, ExecutableJob):
            return await self.run_executable(job)
        if isinstance(job, FunctionJob):
            return await self.run_function(job)
        raise TypeError(f"Unknown job type {type(job).__name__}")

    @abc.abstractmethod
    async def run_executable(self, job: ExecutableJob) -> Outcome: ...

    @abc.abstractmethod
    async def run_function(self, job: FunctionJob) -> Outcome: ...

    async def __aenter__(self):
        if self._exit_stack is not None:
            raise APIError(f"{type(self).__name__} is already active; it cannot be entered twice.")
        if self._closed:
            raise APIError(f"{type(self).__name__} was closed; create a new one.")
        stack = contextlib.AsyncExitStack()
        self._exit_stack = stack
        try:
            stack.enter_context(self.runtime_configuration())
            self.runtime = await self.runtime_startup()
            stack.push_async_callback(self._shutdown)
        except BaseException:
            await stack.aclose()
            self._exit_stack = None
            self._closed = True
            raise
        return self

    async def _shutdown(self):
        runtime, self.runtime = self.runtime, None
        await self.runtime_shutdown(runtime)

    async def __aexit__(self, exc_type, exc, tb):
        stack, self._exit_stack = self._exit_stack, None
        self._closed = True
        if stack is not None:
            await stack.aclose()
        return False


#: The name of :class:`Backend` in the original SCALE-MS design documents.
RuntimeManager = Backend
