"""Plain data shared by the client, the Raptor master task and its workers.

Everything here must survive two trips: client → JSON file → master task, and
master → RP task description (msgpack) → worker. So the records are
dataclasses of strings, numbers and lists, with explicit ``from_dict``
decoders, and nothing holds live objects.
"""

from __future__ import annotations

__all__ = (
    "BackendVersion",
    "backend_version",
    "CPI_MESSAGE",
    "ClientWorkerRequirements",
    "MasterTaskConfiguration",
    "ScalemsRaptorWorkItem",
    "TaskDictionary",
    "WorkerDescription",
    "RaptorWorkerConfig",
    "master_script",
    "master_input",
    "worker_requirements",
    "worker_description",
    "default_versioned_modules",
    "check_versioned_modules",
)

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pathlib
import tempfile
import typing

import packaging.version
import radical.pilot as rp

import scalems
from scalems.exceptions import ConfigurationError, SoftwareCompatibilityError

from .messages import CPI_MESSAGE

logger = logging.getLogger(__name__)

#: Name of the console script that runs :func:`scalems.radical.raptor.master`.
_MASTER_SCRIPT = "scalems_rp_master"
_MASTER_ENTRY_POINT = "scalems.radical.raptor:master"


@dataclasses.dataclass(frozen=True)
class BackendVersion:
    """What the master answers to a :class:`~.messages.HelloCommand`.

    Lets the client confirm that the far end is a scalems master of a known
    revision before trusting it with work, and how many workers it runs.
    Compare ``name`` and ``version``: :data:`backend_version` has no worker count.
    """

    name: str
    version: str
    workers: typing.Optional[int] = None
    """Workers the master runs when it answers (None: not reported, an older master)."""

    @classmethod
    def from_dict(cls, obj: typing.Mapping) -> "BackendVersion":
        """Decode a Hello answer, ignoring fields a newer master may add."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in obj.items() if key in known})


backend_version = BackendVersion(name="scalems.radical.raptor", version=scalems.__version__)


@dataclasses.dataclass(frozen=True)
class ClientWorkerRequirements:
    """What the client knows about the workers its workload needs.

    Written by the client (:func:`worker_requirements`), read by the master
    task, which turns it into worker task descriptions
    (:func:`worker_description`) because only the master knows its sandbox
    and the worker script location at run time.
    """

    cpu_processes: int = 1
    """MPI ranks of the worker (the scalems client asks for one: calls with more ranks run as plain RP tasks)."""

    gpus_per_process: int = 0
    """GPUs per worker rank."""

    pre_exec: tuple = ()
    """Shell lines run before the worker starts (e.g. activating the virtual environment)."""

    named_env: typing.Optional[str] = None
    """Virtual environment the client asked for. Carried for information; the
    worker environment is prepared through *pre_exec* instead, because RP named
    environments must be registered with the pilot first."""

    @classmethod
    def from_dict(cls, obj: typing.Mapping) -> "ClientWorkerRequirements":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            logger.warning("Ignoring unknown worker requirement field(s) %s", unknown)
        fields = {key: value for key, value in obj.items() if key in known}
        if "pre_exec" in fields:
            fields["pre_exec"] = tuple(fields["pre_exec"] or ())
        requirements = cls(**fields)
        if not isinstance(requirements.cpu_processes, int) or requirements.cpu_processes < 1:
            raise ConfigurationError(
                f"Worker cpu_processes must be an integer >= 1, got {requirements.cpu_processes!r}"
            )
        return requirements


@dataclasses.dataclass
class MasterTaskConfiguration:
    """Input of the ``scalems_rp_master`` task, written by :func:`master_input`."""

    worker: ClientWorkerRequirements
    versioned_modules: typing.List[typing.Tuple[str, str]]
    """(module, minimum version) pairs the master checks before doing anything."""

    worker_startup_timeout: float = 300.0
    """Seconds the master waits for its first worker to register before giving up (exit 1)."""

    @classmethod
    def from_dict(cls, obj: typing.Mapping) -> "MasterTaskConfiguration":
        """Decode the JSON form (as written by :func:`master_input`)."""
        if not isinstance(obj, typing.Mapping) or "worker" not in obj:
            raise ConfigurationError(f"Not a scalems Raptor master configuration (no 'worker' key): {obj!r}")
        modules = []
        for entry in obj.get("versioned_modules", ()):
            if len(entry) != 2:
                raise ConfigurationError(
                    f"versioned_modules entries must be (module, version) pairs: {entry!r}"
                )
            modules.append((str(entry[0]), str(entry[1])))
        return cls(
            worker=ClientWorkerRequirements.from_dict(obj["worker"]),
            versioned_modules=modules,
            worker_startup_timeout=float(obj.get("worker_startup_timeout", cls.worker_startup_timeout)),
        )

    def as_dict(self) -> dict:
        return {
            "worker": dataclasses.asdict(self.worker),
            "versioned_modules": [list(pair) for pair in self.versioned_modules],
            "worker_startup_timeout": self.worker_startup_timeout,
        }


class ScalemsRaptorWorkItem(typing.TypedDict, total=False):
    """The ``work_item`` keyword argument of :meth:`ScaleMSWorker.run_in_worker`.

    Travels inside an RP task description, so it holds msgpack-safe values
    only: the function call is a :mod:`scalems.call` record (JSON text), which
    carries the function and its arguments pickled.
    """

    call: str
    """JSON text from :func:`scalems.call.serialize_call` (required)."""

    comm_arg_name: typing.Optional[str]
    """How the function receives an MPI communicator (``MPI.COMM_SELF``: the task
    runs on one rank): None (not at all), ``""`` (first positional argument) or a
    keyword name."""

    label: str
    """Human-readable task name, for messages."""


class TaskDictionary(typing.TypedDict, total=False):
    """The task dicts RP hands to ``Master.request_cb`` / ``Master.result_cb``.

    Only the fields scalems touches are listed; see ``radical.pilot.Task.as_dict``.
    """

    uid: str
    description: dict
    stdout: typing.Any
    stderr: typing.Any
    exit_code: int
    return_value: typing.Any
    exception: typing.Optional[str]
    exception_detail: typing.Optional[str]
    state: str
    target_state: str


class WorkerDescription(rp.TaskDescription):
    """An ``rp.TaskDescription`` with ``mode=RAPTOR_WORKER``, built by :func:`worker_description`."""


RaptorWorkerConfig = typing.List[WorkerDescription]
"""What the master passes to ``Master.submit_workers()`` (see :meth:`ScaleMSMaster.configure_worker`)."""


@functools.cache
def master_script() -> str:
    """Name of the console script that runs the scalems Raptor master task.

    Checked against this environment's entry points, so a broken installation
    is reported here (on the client) instead of as a mysterious task failure.

    Raises:
        SoftwareCompatibilityError: the script is not installed with this scalems.
    """
    found = [
        ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == _MASTER_SCRIPT
    ]
    if not found:
        raise SoftwareCompatibilityError(
            f"The {_MASTER_SCRIPT} console script is not installed in this environment; "
            "reinstall scalems (pip install 'scalems[radical]')."
        )
    if found[0].value != _MASTER_ENTRY_POINT:
        raise SoftwareCompatibilityError(
            f"The {_MASTER_SCRIPT} console script points to {found[0].value!r}, "
            f"not {_MASTER_ENTRY_POINT!r}; another package shadows scalems."
        )
    return _MASTER_SCRIPT


def default_versioned_modules() -> typing.List[typing.Tuple[str, str]]:
    """Modules the execution site must have, with the client's versions as minimum."""
    return [
        ("scalems", scalems.__version__),
        ("radical.pilot", str(rp.version)),
        # MPIWorker imports mpi4py even for single-rank workers.
        ("mpi4py", "3.1"),
    ]


