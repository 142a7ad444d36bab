"""Execution backends: the contract (:class:`RuntimeManager`) and the job records they run.

Backends live in their own packages (:mod:`scalems.local`, :mod:`scalems.radical`);
this package holds only what they share.
"""

from .jobs import (
    ExecutableJob,
    ExecutableOutcome,
    FunctionJob,
    FunctionOutcome,
    InputFile,
    Job,
    Outcome,
    Resources,
)
from .runtime import RuntimeManager

__all__ = (
    "RuntimeManager",
    "Resources",
    "InputFile",
    "ExecutableJob",
    "FunctionJob",
    "ExecutableOutcome",
    "FunctionOutcome",
    "Job",
    "Outcome",
)
