"""Run a Python function call in another process, from a JSON record.

The workflow side turns a call into text with :func:`serialize_call`; the
process that runs it answers with the text of :func:`serialize_result`.
Calls run in one of three ways:

* :func:`execute`, in warm worker processes and the RADICAL Raptor worker,
  which receive the call text and return the result text;
* ``python -m scalems.call IN OUT`` (:func:`cli`), in a process started for
  the call, possibly under ``mpiexec``; :func:`call_to_subprocess` and
  :func:`function_call_to_subprocess` describe that process for a backend;
* :func:`main`, for callers that already hold a decoded :class:`Call`.

Modules: :mod:`.codec` (the records), :mod:`.pickling` (values inside them),
:mod:`.runner` (running a call here, on one or all MPI ranks),
:mod:`.command_line` (the CLI) and :mod:`.launch` (the subprocess description).
Importing this package stays cheap, because worker processes and MPI ranks
import it at start-up: :mod:`mpi4py` and :mod:`argparse` are imported only
when needed.
"""

from __future__ import annotations

import importlib
import typing

__all__ = (
    "Call",
    "CallPack",
    "CallResult",
    "DEFAULT_OUTPUTS",
    "ENCODING",
    "ResultPack",
    "Subprocess",
    "call_file_names",
    "call_to_subprocess",
    "cli",
    "deserialize_call",
    "deserialize_result",
    "execute",
    "function_call_to_subprocess",
    "main",
    "serialize_call",
    "serialize_result",
)

from .codec import (
    DEFAULT_OUTPUTS,
    ENCODING,
    Call,
    CallPack,
    CallResult,
    ResultPack,
    deserialize_call,
    deserialize_result,
    serialize_call,
    serialize_result,
)
from .runner import execute, main

# Imported on first use (PEP 562): worker processes need neither the CLI nor the launch description
# (creating the latter's frozen dataclass alone takes most of a millisecond).
_LAZY = {
    "cli": ".command_line",
    "Subprocess": ".launch",
    "call_file_names": ".launch",
    "call_to_subprocess": ".launch",
    "function_call_to_subprocess": ".launch",
}

if typing.TYPE_CHECKING:
    from .command_line import cli
    from .launch import Subprocess, call_file_names, call_to_subprocess, function_call_to_subprocess


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