def _module_version(module: str) -> typing.Optional[packaging.version.Version]:
    """Installed version of *module* (distribution metadata first, then ``__version__``)."""
    text = None
    try:
        text = importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        try:
            imported = importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure means "not usable"
            logger.debug("Could not import %s: %s", module, err)
            return None
        text = getattr(imported, "__version__", None) or getattr(imported, "version", None)
        if not isinstance(text, str):
            return None
    try:
        return packaging.version.Version(text)
    except packaging.version.InvalidVersion:
        logger.warning("Cannot interpret version %r of %s", text, module)
        return None


def check_versioned_modules(versioned_modules: typing.Iterable[typing.Sequence[str]]) -> None:
    """Raise :class:`SoftwareCompatibilityError` unless every (module, minimum version) is satisfied."""
    for module, minimum in versioned_modules:
        required = packaging.version.Version(str(minimum))
        found = _module_version(module)
        if found is None:
            raise SoftwareCompatibilityError(
                f"{module} (version >= {required}) is required by the scalems Raptor master "
                "but is not installed in its environment."
            )
        if found < required:
            raise SoftwareCompatibilityError(
                f"{module} version {found} is installed where the scalems Raptor master runs, "
                f"but version >= {required} is required."
            )
        logger.debug("Found %s %s (>= %s).", module, found, required)


