"""What the workflow layer hands to a backend, and what it gets back.

A *job* is one concrete attempt at running a task: every argument is already
resolved to a string or to an :class:`InputFile`, the task directory exists
and is empty, and the backend only has to run it and report. Backends never
look at the task graph or the store.

These records are named tuples: immutable, cheap to build, and defined in
microseconds (a dataclass costs about a millisecond each at import, and this
module is on the start-up path of every run).
"""

__all__ = (
    "DEFAULT_RESOURCES",
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

import os
import pathlib
import typing

from scalems.exceptions import ConfigurationError


class Resources(typing.NamedTuple):
    """What one task reserves while it runs.

    A task reserves ``ranks * cores_per_rank`` cores. ``ranks > 1`` means an MPI
    launch (``mpiexec -n ranks`` locally).
    """

    ranks: int = 1
    cores_per_rank: int = 1
    gpus_per_rank: int = 0
    threading_type: typing.Optional[str] = None

    @property
    def cores(self) -> int:
        return self.ranks * self.cores_per_rank

    @property
    def gpus(self) -> int:
        return self.ranks * self.gpus_per_rank

    @classmethod
    def coerce(cls, value: typing.Union[None, "Resources", typing.Mapping[str, typing.Any]]) -> "Resources":
        """Accept ``None``, a :class:`Resources`, or a mapping of its field names."""
        if value is None:
            return DEFAULT_RESOURCES
        if isinstance(value, Resources):
            return value
        if not isinstance(value, typing.Mapping):
            raise ConfigurationError(f"resources must be a mapping, got {type(value).__name__}")
        known = set(cls._fields)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown resource key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(known))}"
            )
        fields = dict(value)
        for key in ("ranks", "cores_per_rank", "gpus_per_rank"):
            if key in fields:
                number = fields[key]
                if isinstance(number, bool) or not isinstance(number, int):
                    raise ConfigurationError(f"resources[{key!r}] must be an integer, got {number!r}")
                minimum = 0 if key == "gpus_per_rank" else 1
                if number < minimum:
                    raise ConfigurationError(f"resources[{key!r}] must be >= {minimum}, got {number}")
        return cls(**fields)

    def as_dict(self) -> dict:
        cached = _AS_DICT.get(self)
        if cached is None:
            cached = _AS_DICT[self] = self._asdict()
        return dict(cached)


_AS_DICT: dict = {}


DEFAULT_RESOURCES = Resources()


class InputFile(typing.NamedTuple):
    """A file the task reads, given as an argument or through ``inputs``.

    Attributes:
        source: absolute path on the client (the machine running the workflow script).
        name: file name to use if the backend stages the file into the task's sandbox.
            Local backends pass *source* unchanged.
    """

    source: pathlib.Path
    name: str


class ExecutableJob(typing.NamedTuple):
    """Run a program once.

    Attributes:
        uid: the task's fingerprint.
        label: human-readable unique name of the task (used in messages).
        directory: local task directory (exists, empty). Outputs must end up here.
        argv: program and arguments; :class:`InputFile` elements are rendered by the backend.
        env: variables to add to the inherited environment.
        stdin: path of a file in *directory* to feed to standard input, if any.
        stdout, stderr: file names (relative to *directory*) capturing the streams.
        outputs: file names (relative to *directory*) the task is expected to write.
        resources: what the task reserves.
        inputs: :class:`InputFile` records of files the backend must put into the task's
            working directory under their *name* before the program starts (not on the
            command line). Local backends copy them (see :func:`place_inputs`); remote ones stage them.
    """

    uid: str
    label: str
    directory: pathlib.Path
    argv: list
    env: dict
    stdin: typing.Optional[pathlib.Path]
    stdout: str
    stderr: str
    outputs: list
    resources: Resources = DEFAULT_RESOURCES
    inputs: tuple = ()

    @property
    def input_files(self) -> list:
        """Every input file of the job: those on the command line, then the placed ones."""
        return [a for a in self.argv if isinstance(a, InputFile)] + list(self.inputs)


class FunctionJob(typing.NamedTuple):
    """Call a Python function once.

    Attributes:
        uid, label, resources: as for :class:`ExecutableJob`.
        call: the serialized call record (JSON text from :func:`scalems.call.serialize_call`).
        directory: local task directory, or None for single-rank calls that run in a warm worker.
        comm_arg: how an MPI communicator is passed (None: not at all; "": first positional
            argument; otherwise that keyword). Always set when ``resources.ranks > 1``.
    """

    uid: str
    label: str
    call: str
    directory: typing.Optional[pathlib.Path] = None
    resources: Resources = DEFAULT_RESOURCES
    comm_arg: typing.Optional[str] = None


class ExecutableOutcome(typing.NamedTuple):
    """How a program run ended.

    Attributes:
        exitcode: the exit status (negative: killed by that signal), or None if it never started.
        error: why the program could not be run at all (missing program, staging failure), if so.
        where: where it ran, for the run history ("cores 0-1", an RP task id), if the backend says.
    """

    exitcode: typing.Optional[int]
    error: typing.Optional[str] = None
    where: typing.Optional[str] = None


class FunctionOutcome(typing.NamedTuple):
    """How a function call ended.

    Attributes:
        result: the serialized result record (JSON text from :func:`scalems.call.serialize_result`),
            or, for a call with ``ranks > 1``, a list of them, one per rank.
        error: why the call could not be run at all (worker died, launch failed), if so.
        where: where it ran, for the run history ("worker 4242", an RP task id), if the backend says.
    """

    result: typing.Union[None, str, list] = None
    error: typing.Optional[str] = None
    where: typing.Optional[str] = None


Job = typing.Union[ExecutableJob, FunctionJob]
Outcome = typing.Union[ExecutableOutcome, FunctionOutcome]


def place_inputs(job: ExecutableJob) -> typing.Optional[str]:
    """Copy the job's placed input files into its directory; an error message if one cannot be.

    A copy, not a link: the sources may be outputs kept in the store, and a program
    that writes to a file it read (a checkpoint it continues) must not change them.
    """
    import shutil

    for item in job.inputs:
        target = pathlib.Path(job.directory, item.name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.source, target)
        except OSError as error:
            return f"could not place input file {os.fspath(item.source)!r} as {item.name!r}: {error}"
    return None
