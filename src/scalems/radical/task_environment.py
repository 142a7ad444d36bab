"""Task environments at the resource: provisioned by scalems, and checked against the client.

Tasks, function calls and the Raptor master run ``python`` in a *task
environment* at the resource. The user may name one (``--venv``); otherwise, on
every resource but ``local.localhost``, scalems provisions one:

* a virtual environment on the resource's shared file system, holding the
  client's exact versions of scalems, dill and radical.pilot (and of mpi4py and
  mpich when the client has them) plus the workflow's extra requirements
  (``--task-requirements``, ``--task-pip``);
* scalems goes in as a wheel built here from the client's own installed package
  (:func:`build_wheel`; scalems need not be on a package index, and an editable
  install works), staged to the resource with the task that builds the env;
* its name holds a key of that version set (:func:`environment_key`), so later
  sessions with the same set reuse it. The builder (:data:`BUILDER`, run by one
  RP task on the pilot) takes a lock file, rebuilds an environment whose "ready"
  marker is missing (a half-built one) and writes the marker last.

Why an RP task and not ``pilot.prepare_env``: in RP 1.103 that call runs RP's
static-VE script inside the agent, uses any directory that exists at the path
"as is" (a half-built env included), takes no lock, and reports failures only
as an RPC exception; a task gives scalems the lock, the marker, the staged
wheel and the builder's log.

Before any task of the workflow, :func:`check_versions` runs the task
environment's python once (a tiny RP task) and compares Python (major.minor),
scalems, dill and radical.pilot with the client's: a mismatch is a
:class:`~scalems.exceptions.SoftwareCompatibilityError`.
"""

from __future__ import annotations

__all__ = (
    "BUILDER",
    "ENV_PREFIX",
    "READY_MARKER",
    "TaskEnvironmentPlan",
    "build_wheel",
    "check_versions",
    "client_versions",
    "compare_versions",
    "environment_key",
    "needs_version_check",
    "plan",
    "provision",
)

import base64
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import pathlib
import shlex
import sys
import time
import typing
import zipfile

from scalems.exceptions import SoftwareCompatibilityError

from .runtime_configuration import RuntimeConfiguration, get_pre_exec

logger = logging.getLogger(__name__)

#: Directory name prefix of a provisioned environment; the rest is :func:`environment_key`.
ENV_PREFIX = "scalems-env-"
#: Written (last) into a provisioned environment when it is complete.
READY_MARKER = "scalems-env-ready.json"
#: Distributions whose versions must agree between client and task environment (besides Python).
PINNED = ("scalems", "dill", "radical.pilot")

_WHEEL_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same files give the same wheel bytes
_REPORT = "SCALEMS-ENV "
_PROBE_MARK = "SCALEMS-PROBE "

#: The environment builder, run at the resource by the interpreter that matches the client.
#: argv: root, name, wheel, requirements file. Last stdout line: ``SCALEMS-ENV {json}``.
BUILDER = r'''
import datetime, fcntl, json, os, shutil, subprocess, sys, time
root, name, wheel, requirements = sys.argv[1:5]
path = os.path.join(root, name)
marker = os.path.join(path, "scalems-env-ready.json")
log = path + ".log"
def report(result, **info):
    print("SCALEMS-ENV " + json.dumps(dict(result=result, path=path, log=log, **info)), flush=True)
os.makedirs(root, exist_ok=True)
lock = open(path + ".lock", "a")
try:
    fcntl.lockf(lock, fcntl.LOCK_EX)  # another session building the same env: wait for it
except OSError as error:
    print("scalems: no lock on %s (%s); building without one" % (lock.name, error), file=sys.stderr)
if os.path.exists(marker):
    with open(marker) as fh:
        report("reused", created=json.load(fh).get("created"))
    sys.exit(0)
if os.path.lexists(path):
    shutil.rmtree(path)  # left half-built by a session that ended early
start = time.time()
python = os.path.join(path, "bin", "python")
steps = [[sys.executable, "-m", "venv", path],
         [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", wheel, "-r", requirements]]
with open(log, "w") as out:
    for argv in steps:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        status = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if status:
            out.close()
            with open(log, errors="replace") as fh:
                tail = [line.rstrip()[:200] for line in fh.read().splitlines()[-12:]]
            print("\n".join(tail))
            shutil.rmtree(path, ignore_errors=True)
            report("failed", step=" ".join(argv[1:3]), status=status)
            sys.exit(1)
created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(marker + ".tmp", "w") as fh:
    json.dump(dict(created=created, seconds=round(time.time() - start, 1), python=sys.version.split()[0]), fh)
os.replace(marker + ".tmp", marker)
report("created", created=created, seconds=round(time.time() - start, 1))
'''

