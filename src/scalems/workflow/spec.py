"""Normalized descriptions of the two kinds of task, validated when the task is added.

The first stage of adding a task: :func:`executable_spec` and :func:`function_spec`
turn what the script passed into a spec. Validation happens here, in the
caller's thread, so mistakes (a wrong path, a bad argv element, an unknown
resource key) are reported at the line of the workflow script that made
them, before anything runs.
"""

__all__ = (
    "TaskPolicy",
    "DEFAULT_POLICY",
    "ExecutableSpec",
    "FunctionSpec",
    "executable_spec",
    "function_spec",
    "normalize_argv",
)

import functools
import os
import pathlib
import typing

from scalems.execution.jobs import DEFAULT_RESOURCES, Resources
from scalems.file import FileReference, OutputFile
from scalems.workflow.fingerprint import (
    FINGERPRINT_VERSION,
    PLAIN_TYPES,
    cacheable_identity,
    callable_identity,
    canonical_text,
    digest_text,
    fingerprint,
)


class TaskPolicy(typing.NamedTuple):
    """How a task is run, none of which changes its result (so none of it is part of its identity).

    Attributes:
        timeout: seconds each attempt may run before its processes are stopped (None: no limit).
        retries: failed attempts to run again (a failure, a worker's death, a time limit).
        resumable: an unfinished attempt's directory is kept for the next attempt (executables).
        cache: False runs the task every time and never serves its result from the record.
    """

    timeout: typing.Optional[float] = None
    retries: int = 0
    resumable: bool = False
    cache: bool = True

    @classmethod
    def of(cls, timeout=None, retries=0, resumable=False, cache=True) -> "TaskPolicy":
        """A checked policy; the default one (shared) when nothing is set."""
        if timeout is None and retries == 0 and resumable is False and cache is True:
            return DEFAULT_POLICY
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
            timeout = float(timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        for name, value in (("resumable", resumable), ("cache", cache)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        return cls(timeout, retries, resumable, cache)


DEFAULT_POLICY = TaskPolicy()


class ExecutableSpec(typing.NamedTuple):
    """A command line to run. argv elements: str, OutputFile, FileReference or an absolute Path (input).

    *placed* are input files put into the task directory under a name before the
    program starts, *written* the names of outputs the program writes by itself;
    neither appears on the command line. *label* (given explicitly) and *member*
    (the index in an ensemble) are part of the identity, so replicas of one
    command line are distinct tasks.

    Specs are defined as a named tuple and a plain class: this module is imported by every run,
    and a dataclass costs about a millisecond each to define.
    """

    argv: tuple
    env: dict
    stdin: typing.Optional[str]
    stdout: str
    stderr: str
    resources: Resources
    placed: tuple = ()
    written: tuple = ()
    label: typing.Optional[str] = None
    member: typing.Optional[int] = None
    policy: TaskPolicy = DEFAULT_POLICY

    def outputs(self) -> tuple:
        named = (a.name for a in self.argv if isinstance(a, OutputFile))
        return tuple(dict.fromkeys((*named, *self.written)))

    def output_names(self) -> tuple:
        return (self.stdout, self.stderr, *self.outputs())

    def default_name(self) -> str:
        """What a default label starts with: the program's name."""
        program = self.argv[0]
        return os.path.basename(program) if isinstance(program, str) else program.name

    def uid(self, encoder) -> str:
        """The task's fingerprint: :func:`fingerprint` of :meth:`material`."""
        return fingerprint(self.material(encoder))

    def plain_uid(self) -> None:
        """Executables always need an encoder (their argv may name files)."""
        return None

    def material(self, encoder) -> dict:
        material = {
            "version": FINGERPRINT_VERSION,
            "kind": "executable",
            "argv": [encoder.encode(a) for a in self.argv],
            "env": sorted(self.env.items()),
            "stdin": self.stdin,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "resources": self.resources.as_dict(),
        }
        program = self.argv[0]
        if type(program) is str:
            digest = encoder.encode_program(program, self.env.get("PATH"))
            if digest is not None:
                material["program"] = digest
        # Only when present, so the uids of tasks without them stay what earlier versions recorded.
        if self.placed:
            material["placed"] = [[name, encoder.encode(source)] for name, source in self.placed]
        if self.written:
            material["written"] = list(self.written)
        if self.label is not None:
            material["label"] = self.label
        if self.member is not None:
            material["member"] = self.member
        return material


class FunctionSpec:
    """A Python call to make. *call* holds the encoded call (:mod:`scalems.call`) until it is sent."""

    __slots__ = ("func", "args", "kwargs", "resources", "comm_arg", "call", "label", "policy")

    def __init__(
        self,
        func: typing.Callable,
        args: tuple,
        kwargs: dict,
        resources: Resources,
        comm_arg: typing.Optional[str],
        call: typing.Optional[str] = None,
        label: typing.Optional[str] = None,
        policy: TaskPolicy = DEFAULT_POLICY,
    ):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.resources = resources
        self.comm_arg = comm_arg
        self.call = call
        self.label = label  # an explicit label is part of the identity: differently labelled calls are replicas
        self.policy = policy

    def __repr__(self):
        return f"FunctionSpec({getattr(self.func, '__qualname__', self.func)!r}, args={self.args!r}, kwargs={self.kwargs!r})"

    def output_names(self) -> tuple:
        return ()

    def default_name(self) -> str:
        """What a default label starts with: the function's name."""
        return getattr(self.func, "__name__", None) or type(self.func).__name__

    def encode(self, args, kwargs) -> str:
        """The :mod:`scalems.call` record of calling the function with *args* and *kwargs*."""
        import scalems.call

        return scalems.call.serialize_call(
            self.func, args=args, kwargs=kwargs, requirements=self.resources.as_dict(), comm_arg=self.comm_arg
        )

    def material(self, encoder) -> dict:
        material = {
            "kind": "function",
            "func": callable_identity(self.func),
            "resources": self.resources.as_dict(),
            "comm_arg": self.comm_arg,
            "version": FINGERPRINT_VERSION,
            "args": encoder.encode_items(self.args),
            "kwargs": encoder.encode(self.kwargs) if self.kwargs else None,
        }
        if self.label is not None:
            material["label"] = self.label
        return material

    def uid(self, encoder) -> str:
        """The task's fingerprint: :func:`fingerprint` of :meth:`material`, computed faster.

        Ensembles submit one function thousands of times, so the canonical text of
        the parts that do not vary (function, resources, comm_arg) is kept per function.
        """
        func = self.func
        if self.label is not None:
            return fingerprint(self.material(encoder))
        # Most tasks have the default resources and no comm_arg: the function alone is the key.
        key = func if self.resources is DEFAULT_RESOURCES and self.comm_arg is None else (func, self.resources, self.comm_arg)
        try:
            head = _HEADS.get(key)
        except TypeError:  # an unhashable callable
            return fingerprint(self.material(encoder))
        if head is None:
            material = self.material(encoder)
            head = canonical_text({k: material[k] for k in ("kind", "func", "resources", "comm_arg", "version")})
            if not cacheable_identity(func):
                return fingerprint(material)
            if len(_HEADS) < 1024:
                _HEADS[key] = head
        args = canonical_text(encoder.encode_items(self.args))
        kwargs = canonical_text(encoder.encode(self.kwargs)) if self.kwargs else "null"
        return _call_digest(head, args, kwargs)

    def plain_uid(self) -> typing.Optional[str]:
        """:meth:`uid` without an :class:`Encoder`, for the common call of a known function with
        plain positional arguments only (str, int, bool, None); None for any other call."""
        if self.kwargs or self.resources is not DEFAULT_RESOURCES or self.comm_arg is not None or self.label is not None:
            return None
        try:
            head = _HEADS.get(self.func)
        except TypeError:  # an unhashable callable
            return None
        if head is None:
            return None
        plain = PLAIN_TYPES
        for item in self.args:
            if type(item) not in plain:
                return None
        return _call_digest(head, canonical_text(list(self.args)), "null")


_HEADS: dict = {}


def _call_digest(head: str, args: str, kwargs: str) -> str:
    """The fingerprint of a call: the function's cached head object, completed by the arguments' texts."""
    return digest_text(f'{head[:-1]},"args":{args},"kwargs":{kwargs}}}')


def executable_spec(
    argv,
    *,
    inputs=None,
    outputs=None,
    stdin=None,
    env=None,
    stdout="stdout",
    stderr="stderr",
    resources=None,
    label=None,
    member=None,
    policy=DEFAULT_POLICY,
) -> ExecutableSpec:
    """The spec of ``scalems.executable(...)``: stdin as text, env as strings, streams and file names checked."""
    if isinstance(stdin, (list, tuple)):
        stdin = "".join(line if line.endswith("\n") else line + "\n" for line in stdin)
    elif stdin is not None and not isinstance(stdin, str):
        raise TypeError(f"stdin must be text or a list of lines, got {type(stdin).__name__}")
    env = {str(k): str(v) for k, v in (env or {}).items()} if env else {}
    _check_stream(stdout)
    _check_stream(stderr)
    if stdout == stderr:
        raise ValueError(f"stdout and stderr must be different files (both are {stdout!r})")
    flagged_inputs, placed = _split_inputs(inputs)
    flagged_outputs, written = _split_outputs(outputs)
    spec = ExecutableSpec(
        argv=normalize_argv(argv, inputs=flagged_inputs, outputs=flagged_outputs),
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        resources=Resources.coerce(resources),
        placed=placed,
        written=written,
        label=label,
        member=member,
        policy=policy,
    )
    clash = set(spec.outputs()) & {stdout, stderr}
    if clash:
        raise ValueError(f"output file name(s) {sorted(clash)} clash with the stdout/stderr file names")
    # An input may also be a declared output: programs edit files in place (gmx solvate -p topol.top);
    # the task gets its own copy, so the input itself is never changed.
    clash = {name for name, _ in placed} & {stdout, stderr}
    if clash:
        raise ValueError(f"input file name(s) {sorted(clash)} clash with the stdout/stderr file names")
    return spec


@functools.lru_cache(maxsize=64)
def _check_stream(name) -> None:
    """A stdout/stderr file name must be relative and inside the task directory (few names, checked once)."""
    OutputFile(name)


def _input_path(value, what: str):
    """An input file as the identity sees it: a FileReference, or an absolute path that exists now."""
    if isinstance(value, FileReference):
        return value
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, OutputFile):
        path = pathlib.Path(value).absolute()
        if not path.exists():
            raise FileNotFoundError(f"{what}: input file {os.fspath(value)!r} does not exist (resolved to {path})")
        return path
    raise TypeError(f"{what}: expected a file path or task.file[...], got {type(value).__name__} ({value!r})")


def _split_inputs(inputs) -> tuple:
    """``({flag: file}, ((name, file), ...))`` from *inputs*: a mapping of flags, or a sequence of
    files and ``(name, file)`` pairs to put into the task directory."""
    if inputs is None:
        return None, ()
    if isinstance(inputs, typing.Mapping):
        return {flag: _input_path(value, f"inputs[{flag!r}]") for flag, value in inputs.items()}, ()
    if isinstance(inputs, (str, bytes, os.PathLike)):
        raise TypeError(f"inputs must be a mapping {{flag: file}} or a list of files, not a single path ({inputs!r})")
    placed = {}
    for position, item in enumerate(inputs):
        what = f"inputs[{position}]"
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[0], str):
                raise TypeError(f"{what}: expected a file or a (name, file) pair, got {item!r}")
            name, source = item[0], _input_path(item[1], what)
        else:
            source = _input_path(item, what)
            name = source.name
        name = OutputFile(name).name  # the same rules as output names: relative, inside the directory
        if name in placed:
            raise ValueError(f"{what}: two input files are named {name!r} in the task directory")
        placed[name] = source
    return None, tuple(placed.items())


