"""Jobs as RADICAL-Pilot tasks: descriptions with staging, and outcomes from final task states.

Facts about RP 1.103 that shape this module (read from its agent source):

* The task's command line is ``executable + " " + sh_quote(arguments)`` in a
  shell script, where ``sh_quote`` wraps each argument in double quotes but
  leaves ``$`` and backticks alone, so the script's shell expands them. To pass
  argv literally (``awk '{print $1}'``), scalems gives RP the whole command,
  quoted with :func:`shlex.join`, as ``executable`` (which RP inserts verbatim)
  and no ``arguments``. Environment variables are exported in ``pre_exec`` for
  the same reason (``environment`` values are inserted unescaped).
* The command runs in the background of that script, so its stdin is
  ``/dev/null``; there is no ``stdin`` field. A ``/bin/sh -c`` wrapper redirects
  stdin from the staged file and, before ``exec``, reports a missing program
  with a recognizable message and exit status 127.
* Output staging of type TRANSFER (client side) is skipped for tasks that end
  FAILED, and RP keeps only the last 1024 characters of stdout/stderr in the
  task record. Agent-side COPY with ``stage_on_error`` does run for failed tasks,
  so for ``local.*`` resources (sandbox on this file system) scalems stages with
  COPY, and points stdout/stderr (RP accepts absolute paths) straight into the
  job's directory: full streams and partial outputs of failed tasks come back.
  For remote resources a failed task's streams are RP's 1024-character tails.
* RP's copy helpers run ``cp -r SRC TGT`` split on white space, and do not
  report a missing source. Local paths that a shell would split are therefore
  replaced by symbolic links with plain names, and missing declared outputs are
  detected (and reported) after the task.
"""

from __future__ import annotations

__all__ = (
    "PathAliases",
    "StagingError",
    "describe_executable",
    "describe_function",
    "python_path_pre_exec",
    "executable_outcome",
    "function_outcome",
    "CALL_FILE",
    "RESULT_FILE",
)

import logging
import os
import pathlib
import re
import shlex
import shutil
import sys
import tempfile
import threading
import typing

from scalems.exceptions import MissingDependencyError

try:
    import radical.pilot as rp
except ImportError as _error:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("radical.pilot", "radical") from _error

from scalems.execution.jobs import ExecutableJob, ExecutableOutcome, FunctionJob, FunctionOutcome, InputFile

from .runtime_configuration import RuntimeConfiguration, get_pre_exec
from .watch import FinalTaskState

logger = logging.getLogger(__name__)

#: Names of the call record and its result in a function task's directory and sandbox.
CALL_FILE = "scalems-call.json"
RESULT_FILE = "scalems-result.json"
#: stdout/stderr of function tasks (kept for diagnosis).
FUNCTION_STDOUT = "stdout"
FUNCTION_STDERR = "stderr"

#: Printed by the wrapper when the program cannot be found; the client looks for it.
NOT_FOUND_MARKER = "scalems: program not found:"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Characters RP's staging (URL parsing, then `cp` split on white space) passes through unharmed.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+,=-]+$")

_THREADING_TYPES = {"openmp": rp.OpenMP, "posix": rp.POSIX, "pthreads": rp.POSIX, "": ""}


class StagingError(ValueError):
    """A job cannot be described as an RP task (a name RP cannot stage, a bad variable name...)."""