#: Run under the task environment's activation (as tasks are): what it has. One line, so that
#: RP puts it into the task's script as it is.
_PROBE = (
    "import importlib.metadata as m, json, re, sys; found = {}; "
    "[found.setdefault(re.sub(r'[-_.]+', '.', (d.metadata['Name'] or '').lower()), d.version) "
    "for d in m.distributions()]; "
    f"print({_PROBE_MARK!r} + json.dumps(dict(python='%d.%d' % sys.version_info[:2], prefix=sys.prefix, "
    f"executable=sys.executable, **{{n: found.get(n) for n in {PINNED!r}}})))"
)


def client_versions() -> typing.Dict[str, typing.Optional[str]]:
    """Python (major.minor) and the :data:`PINNED` distributions' versions of this client."""
    versions: typing.Dict[str, typing.Optional[str]] = {"python": "%d.%d" % sys.version_info[:2]}
    for name in PINNED:
        versions[name] = _installed_version(name)
    return versions


# -- the scalems wheel ---------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _package_files() -> typing.List[typing.Tuple[str, bytes]]:
    """``(archive name, content)`` of every file of the importable scalems package, sorted."""
    import scalems

    files = []
    for base in map(pathlib.Path, scalems.__path__):
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            files.append(("scalems/" + path.relative_to(base).as_posix(), path.read_bytes()))
    if not any(name == "scalems/__init__.py" for name, _ in files):
        raise SoftwareCompatibilityError(f"scalems.__path__ {list(scalems.__path__)} has no __init__.py")
    return sorted(files)