def _split_outputs(outputs) -> tuple:
    """``({flag: name}, (name, ...))`` from *outputs*: a mapping of flags, or a sequence of names the
    program writes by itself (not put on its command line)."""
    if outputs is None:
        return None, ()
    if isinstance(outputs, typing.Mapping):
        return outputs, ()
    if isinstance(outputs, (str, bytes, os.PathLike)):
        raise TypeError(f"outputs must be a mapping {{flag: name}} or a list of names, not a single name ({outputs!r})")
    names = []
    for item in outputs:
        name = item.name if isinstance(item, OutputFile) else OutputFile(os.fspath(item)).name
        names.append(name)
    return None, tuple(dict.fromkeys(names))


def function_spec(
    func, args=(), kwargs=None, *, resources=None, comm_arg=None, label=None, policy=DEFAULT_POLICY
) -> FunctionSpec:
    """The spec of a function task; a multi-rank call gets its communicator as ``comm`` by default."""
    # This is the path of every task of a large ensemble (and of its re-runs): kept lean.
    if not callable(func):
        raise TypeError(f"the first argument must be a callable, got {type(func).__name__}")
    if resources is None:
        resources = DEFAULT_RESOURCES
    else:
        resources = Resources.coerce(resources)
        if resources.ranks > 1 and comm_arg is None:
            comm_arg = "comm"
    return FunctionSpec(
        func,
        args if type(args) is tuple else tuple(args),
        dict(kwargs) if kwargs else {},
        resources,
        comm_arg,
        label=label,
        policy=policy,
    )


