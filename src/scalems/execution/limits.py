"""Admission of jobs against a backend's resource budget.

The budget has one owner: the backend hands the workflow layer a limiter
(:attr:`scalems.execution.Backend.limiter`), much as trio's
``CapacityLimiter`` or httpx's ``Limits`` bound concurrency. The scheduler
asks it before it starts a job and tells it when the job ends; it never
computes capacity itself and knows no backend's special cases.

A limiter is used from the dispatcher's event loop only, so it needs no lock.
"""

from __future__ import annotations

__all__ = ("Limiter", "Unlimited", "CoreLimiter")

import typing

from scalems.exceptions import ResourceError
from .jobs import Resources


class Limiter(typing.Protocol):
    """What the scheduler needs from a backend's budget."""

    #: Everything the backend can ever run at once, or None when it queues work itself.
    total: typing.Optional[Resources]

    def check_fits(self, label: str, resources: Resources) -> None:
        """Raise :class:`~scalems.exceptions.ResourceError` if such a task could never run."""

    def try_acquire(self, kind: str, resources: Resources) -> bool:
        """Reserve *resources* for one job of *kind* (``"executable"`` or ``"function"``) if they are free."""

    def release(self, kind: str, resources: Resources) -> None:
        """Give back what :meth:`try_acquire` reserved for a job that ended."""


class Unlimited:
    """A backend that queues work itself (RADICAL-Pilot's scheduler): every job is admitted."""

    total = None

    def check_fits(self, label: str, resources: Resources) -> None:
        return None

    def try_acquire(self, kind: str, resources: Resources) -> bool:
        return True

    def release(self, kind: str, resources: Resources) -> None:
        return None


class CoreLimiter:
    """Counts cores and GPUs in use against a fixed total.

    A job that fits the total is always admitted when nothing runs, so a task
    as large as the whole budget never waits forever behind smaller ones that
    keep arriving.
    """

    __slots__ = ("total", "cores", "gpus", "cores_in_use", "gpus_in_use")

    def __init__(self, cores: int, gpus: int = 0):
        self.total = Resources(ranks=1, cores_per_rank=cores, gpus_per_rank=gpus)
        self.cores = cores
        self.gpus = gpus
        self.cores_in_use = 0
        self.gpus_in_use = 0

    def check_fits(self, label: str, resources: Resources) -> None:
        if resources.cores > self.cores:
            raise ResourceError(label, resources.cores, self.cores)
        if resources.gpus > self.gpus:
            raise ResourceError(label, resources.gpus, self.gpus, what="GPUs")

    def extra_cores(self, kind: str, resources: Resources) -> int:
        """Cores a job of this shape may use beyond the total (none here; see the local backend)."""
        return 0

    def try_acquire(self, kind: str, resources: Resources) -> bool:
        cores = resources.cores
        gpus = resources.gpus
        if self.cores_in_use:
            limit = self.cores + self.extra_cores(kind, resources)
            if self.cores_in_use + cores > limit or self.gpus_in_use + gpus > self.gpus:
                return False
        self.cores_in_use += cores
        self.gpus_in_use += gpus
        return True

    def release(self, kind: str, resources: Resources) -> None:
        self.cores_in_use -= resources.cores
        self.gpus_in_use -= resources.gpus