class PathAliases:
    """Plain-named symbolic links for local paths that RP's staging would mangle.

    Thread-safe; :meth:`close` removes the links (never their targets).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._directory: typing.Optional[str] = None
        self._links: typing.Dict[str, str] = {}

    def plain(self, path: typing.Union[str, os.PathLike]) -> str:
        text = os.path.abspath(os.fspath(path))
        if _PLAIN_PATH.match(text):
            return text
        with self._lock:
            link = self._links.get(text)
            if link is None:
                if self._directory is None:
                    self._directory = tempfile.mkdtemp(prefix="scalems-rp-links-")
                link = os.path.join(self._directory, str(len(self._links)))
                if not _PLAIN_PATH.match(link):
                    raise StagingError(
                        f"{text!r} contains characters RADICAL-Pilot's file staging cannot handle, and the "
                        f"temporary directory {self._directory!r} does too; set TMPDIR to a plain path."
                    )
                os.symlink(text, link)
                self._links[text] = link
            return link

    def close(self):
        with self._lock:
            directory, self._directory = self._directory, None
            self._links.clear()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _check_name(name: str, what: str, label: str) -> str:
    path = pathlib.PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise StagingError(
            f"task {label!r}: {what} {name!r} must be a relative path inside the task directory"
        )
    if not _PLAIN_PATH.match(name):
        raise StagingError(
            f"task {label!r}: {what} {name!r} cannot be staged by RADICAL-Pilot (its copy command splits "
            "names on white space and special characters); use a plain file name"
        )
    return str(path)


def _url(path: str) -> str:
    return f"file://localhost{path}"


class _Staging:
    """Staging directives for one task, in the form that suits the resource."""

    def __init__(self, configuration: RuntimeConfiguration, aliases: PathAliases):
        # COPY runs in the agent (same file system for local.*) and honours stage_on_error;
        # TRANSFER runs in the client and is the only way to reach a remote sandbox.
        self.local = configuration.is_local
        self.action = rp.COPY if self.local else rp.TRANSFER
        self.aliases = aliases
        self.inputs: typing.List[dict] = []
        self.outputs: typing.List[dict] = []
        self._names: typing.Set[str] = set()

    def stage_in(self, source: typing.Union[str, os.PathLike], name: str):
        if name in self._names:
            return
        self._names.add(name)
        self.inputs.append(
            {"source": _url(self.aliases.plain(source)), "target": f"task:///{name}", "action": self.action}
        )

    def streams(self, description: rp.TaskDescription, stdout: str, stderr: str, directory: pathlib.Path):
        """Where the task's stdout/stderr go.

        On this machine: straight into the job's directory (RP takes absolute paths
        as they are), which saves two copies per task and works for failed tasks too.
        Elsewhere: into the sandbox, staged back like outputs.
        """
        base = self.aliases.plain(directory) if self.local else ""
        if not self.local:
            for name in dict.fromkeys((stdout, stderr)):
                self.stage_out(name, directory)
        description.stdout = os.path.join(base, stdout)
        description.stderr = os.path.join(base, stderr)
        # The shell redirects the streams before anything runs: their directories must exist.
        parents = sorted({os.path.dirname(name) for name in (stdout, stderr)} - {""})
        if parents:
            description.pre_launch = [shlex.join(["mkdir", "-p", *(os.path.join(base, p) for p in parents)])]

    def stage_out(self, name: str, directory: pathlib.Path):
        target = os.path.join(self.aliases.plain(directory), name)
        self.outputs.append(
            {
                "source": f"task:///{name}",
                "target": _url(target),
                "action": self.action,
                "flags": rp.CREATE_PARENTS,
            }
        )


def _environment_lines(env: typing.Mapping[str, str], label: str) -> typing.List[str]:
    lines = []
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise StagingError(f"task {label!r}: {key!r} is not a valid environment variable name")
        lines.append(f"export {key}={shlex.quote(str(value))}")
    return lines


def _resources(description: rp.TaskDescription, resources) -> None:
    """RP's fields for scalems's resources. Several cores per rank mean OpenMP threads unless the task
    says otherwise, so RP sets OMP_NUM_THREADS as the local backend does; GPUs are CUDA devices
    (RP sets CUDA_VISIBLE_DEVICES to the ones it assigned)."""
    description.ranks = resources.ranks
    description.cores_per_rank = resources.cores_per_rank
    description.gpus_per_rank = resources.gpus_per_rank
    if resources.gpus_per_rank:
        description.gpu_type = rp.CUDA
    if resources.cores_per_rank > 1 and not resources.threading_type:
        description.threading_type = rp.OpenMP
    if resources.threading_type:
        kind = _THREADING_TYPES.get(resources.threading_type.lower())
        if kind is None:
            raise StagingError(
                f"threading_type {resources.threading_type!r} is not supported by RADICAL-Pilot "
                f"(use one of: OpenMP, POSIX)"
            )
        description.threading_type = kind


def _wrapper(stdin_name: typing.Optional[str]) -> str:
    """``sh -c`` text: name a missing program clearly, then become the program (stdin redirected)."""
    redirect = f" < {shlex.quote(stdin_name)}" if stdin_name else ""
    return (
        f'command -v "$0" >/dev/null 2>&1 || {{ echo "{NOT_FOUND_MARKER} $0" >&2; exit 127; }}; '
        f'exec "$0" "$@"{redirect}'
    )


def describe_executable(
    job: ExecutableJob, uid: str, configuration: RuntimeConfiguration, aliases: PathAliases
) -> rp.TaskDescription:
    """The RP task for *job*: wrapped command, venv and environment, resources, staging.

    Raises:
        StagingError: the job names something RP cannot stage or export.
    """
    if not job.argv:
        raise StagingError(f"task {job.label!r} has an empty command line")
    staging = _Staging(configuration, aliases)
    argv = []
    for position, item in enumerate(job.argv):
        if isinstance(item, InputFile):
            name = _check_name(item.name, "input file", job.label)
            staging.stage_in(item.source, name)
            # A staged program must be run from the sandbox, not looked up on PATH.
            argv.append(f"./{name}" if position == 0 and "/" not in name else name)
        else:
            argv.append(os.fspath(item))
    for item in job.inputs:  # inputs=[file, (name, file)]: into the sandbox by name, not on the command line
        staging.stage_in(item.source, _check_name(item.name, "input file", job.label))
    stdin_name = None
    if job.stdin is not None:
        stdin_name = _check_name(pathlib.Path(job.stdin).name, "stdin file", job.label)
        staging.stage_in(job.stdin, stdin_name)
    stdout = _check_name(job.stdout, "stdout file", job.label)
    stderr = _check_name(job.stderr, "stderr file", job.label)
    outputs = [_check_name(str(name), "output file", job.label) for name in job.outputs]
    for name in dict.fromkeys(outputs):
        if name not in (stdout, stderr):
            staging.stage_out(name, job.directory)

    description = rp.TaskDescription()
    description.uid = uid
    description.name = job.label
    description.executable = shlex.join(["/bin/sh", "-c", _wrapper(stdin_name), *argv])
    description.arguments = []
    description.pre_exec = get_pre_exec(configuration) + _environment_lines(job.env, job.label)
    return _completed(description, staging, stdout, stderr, job)


def _verified(description: rp.TaskDescription, label: str) -> rp.TaskDescription:
    """Let RP check the description now, so that a bad one fails its job alone, not a submission bulk."""
    try:
        description.verify()
    except (ValueError, TypeError) as error:
        raise StagingError(f"task {label!r}: RADICAL-Pilot rejects its description: {error}") from error
    return description


def _client_python_path() -> typing.List[str]:
    """Directories of user code on this interpreter's ``sys.path`` (not the installation's own).

    Functions from modules beside a workflow script are pickled by reference, so a
    task on this machine needs the same directories to import them. The folder this
    client's scalems is imported from is left out.
    """
    installed = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p}
    # Where this client's scalems comes from (an editable install's source folder): tasks must
    # import the task environment's scalems, whose version the session checked.
    import scalems

    installed.update(os.path.realpath(os.path.dirname(p)) for p in scalems.__path__)
    found = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path) or any(path == p or path.startswith(p + os.sep) for p in installed):
            continue
        if path not in found:
            found.append(path)
    return found


def python_path_pre_exec(configuration: RuntimeConfiguration) -> typing.List[str]:
    """Shell lines that put the client's user-code directories on ``PYTHONPATH`` (local resources only).

    For function tasks and the Raptor worker alike: a function from a module beside
    the workflow script is pickled by reference and must be importable there.
    """
    if not configuration.is_local:
        return []
    path = _client_python_path()
    if not path:
        return []
    joined = shlex.quote(os.pathsep.join(path))
    return [f'export PYTHONPATH={joined}"${{PYTHONPATH:+:$PYTHONPATH}}"']


def describe_function(
    job: FunctionJob, uid: str, configuration: RuntimeConfiguration, aliases: PathAliases
) -> rp.TaskDescription:
    """The RP task running ``python -m scalems.call`` on the call record in ``job.directory``.

    The caller writes :data:`CALL_FILE` into ``job.directory`` first. Exit status 1
    of ``scalems.call`` means "the function raised; the result record says how",
    which is a result like any other: the wrapper turns it into 0 so that RP
    stages the record back even through client-side TRANSFER.
    """
    staging = _Staging(configuration, aliases)
    staging.stage_in(job.directory / CALL_FILE, CALL_FILE)
    staging.stage_out(RESULT_FILE, job.directory)
    script = '"$0" -m scalems.call "$1" "$2"; rc=$?; if [ "$rc" -eq 1 ]; then exit 0; fi; exit "$rc"'
    description = rp.TaskDescription()
    description.uid = uid
    description.name = job.label
    description.executable = shlex.join(
        ["/bin/sh", "-c", script, configuration.python, CALL_FILE, RESULT_FILE]
    )
    description.arguments = []
    description.pre_exec = get_pre_exec(configuration) + python_path_pre_exec(configuration)
    return _completed(description, staging, FUNCTION_STDOUT, FUNCTION_STDERR, job)


def _completed(description, staging, stdout: str, stderr: str, job):
    """Add stream redirection, resources and staging (kept even on failure) to *description*; verify it."""
    staging.streams(description, stdout, stderr, job.directory)
    _resources(description, job.resources)
    description.input_staging = staging.inputs
    description.output_staging = staging.outputs
    description.stage_on_error = True
    return _verified(description, job.label)


def _read_tail(path: pathlib.Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _restore_stream(path: pathlib.Path, text: str, final: FinalTaskState, note: bool) -> None:
    """Write RP's copy of a stream (its last 1024 characters) if the file did not come back."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if note and final.sandbox:
        text = (
            f"[scalems: RADICAL-Pilot did not return this file; this is the end of it as RP reported it. "
            f"The full file is in {final.sandbox}]\n{text}"
        )
    path.write_text(text)


