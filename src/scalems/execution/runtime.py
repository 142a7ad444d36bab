"""The contract every execution backend implements.

A backend is an async context manager that runs jobs. The workflow layer
enters it once per run on the dispatcher's event loop, calls
:meth:`RuntimeManager.run` for each ready job (concurrently, as many as
:meth:`RuntimeManager.capacity` allows) and leaves it at the end. Leaving
must cancel whatever still runs and release every process and session,
whatever the reason for leaving.
"""

from __future__ import annotations

__all__ = ("RuntimeManager",)

import abc
import contextlib
import typing

from scalems.exceptions import APIError, ResourceError
from .jobs import ExecutableJob, FunctionJob, Job, Outcome, Resources

ConfigT = typing.TypeVar("ConfigT")
RuntimeT = typing.TypeVar("RuntimeT")


class RuntimeManager(abc.ABC, typing.Generic[ConfigT, RuntimeT]):
    """Base class of execution backends.

    Subclasses implement :meth:`runtime_startup`, :meth:`runtime_shutdown`,
    :meth:`run_executable` and :meth:`run_function`, and may override
    :meth:`runtime_configuration` and :meth:`capacity`.
    """

    #: Short name used in messages and in the store record ("local", "radical", ...).
    name: str = "backend"

    #: Whether single-rank function jobs need a task directory (FunctionJob.directory).
    #: Remote backends stage call records through it; the local warm workers do not.
    function_jobs_need_directory: bool = True

    #: Single-core function jobs the manager may hand over beyond :meth:`capacity`. The backend
    #: queues them next to running ones (not running them), so workers never idle between calls.
    prefetch: int = 0

    runtime: typing.Optional[RuntimeT] = None

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

    def capacity(self) -> typing.Optional[Resources]:
        """Resources available at once, or None if the backend queues work itself."""
        return None

    def check_fits(self, label: str, resources: Resources) -> None:
        """Raise :class:`ResourceError` if a task with *resources* could never run here."""
        capacity = self.capacity()
        if capacity is None:
            return
        if resources.cores > capacity.cores:
            raise ResourceError(label, resources.cores, capacity.cores)
        if resources.gpus > capacity.gpus:
            raise ResourceError(label, resources.gpus, capacity.gpus, what="GPUs")

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