def worker_requirements(
    *,
    pre_exec: typing.Iterable[str] = (),
    worker_venv: typing.Optional[str] = None,
    cpu_processes: int = 1,
    gpus_per_process: int = 0,
) -> ClientWorkerRequirements:
    """Describe the worker the client's workload needs (see :class:`ClientWorkerRequirements`)."""
    return ClientWorkerRequirements.from_dict(
        dict(
            cpu_processes=cpu_processes,
            gpus_per_process=gpus_per_process,
            pre_exec=tuple(pre_exec),
            named_env=None if worker_venv is None else str(worker_venv),
        )
    )


def master_input(
    *,
    directory: typing.Union[str, os.PathLike],
    worker_pre_exec: typing.Iterable[str] = (),
    worker_venv: typing.Optional[str] = None,
    cpu_processes: int = 1,
    gpus_per_process: int = 0,
    versioned_modules: typing.Optional[typing.Iterable[typing.Tuple[str, str]]] = None,
    worker_startup_timeout: float = MasterTaskConfiguration.worker_startup_timeout,
) -> pathlib.Path:
    """Write the master task's configuration as JSON into *directory*; return the file path.

    The client writes it into the RP session folder. The file is named by a hash
    of its content, so identical configurations share one file and different
    ones never overwrite each other, and it is written atomically: a master
    never reads a half-written file.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ConfigurationError(
            f"Cannot write the Raptor master configuration: {directory} is not a directory"
        )
    configuration = MasterTaskConfiguration(
        worker=worker_requirements(
            pre_exec=worker_pre_exec,
            worker_venv=worker_venv,
            cpu_processes=cpu_processes,
            gpus_per_process=gpus_per_process,
        ),
        versioned_modules=list(
            default_versioned_modules() if versioned_modules is None else versioned_modules
        ),
        worker_startup_timeout=worker_startup_timeout,
    )
    text = json.dumps(configuration.as_dict(), indent=2, sort_keys=True)
    digest = hashlib.sha256(text.encode("utf8")).hexdigest()[:16]
    path = directory / f"scalems_raptor_config_{digest}.json"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    return path


def worker_description(
    *,
    worker_file: str,
    named_env: typing.Optional[str] = None,
    cores_per_process: typing.Optional[int] = None,
    cpu_processes: typing.Optional[int] = None,
    gpus_per_process: typing.Optional[int] = None,
    pre_exec: typing.Iterable[str] = (),
    environment: typing.Optional[typing.Mapping[str, str]] = None,
    executable: typing.Optional[str] = None,
) -> WorkerDescription:
    """Build one worker task description for ``Master.submit_workers()``.

    Args:
        worker_file: module file from which RP imports ``ScaleMSWorker``
            (written by :meth:`ScaleMSMaster.configure_worker`).
        named_env: ignored (see :attr:`ClientWorkerRequirements.named_env`).
        cores_per_process, cpu_processes, gpus_per_process: ``cores_per_rank``,
            ``ranks`` and ``gpus_per_rank`` of the worker task.
        pre_exec: shell lines run before the worker starts.
        environment: variables set for the worker.
        executable: the RP worker launcher. The master passes an absolute path
            from its own environment, because a task's PATH need not contain it
            (RP only adds it for the ``rp`` named environment).
    """
    descr = WorkerDescription()
    descr.mode = rp.RAPTOR_WORKER
    descr.raptor_class = "ScaleMSWorker"
    descr.raptor_file = str(worker_file)
    descr.pre_exec = list(pre_exec)
    if named_env:
        logger.debug("Ignoring named_env=%s; the worker environment comes from pre_exec.", named_env)
    if cpu_processes is not None:
        descr.ranks = int(cpu_processes)
    if cores_per_process is not None:
        descr.cores_per_rank = int(cores_per_process)
    if gpus_per_process:
        descr.gpus_per_rank = gpus_per_process
    if environment:
        descr.environment = dict(environment)
    if executable:
        descr.executable = executable
    return descr