#: A line Slurm's launcher writes into a task's stderr: at the end of a failed one ("srun: error:
#: node1: task 0: Exited with exit code 3", "slurmstepd: error: *** STEP 5.2 ON node1 CANCELLED"),
#: at the start of one that waited for its step ("srun: Job 84 step creation temporarily disabled").
_LAUNCHER_LINE = re.compile(rb"^(srun|slurmstepd): ")
_LAUNCHER_PREFIXES = (b"srun: ", b"slurmstepd: ")


def _drop_launcher_lines(path: pathlib.Path, label: str, failed: bool) -> None:
    """Take the launcher's own leading and trailing lines out of a task's stderr file.

    RP runs the program under the launch method (``srun`` on Slurm) with both writing
    to one stderr. The file is the program's stderr, as with scalems.local, so srun's
    lines go to the log instead. Cheap when there are none: the first bytes tell whether
    the file starts with one; the end is read only for a failed task.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LAUNCHER_PREFIXES[1]))
            leading = head.startswith(_LAUNCHER_PREFIXES)
            if not leading and not failed:
                return
            size = fh.seek(0, os.SEEK_END)
            start = 0 if leading else max(0, size - 8192)
            fh.seek(start)
            text = fh.read()
    except OSError:
        return
    lines = text.splitlines(keepends=True)
    first = 0
    if leading:
        while first < len(lines) and _LAUNCHER_LINE.match(lines[first]):
            first += 1
    last = len(lines)
    if failed:
        while last > max(first, 1 if start else 0) and _LAUNCHER_LINE.match(lines[last - 1]):
            last -= 1
    if first == 0 and last == len(lines):
        return
    report = b"".join(lines[:first] + lines[last:])
    try:
        if first:
            path.write_bytes(b"".join(lines[first:last]))
        else:
            os.truncate(path, start + len(b"".join(lines[:last])))
    except OSError:
        return
    logger.info("The launcher wrote on %r: %s", label, report.decode(errors="replace").strip())


def executable_outcome(job: ExecutableJob, final: FinalTaskState, program: str) -> ExecutableOutcome:
    """Turn RP's final report into an outcome; make sure stdout/stderr exist in ``job.directory``."""
    directory = pathlib.Path(job.directory)
    _restore_stream(directory / job.stdout, final.stdout, final, note=False)
    _restore_stream(directory / job.stderr, final.stderr, final, note=True)
    _drop_launcher_lines(directory / job.stderr, job.label, failed=final.exit_code != 0)
    if final.state == rp.CANCELED:
        return ExecutableOutcome(exitcode=None, error=f"{final.describe()} (cancelled by RADICAL-Pilot)")
    stderr = _read_tail(directory / job.stderr) or final.stderr
    if final.exit_code == 127 and NOT_FOUND_MARKER in stderr:
        return ExecutableOutcome(
            exitcode=127,
            error=f"program not found: {program!r} is not on the PATH of the task at "
            f"{final.sandbox or 'the execution site'} (after activating the task venv)",
        )
    if final.exit_code is None:
        detail = f" ({final.exception_detail.strip().splitlines()[-1]})" if final.exception_detail else ""
        return ExecutableOutcome(exitcode=None, error=f"{final.describe()}{detail}")
    missing = [name for name in job.outputs if not (directory / name).exists()]
    if missing:
        logger.warning(
            "Task %r (RP task %s, exit status %s) did not produce declared output(s): %s",
            job.label,
            final.uid,
            final.exit_code,
            ", ".join(map(str, missing)),
        )
    return ExecutableOutcome(exitcode=final.exit_code, where=final.uid)


def function_outcome(job: FunctionJob, final: FinalTaskState) -> FunctionOutcome:
    """The result record that came back, or an error saying why none did."""
    directory = pathlib.Path(job.directory)
    _restore_stream(directory / FUNCTION_STDERR, final.stderr, final, note=True)
    result = directory / RESULT_FILE
    if result.is_file():
        return FunctionOutcome(result=result.read_text(), where=final.uid)
    stderr = _read_tail(directory / FUNCTION_STDERR, 2048).strip() or final.stderr.strip()
    message = f"no result came back from {final.describe()}"
    if stderr:
        message += f"; stderr ends with:\n{stderr}"
    return FunctionOutcome(error=message)
