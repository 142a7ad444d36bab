"""The fresh process that runs one call: its command line, files and requirements.

Backends that cannot use a warm worker (multi-rank calls, RADICAL-Pilot tasks
without Raptor) run ``python -m scalems.call IN OUT``. :func:`call_to_subprocess`
writes IN and describes that process as a :class:`Subprocess`, so that every
backend builds the same command; :func:`function_call_to_subprocess` is the
SCALE-MS entry point that starts from the function instead of the record.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import sys
import typing

from .codec import parse_call, serialize_call

#: Where :func:`function_call_to_subprocess` writes call records, under the manager's directory.
CALLS_DIRNAME = "scalems_calls"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclasses.dataclass(frozen=True)
class Subprocess:
    """A process that runs one call record.

    Run ``[executable, *arguments]`` in a working directory that holds the
    *input_filenames* (name there -> local file to copy or stage in), under an MPI
    launcher with ``requirements["ranks"]`` ranks when that is more than 1. Exit
    status 0 (the function returned) or 1 (it raised) leaves the result record
    (:func:`scalems.call.deserialize_result`) in ``output_filenames[0]``; any
    other status means there is no result.
    """

    uid: str
    input_filenames: typing.Mapping[str, pathlib.Path]
    output_filenames: tuple[str, ...]
    executable: str
    arguments: tuple[str, ...]
    requirements: dict = dataclasses.field(default_factory=dict)


def call_file_names(label: str) -> tuple[str, str]:
    """The names of the call (IN) and result (OUT) files for *label*, safe as file names.

    Backends that read the result later, without the :class:`Subprocess`, get the name here.
    """
    stem = _UNSAFE.sub("_", str(label)).strip("._") or "call"
    return f"{stem}-input.json", f"{stem}-output.json"


def _interpreter_options(python: str) -> list[str]:
    """This interpreter's ``-X`` options (e.g. ``-X dev``), for a child running the same interpreter.

    Another interpreter (a remote venv) gets none: options such as
    ``-X pycache_prefix=PATH`` name things on this machine.
    """
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return []
    options = []
    for key, value in getattr(sys, "_xoptions", {}).items():
        options.append(f"-X{key}" if value is True else f"-X{key}={value}")
    return options


def call_to_subprocess(
    call: str, *, label: str, directory: str | os.PathLike, python: str | None = None
) -> Subprocess:
    """Write the call record *call* into *directory* and describe the process that runs it.

    For backends, which receive calls already serialized (``FunctionJob.call``).

    Args:
        call: JSON text from :func:`scalems.call.serialize_call`; its *requirements*
            become the :class:`Subprocess`'s.
        label: names the task (:attr:`Subprocess.uid`) and its files (:func:`call_file_names`).
        directory: where to write the call file; created if missing.
        python: the interpreter at the execution site (default: this one).

    Raises:
        scalems.exceptions.ProtocolError: *call* is not a call record (better here than in the process).
    """
    record = parse_call(call)
    python = python or sys.executable
    input_name, output_name = call_file_names(label)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / input_name).absolute()
    path.write_text(call)
    return Subprocess(
        uid=str(label),
        input_filenames={input_name: path},
        output_filenames=(output_name,),
        executable=python,
        arguments=(*_interpreter_options(python), "-m", "scalems.call", input_name, output_name),
        requirements=dict(record.get("requirements") or {}),
    )


def function_call_to_subprocess(
    func: typing.Callable,
    *,
    label: str,
    args: typing.Sequence = (),
    kwargs: typing.Mapping[str, typing.Any] | None = None,
    manager,
    requirements: typing.Mapping[str, typing.Any] | None = None,
    comm_arg: str | None = None,
) -> Subprocess:
    """Describe a process that runs ``func(*args, **kwargs)``; its call file is written now.

    Args:
        label: names the task and its files; should be unique among the calls of *manager*,
            since a second call with the same label replaces the first one's call file.
        manager: the workflow manager (:class:`scalems.workflow.manager.WorkflowManager`).
            Only its ``directory`` is used: the call file goes to its ``scalems_calls``
            subdirectory. Its store is not involved; the file is not a workflow artifact.
        requirements: run time requirements (``ranks`` and the like; a mapping or
            :class:`scalems.execution.Resources`).
        comm_arg: how *func* receives an MPI communicator (see :class:`scalems.call.Call`).

    Unlike SCALE-MS's coroutine, this is a plain function: writing one small
    file needs no event loop, and synchronous backend code can call it.
    """
    directory = getattr(manager, "directory", None)
    if directory is None:
        raise TypeError(f"manager must have a 'directory' (a WorkflowManager), got {type(manager).__name__}")
    call = serialize_call(func, args=args, kwargs=kwargs, requirements=requirements, comm_arg=comm_arg)
    return call_to_subprocess(call, label=label, directory=pathlib.Path(directory) / CALLS_DIRNAME)
