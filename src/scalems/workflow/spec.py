"""Normalized descriptions of the two kinds of task, validated when the task is added.

The first stage of adding a task: :func:`executable_spec` and :func:`function_spec`
turn what the script passed into a spec. Validation happens here, in the
caller's thread, so mistakes (a wrong path, a bad argv element, an unknown
resource key) are reported at the line of the workflow script that made
them, before anything runs.
"""

__all__ = ("ExecutableSpec", "FunctionSpec", "executable_spec", "function_spec", "normalize_argv")

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


class ExecutableSpec(typing.NamedTuple):
    """A command line to run. argv elements: str, OutputFile, FileReference or an absolute Path (input).

    Specs are defined as a named tuple and a plain class: this module is imported by every run,
    and a dataclass costs about a millisecond each to define.
    """

    argv: tuple
    env: dict
    stdin: typing.Optional[str]
    stdout: str
    stderr: str
    resources: Resources

    def outputs(self) -> tuple:
        return tuple(dict.fromkeys(a.name for a in self.argv if isinstance(a, OutputFile)))

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
        return {
            "version": FINGERPRINT_VERSION,
            "kind": "executable",
            "argv": [encoder.encode(a) for a in self.argv],
            "env": sorted(self.env.items()),
            "stdin": self.stdin,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "resources": self.resources.as_dict(),
        }


class FunctionSpec:
    """A Python call to make. *call* holds the encoded call (:mod:`scalems.call`) until it is sent."""

    __slots__ = ("func", "args", "kwargs", "resources", "comm_arg", "call")

    def __init__(
        self,
        func: typing.Callable,
        args: tuple,
        kwargs: dict,
        resources: Resources,
        comm_arg: typing.Optional[str],
        call: typing.Optional[str] = None,
    ):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.resources = resources
        self.comm_arg = comm_arg
        self.call = call

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
        return {
            "kind": "function",
            "func": callable_identity(self.func),
            "resources": self.resources.as_dict(),
            "comm_arg": self.comm_arg,
            "version": FINGERPRINT_VERSION,
            "args": encoder.encode_items(self.args),
            "kwargs": encoder.encode(self.kwargs) if self.kwargs else None,
        }

    def uid(self, encoder) -> str:
        """The task's fingerprint: :func:`fingerprint` of :meth:`material`, computed faster.

        Ensembles submit one function thousands of times, so the canonical text of
        the parts that do not vary (function, resources, comm_arg) is kept per function.
        """
        func = self.func
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
        if self.kwargs or self.resources is not DEFAULT_RESOURCES or self.comm_arg is not None:
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
    argv, *, inputs=None, outputs=None, stdin=None, env=None, stdout="stdout", stderr="stderr", resources=None
) -> ExecutableSpec:
    """The spec of ``scalems.executable(...)``: stdin as text, env as strings, streams checked."""
    if isinstance(stdin, (list, tuple)):
        stdin = "".join(line if line.endswith("\n") else line + "\n" for line in stdin)
    elif stdin is not None and not isinstance(stdin, str):
        raise TypeError(f"stdin must be text or a list of lines, got {type(stdin).__name__}")
    env = {str(k): str(v) for k, v in (env or {}).items()}
    for name in (stdout, stderr):
        OutputFile(name)  # validates: relative, inside the task directory
    if stdout == stderr:
        raise ValueError(f"stdout and stderr must be different files (both are {stdout!r})")
    spec = ExecutableSpec(
        argv=normalize_argv(argv, inputs=inputs, outputs=outputs),
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        resources=Resources.coerce(resources),
    )
    clash = set(spec.outputs()) & {stdout, stderr}
    if clash:
        raise ValueError(f"output file name(s) {sorted(clash)} clash with the stdout/stderr file names")
    return spec


def function_spec(func, args=(), kwargs=None, *, resources=None, comm_arg=None) -> FunctionSpec:
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
