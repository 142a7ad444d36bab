"""Execution backends: the contract (:class:`Backend`), its budget (:mod:`.limits`) and the job records.

Backends live in their own packages (:mod:`scalems.local`, :mod:`scalems.radical`,
:mod:`scalems.memory`); this package holds only what they share.
"""

from .backend import Backend, RuntimeManager
from .jobs import (
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    Job,
    Outcome,
    Resources,
    place_inputs,
)
from .limits import CoreLimiter, Limiter, Unlimited

__all__ = (
    "Backend",
    "RuntimeManager",
    "Limiter",
    "CoreLimiter",
    "Unlimited",
    "Resources",
    "InputFile",
    "ExecutableJob",
    "FunctionJob",
    "ExecutableOutcome",
    "FunctionOutcome",
    "Job",
    "Outcome",
    "place_inputs",
)