def build_wheel(directory: typing.Union[str, os.PathLike]) -> typing.Tuple[pathlib.Path, str]:
    """Write a wheel of the client's own scalems into *directory*; return its path and sha256.

    Built from the importable package files (``scalems.__path__``) and the installed
    distribution's metadata (``METADATA``, ``entry_points.txt``, so that the
    ``scalems_rp_master`` script exists in the task environment). The same files give
    the same bytes (fixed member dates, sorted members), so the digest names the code.
    """
    try:
        dist = importlib.metadata.distribution("scalems")
    except importlib.metadata.PackageNotFoundError:
        raise SoftwareCompatibilityError(
            "scalems is importable here but not installed as a distribution (no scalems metadata), so no "
            "wheel can be built for the task environment: install it (pip install -e .) or give --venv."
        ) from None
    version = dist.version
    metadata = dist.read_text("METADATA")
    if not metadata:
        raise SoftwareCompatibilityError(f"the installed scalems {version} has no METADATA: reinstall it")
    info = f"scalems-{version}.dist-info"
    members = _package_files()
    members.append((f"{info}/METADATA", metadata.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        members.append((f"{info}/entry_points.txt", entry_points.encode()))
    members.append((f"{info}/top_level.txt", b"scalems\n"))
    wheel = "Wheel-Version: 1.0\nGenerator: scalems.radical.task_environment\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members.append((f"{info}/WHEEL", wheel.encode()))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    members.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            item = zipfile.ZipInfo(name, date_time=_WHEEL_TIME)
            item.compress_type = zipfile.ZIP_DEFLATED
            item.external_attr = 0o644 << 16
            archive.writestr(item, data)
    content = buffer.getvalue()
    target = pathlib.Path(directory) / f"scalems-{version.replace('-', '_')}-py3-none-any.whl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return target, hashlib.sha256(content).hexdigest()


# -- what to build, and where ---------------------------------------------------------------------


#: Installed in a provisioned environment at the client's versions when the client has them:
#: MPI function tasks and the Raptor worker (RP's MPIWorker, even with one rank) import mpi4py,
#: and a pip-installed mpi4py needs an MPI library (the mpich wheel) at the resource too.
MPI_PACKAGES = ("mpi4py", "mpich")


def _installed_version(name: str) -> typing.Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements_text(configuration: RuntimeConfiguration, versions: typing.Mapping[str, typing.Optional[str]]) -> str:
    """The pip requirements file of a provisioned environment (scalems itself comes as the wheel)."""
    lines = [f"{name}=={versions[name]}" for name in PINNED if name != "scalems" and versions.get(name)]
    for name in MPI_PACKAGES:
        version = _installed_version(name)
        if version:
            lines.append(f"{name}=={version}")
        elif name == "mpi4py" and configuration.enable_raptor:
            lines.append("mpi4py>=3.1  # the Raptor worker needs it")
    if configuration.task_requirements:
        lines.append(f"# from --task-requirements {configuration.task_requirements}")
        lines.extend(pathlib.Path(configuration.task_requirements).read_text().splitlines())
    if configuration.task_pip:
        lines.append("# from --task-pip")
        lines.extend(configuration.task_pip)
    return "\n".join(lines) + "\n"


def environment_key(
    versions: typing.Mapping[str, typing.Optional[str]], wheel_digest: str, requirements: str
) -> str:
    """16 hex digits naming a version set: Python major.minor, scalems (version and wheel
    content: a development install changes code without changing its version), dill,
    radical.pilot and the extra requirements."""
    payload = json.dumps(
        {"versions": dict(versions), "scalems_wheel": wheel_digest, "requirements": requirements}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class TaskEnvironmentPlan:
    """A provisioned environment to build or reuse: where, and the files the builder needs."""

    path: str
    wheel: pathlib.Path
    requirements: pathlib.Path
    builder: pathlib.Path
    versions: typing.Mapping[str, typing.Optional[str]]

    @property
    def ready_marker(self) -> str:
        return os.path.join(self.path, READY_MARKER)


def _path_of(url) -> str:
    text = str(url)
    for prefix in ("file://localhost", "file://"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def default_root(configuration: RuntimeConfiguration, pilot) -> str:
    """Where provisioned environments live unless ``--task-env-root`` says: RP's resource
    sandbox (``<default_remote_workdir>/radical.pilot.sandbox``), shared by every session.

    For ``local.*`` resources scalems puts the pilot sandbox into the work directory; the
    environments still go where RP's resource sandbox would be, so that other work
    directories reuse them.
    """
    if configuration.is_local and "sandbox" not in configuration.rp_resource_params:
        workdir = configuration.resource_config().get("default_remote_workdir")
        if workdir:
            expanded = os.path.expanduser(os.path.expandvars(workdir))
            if "$" not in expanded and os.path.isabs(expanded):
                return os.path.join(expanded, "radical.pilot.sandbox")
    return _path_of(pilot.resource_sandbox).rstrip("/")


def plan(configuration: RuntimeConfiguration, pilot, directory: pathlib.Path) -> TaskEnvironmentPlan:
    """Build the wheel and requirements file into *directory*; name the environment."""
    versions = client_versions()
    missing = [name for name in PINNED if not versions.get(name)]
    if missing:
        raise SoftwareCompatibilityError(f"the client has no {', '.join(missing)} installed to copy into the task environment")
    directory.mkdir(parents=True, exist_ok=True)
    wheel, digest = build_wheel(directory)
    requirements = requirements_text(configuration, versions)
    (directory / "scalems-task-requirements.txt").write_text(requirements)
    (directory / "scalems-make-env.py").write_text(BUILDER)
    root = configuration.task_env_root or default_root(configuration, pilot)
    name = ENV_PREFIX + environment_key(versions, digest, requirements)
    return TaskEnvironmentPlan(
        path=os.path.join(root, name),
        wheel=wheel,
        requirements=directory / "scalems-task-requirements.txt",
        builder=directory / "scalems-make-env.py",
        versions=versions,
    )


# -- RP tasks: build, probe ---------------------------------------------------------------------


def _staged(configuration: RuntimeConfiguration, aliases, path: pathlib.Path) -> dict:
    import radical.pilot as rp

    return {
        "source": f"file://localhost{aliases.plain(path)}",
        "target": f"task:///{path.name}",
        "action": rp.COPY if configuration.is_local else rp.TRANSFER,
    }


def _description(uid: str, executable: str, pre_exec, inputs) -> "typing.Any":
    import radical.pilot as rp

    description = rp.TaskDescription()
    description.uid = uid
    description.name = uid
    description.executable = executable
    description.arguments = []
    description.pre_exec = list(pre_exec)
    description.ranks = 1
    description.cores_per_rank = 1
    description.input_staging = inputs
    description.verify()
    return description


def _builder_command(the_plan: TaskEnvironmentPlan) -> str:
    """Find the python ``X.Y`` of the client at the resource; run the builder with it."""
    major_minor = the_plan.versions["python"]
    wanted = "(%s)" % ", ".join(major_minor.split("."))
    base = getattr(sys, "_base_executable", None) or sys.executable
    candidates = " ".join(shlex.quote(c) for c in dict.fromkeys([base, f"python{major_minor}", "python3"]))
    script = (
        f"for p in {candidates}; do "
        f"if command -v \"$p\" >/dev/null 2>&1 && \"$p\" -c 'import sys, venv; sys.exit(sys.version_info[:2] != {wanted})' "
        f"2>/dev/null; then exec \"$p\" \"$@\"; fi; done; "
        f"echo \"scalems: no python{major_minor} with the venv module found at the resource "
        f"(tried {candidates}; PATH=$PATH)\" >&2; exit 3"
    )
    root, name = os.path.split(the_plan.path)
    argv = [the_plan.builder.name, root, name, the_plan.wheel.name, the_plan.requirements.name]
    return shlex.join(["/bin/sh", "-c", script, "scalems-find-python", *argv])


def _last_line(text: str, mark: str) -> typing.Optional[dict]:
    for line in reversed((text or "").splitlines()):
        if line.startswith(mark):
            try:
                return json.loads(line[len(mark) :])
            except ValueError:
                return None
    return None


def _tail(final, exclude: str = "") -> str:
    text = "\n".join(part for part in (final.stdout, final.stderr) if part)
    lines = [line for line in text.splitlines() if not (exclude and line.startswith(exclude))]
    return "\n".join(lines[-15:])


async def provision(
    configuration: RuntimeConfiguration,
    the_plan: TaskEnvironmentPlan,
    submitter,
    aliases,
    status: typing.Callable[[typing.Optional[str]], None] = lambda note: None,
) -> str:
    """Create (or reuse) the environment of *the_plan* at the resource; return its path.

    Raises:
        SoftwareCompatibilityError: the environment could not be created; the message
            names its path and ends with the tail of the venv/pip output.
    """
    path = the_plan.path
    known_ready = configuration.is_local and os.path.exists(the_plan.ready_marker)
    if known_ready:
        _log_reused(path, the_plan.ready_marker)
        return path
    started = time.monotonic()
    logger.info(
        "creating the task environment %s (python %s, scalems %s, dill %s, radical.pilot %s%s) ...",
        path,
        *(the_plan.versions[name] for name in ("python", *PINNED)),
        ", extra requirements" if configuration.task_pip or configuration.task_requirements else "",
    )
    status(f"creating the task environment {path}")
    inputs = [_staged(configuration, aliases, p) for p in (the_plan.builder, the_plan.wheel, the_plan.requirements)]
    description = _description("scalems.task-env.build", _builder_command(the_plan), configuration.pre_exec, inputs)
    try:
        final = await submitter.run(description)
    finally:
        status(None)
    report = _last_line(final.stdout, _REPORT)
    if report is None or report.get("result") not in ("created", "reused") or final.state != "DONE":
        raise SoftwareCompatibilityError(
            f"scalems could not create the task environment {path} at {configuration.execution_target!r} "
            f"(task {final.state}, exit status {final.exit_code}"
            + (f"; full log: {report['log']}" if report and report.get("log") else "")
            + f"). Its output ended with:\n{_tail(final, _REPORT)}\n"
            "Compute nodes need access to PyPI for this (pip installs dill and radical.pilot there); where they "
            "have none, create an environment yourself and give --venv."
        )
    if report["result"] == "reused":
        logger.info("reusing the task environment %s (created %s by an earlier session)", path, report.get("created"))
    else:
        logger.info(
            "created the task environment %s in %.1f s (%.1f s for venv and pip install)",
            path,
            time.monotonic() - started,
            report.get("seconds", float("nan")),
        )
    return path


def _log_reused(path: str, marker: str) -> None:
    try:
        created = json.loads(pathlib.Path(marker).read_text()).get("created")
    except (OSError, ValueError):
        created = "?"
    logger.info("reusing the task environment %s (created %s)", path, created)


def needs_version_check(configuration: RuntimeConfiguration) -> bool:
    """False only for ``local.localhost`` running tasks in this very interpreter's ``sys.prefix``:
    same interpreter and packages by construction, and RP's start-up stays as it was."""
    if configuration.execution_target != "local.localhost" or configuration.target_venv is None:
        return True
    return os.path.realpath(configuration.target_venv) != os.path.realpath(sys.prefix)


def compare_versions(
    client: typing.Mapping[str, typing.Optional[str]],
    task: typing.Mapping[str, typing.Optional[str]],
) -> typing.List[str]:
    """One line per difference: ``scalems: client 0.1.0, task environment 0.0.1``."""
    lines = []
    for name in ("python", *PINNED):
        ours, theirs = client.get(name), task.get(name)
        if ours != theirs:
            lines.append(f"{name}: client {ours or 'not installed'}, task environment {theirs or 'not installed'}")
    return lines


async def check_versions(
    configuration: RuntimeConfiguration, submitter, *, provisioned: bool, status=lambda note: None
) -> typing.Dict[str, typing.Any]:
    """Run the task environment's python once and compare it with the client (see the module doc).

    Returns what the task environment reported.

    Raises:
        SoftwareCompatibilityError: the versions differ, or its python does not run.
    """
    venv = configuration.target_venv
    status(f"checking the task environment {venv}")
    description = _description(
        "scalems.task-env.check",
        shlex.join([configuration.python, "-c", _PROBE]),
        get_pre_exec(configuration),
        [],
    )
    try:
        final = await submitter.run(description)
    finally:
        status(None)
    found = _last_line(final.stdout, _PROBE_MARK)
    versions = client_versions()
    if provisioned:
        fix = f"Remove {venv} (and {venv}.lock) so that scalems builds it again."
    else:
        fix = (
            f"Recreate --venv {venv} with python {versions['python']}, "
            + ", ".join(f"{name}=={versions[name]}" for name in PINNED)
            + " (the client's versions), or drop --venv so that scalems provisions a matching environment."
        )
    if found is None:
        raise SoftwareCompatibilityError(
            f"the task environment {venv} at {configuration.execution_target!r} could not run its python "
            f"{configuration.python} (task {final.state}, exit status {final.exit_code}). Output:\n"
            f"{_tail(final)}\n{fix}"
        )
    differences = compare_versions(versions, found)
    if differences:
        raise SoftwareCompatibilityError(
            f"the task environment {venv} at {configuration.execution_target!r} (python {found.get('executable')}) "
            "does not match the client: " + "; ".join(differences) + f". {fix}"
        )
    logger.info(
        "task environment %s matches the client (python %s, scalems %s, dill %s, radical.pilot %s)",
        venv,
        *(found.get(name) for name in ("python", *PINNED)),
    )
    return found