def normalize_argv(argv, *, inputs=None, outputs=None) -> tuple:
    """Check and normalize an argv, appending ``flag path`` pairs from *inputs* and *outputs*.

    Relative paths given as :class:`os.PathLike` are resolved against the current
    directory now, and must exist.
    """
    from scalems.workflow.task import Task

    if isinstance(argv, (str, bytes, os.PathLike)):
        raise TypeError(
            f"argv must be a list of arguments, not a single {type(argv).__name__} ({argv!r}); "
            "e.g. scalems.executable(['echo', 'hello'])"
        )
    items = list(argv)
    if not items:
        raise ValueError("argv is empty: the first element must name the program to run")
    for flag, value in (inputs or {}).items():
        items.extend((flag, value))
    for flag, value in (outputs or {}).items():
        if isinstance(value, (str, os.PathLike)) and not isinstance(value, (FileReference, OutputFile)):
            value = OutputFile(os.fspath(value))
        items.extend((flag, value))
    normalized = []
    for position, item in enumerate(items):
        if isinstance(item, (OutputFile, FileReference)):
            normalized.append(item)
        elif isinstance(item, str):
            normalized.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            normalized.append(str(item))
        elif isinstance(item, os.PathLike):
            path = pathlib.Path(item).absolute()
            if not path.exists():
                raise FileNotFoundError(
                    f"argv[{position}]: input file {os.fspath(item)!r} does not exist (resolved to {path})"
                )
            normalized.append(path)
        elif isinstance(item, Task):
            raise TypeError(
                f"argv[{position}] is a task handle ({item!r}); pass one of its files (task.file[name]) "
                "or its result() instead"
            )
        else:
            raise TypeError(
                f"argv[{position}] has unsupported type {type(item).__name__} ({item!r}); "
                "use str, a path, scalems.output_file(...) or task.file[name]"
            )
    if isinstance(normalized[0], OutputFile):
        raise ValueError("argv[0] must name the program, not an output file")
    return tuple(normalized)
