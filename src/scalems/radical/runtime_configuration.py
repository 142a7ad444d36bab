"""Configuration of the RADICAL-Pilot backend: its options, their checks, and what they become.

Everything here is checked before any RP session starts, so a typo in
``--resource`` or ``--pilot-option cores=two`` costs a usage message, not a
pilot that fails a minute later.
"""

from __future__ import annotations

__all__ = (
    "RuntimeConfiguration",
    "add_arguments",
    "configuration",
    "get_pre_exec",
    "known_resources",
    "parse_pilot_option",
    "pilot_option_types",
)

import argparse
import dataclasses
import difflib
import functools
import json
import os
import shlex
import sys
import typing

from scalems.exceptions import ConfigurationError, MissingDependencyError

try:
    import radical.pilot as rp
    import radical.utils as ru
except ImportError as _error:  # the options can be listed (--help, docs) without RP; checking them needs it

    class _Missing:
        def __init__(self, error: ImportError):
            self._error = error

        def __getattr__(self, name):
            raise MissingDependencyError("radical.pilot", "radical") from self._error

    rp = ru = _Missing(_error)

#: Pilot run time (minutes) when the user gives none: a backstop so that a client
#: killed hard does not leave a pilot agent running for RP's default forever-ish.
DEFAULT_PILOT_RUNTIME = 30

#: PilotDescription keys that have their own option or that scalems must control.
_RESERVED_PILOT_KEYS = {
    "resource": "use --resource",
    "access_schema": "use --access",
    "exit_on_error": "scalems keeps it False so that a failed pilot is reported instead of killing the client",
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _type_name(kind) -> str:
    if isinstance(kind, type):
        return {int: "an integer", float: "a number", bool: "a boolean (true/false)", str: "a string"}.get(
            kind, kind.__name__
        )
    if isinstance(kind, list):
        return "a list (JSON, or comma-separated strings)"
    if isinstance(kind, dict):
        return "a JSON object"
    return repr(kind)


@functools.lru_cache(maxsize=1)
def pilot_option_types() -> typing.Dict[str, typing.Any]:
    """Keys of :class:`radical.pilot.PilotDescription` and the type RP declares for each."""
    schema = getattr(rp.PilotDescription, "_schema", None)
    if not schema:  # pragma: no cover - only if RP changes its typed-dict internals
        defaults = getattr(rp.PilotDescription, "_defaults", {})
        schema = {key: type(value) if value is not None else str for key, value in defaults.items()}
    return dict(schema)


def _convert(key: str, kind, text: str):
    """Turn the command-line text *text* into a value of the RP schema type *kind*."""
    expected = _type_name(kind)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(f"pilot option {key!r} expects {expected}, got {text!r}")
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigurationError(f"pilot option {key!r} expects {expected}, got {text!r}") from None
    if kind is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigurationError(f"pilot option {key!r} expects {expected}, got {text!r}") from None
    if kind is str:
        return text
    if isinstance(kind, list):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError as error:
                raise ConfigurationError(f"pilot option {key!r} expects {expected}: {error}") from None
        else:
            value = [item.strip() for item in stripped.split(",") if item.strip()]
        if not isinstance(value, list):
            raise ConfigurationError(f"pilot option {key!r} expects {expected}, got {text!r}")
        return value
    # dicts and anything more complex: JSON, checked by RP itself.
    try:
        return json.loads(text)
    except ValueError as error:
        raise ConfigurationError(f"pilot option {key!r} expects {expected}: {error}") from None


def _check_value(key: str, value):
    """Coerce a programmatically given value (which may still be text) to the schema type."""
    types = pilot_option_types()
    if key in _RESERVED_PILOT_KEYS:
        raise ConfigurationError(f"pilot option {key!r} cannot be set this way: {_RESERVED_PILOT_KEYS[key]}")
    if key not in types:
        close = difflib.get_close_matches(key, types, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigurationError(
            f"unknown pilot option {key!r}.{hint} Valid keys (radical.pilot.PilotDescription): "
            f"{', '.join(sorted(k for k in types if k not in _RESERVED_PILOT_KEYS))}"
        )
    kind = types[key]
    if isinstance(value, str) and kind is not str:
        value = _convert(key, kind, value)
    if isinstance(kind, type) and kind in (int, float, bool, str):
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigurationError(f"pilot option {key!r} expects {_type_name(kind)}, got {value!r}")
    if key in ("cores", "gpus", "nodes", "memory", "backup_nodes") and value < 0:
        raise ConfigurationError(f"pilot option {key!r} must not be negative, got {value}")
    if key == "runtime" and value < 1:
        raise ConfigurationError(f"pilot option 'runtime' is in minutes and must be at least 1, got {value}")
    return value


def parse_pilot_option(text: str) -> typing.Tuple[str, typing.Any]:
    """Parse ``KEY=VALUE`` (one ``--pilot-option``) into a key and a value typed as RP declares it.

    Raises:
        ConfigurationError: malformed text, unknown key, or a value of the wrong type.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigurationError(f"pilot option {text!r} must look like KEY=VALUE, e.g. cores=4")
    return key, _check_value(key, value)


def _pilot_option_argument(text: str) -> typing.Tuple[str, typing.Any]:
    """argparse ``type=`` for ``--pilot-option``: bad input becomes a usage error (exit 2)."""
    try:
        return parse_pilot_option(text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@functools.lru_cache(maxsize=1)
def _resource_configs() -> dict:
    # The same lookup rp.Session does: package configs merged with ~/.radical/pilot/configs.
    return ru.Config("radical.pilot.resource", name="*", expand=False)


def known_resources() -> typing.List[str]:
    """Resource labels (``site.host``) that RADICAL-Pilot knows on this client."""
    configs = _resource_configs()
    return sorted(f"{site}.{host}" for site in configs for host in configs[site])


def _resource_config(resource: str) -> dict:
    site, _, host = resource.partition(".")
    configs = _resource_configs()
    if not host or site not in configs or host not in configs[site]:
        close = difflib.get_close_matches(resource, known_resources(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigurationError(
            f"unknown RADICAL-Pilot resource {resource!r}.{hint} Run 'radical-pilot-resources' to list the "
            "resource names this installation knows (site.host); add your own in "
            "~/.radical/pilot/configs/resource_<site>.json."
        )
    config = configs[site][host]
    _check_schemas(site, host, config)
    return config


def _resource_file(site: str) -> str:
    """The file that defines resources of *site*: the user's (which wins over RP's own), else RP's."""
    home = os.getenv("RADICAL_CONFIG_USER_DIR") or os.getenv("HOME")
    if home:
        user = os.path.join(home, ".radical", "pilot", "configs", f"resource_{site}.json")
        if os.path.exists(user):
            return user
    return os.path.join(os.path.dirname(rp.__file__), "configs", f"resource_{site}.json")


def _check_schemas(site: str, host: str, config: typing.Mapping) -> None:
    """Refuse a resource config in the format of RP before 1.40, saying how to convert it.

    Before RP 1.40, ``schemas`` was a list of access schema names, each schema's
    settings a dict beside it (upstream SCALE-MS shipped such files). Since 1.40,
    ``schemas`` maps each name to its settings and ``default_schema`` names the default.
    """
    schemas = config.get("schemas")
    if schemas is None or isinstance(schemas, typing.Mapping):
        return
    names = [str(name) for name in schemas] if isinstance(schemas, (list, tuple)) else []
    shown = names or ["local"]
    old = ", ".join([f'"schemas": {json.dumps(names)}', *(f'"{name}": {{...}}' for name in shown)])
    new = ", ".join(f'"{name}": {{...}}' for name in shown)
    raise ConfigurationError(
        f"{_resource_file(site)}: resource '{site}.{host}' is written in the resource config format of "
        f"RADICAL-Pilot before 1.40; RADICAL-Pilot {rp.version} needs the 1.40 format. Change\n"
        f'  {{"{host}": {{{old}, ...}}}}\n'
        "to\n"
        f'  {{"{host}": {{"default_schema": "{shown[0]}", "schemas": {{{new}}}, ...}}}}\n'
        "i.e. move each schema's settings into \"schemas\" under its name and name the default in "
        '"default_schema" (the other settings stay as they are).'
    )


def _resource_argument(text: str) -> str:
    try:
        _resource_config(text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _running_venv() -> str:
    """The environment of this interpreter: what local tasks should run in by default."""
    return sys.prefix


@dataclasses.dataclass(frozen=True)
class RuntimeConfiguration:
    """Settings of one RADICAL-Pilot backend run.

    Attributes:
        execution_target: RP resource label (``--resource``), e.g. ``local.localhost``.
        target_venv: Python environment that tasks activate at the execution site
            (``--venv``). None: on ``local.localhost`` (without extra task requirements),
            this interpreter's environment; elsewhere scalems provisions one at the
            resource once the pilot is active (:mod:`.task_environment`) and the backend
            then runs with a copy of this configuration naming it.
        rp_resource_params: further :class:`radical.pilot.PilotDescription` fields
            (``--pilot-option``), already typed.
        access: access schema of the resource (``--access``), or None for its default.
        enable_raptor: run function tasks through a scalems Raptor master (``--enable-raptor``).
        pre_exec: extra shell lines each task runs before its program (after the venv is activated).
        session_dir: where RP's client-side session folder goes (default: ``scalems_radical``
            in the work directory). RP would otherwise write it into the current directory.
        pilot_startup_timeout: seconds to wait for the pilot to become active before giving up.
            None: 300 s for ``local.*`` pilots that are no batch job; a batch job is awaited
            however long it waits in the queue (and says so, see ``queue_watch``); other
            pilots only until submitted.
        session_startup_timeout: seconds allowed for RP to create its session and managers
            and accept the pilot (normally 5-10 s). RP 1.103 can hang there for good (a
            registry request that is never answered); past this bound the session is closed
            and a new one started, once.
        close_timeout: seconds allowed for closing the RP session.
        task_requirements: a pip requirements file (on this machine) whose packages go into
            a provisioned task environment (``--task-requirements``).
        task_pip: further pip requirement specifiers for it (``--task-pip``, repeatable).
        task_env_root: directory at the resource that holds provisioned task environments
            (``--task-env-root``; default: RP's resource sandbox, see
            :func:`.task_environment.default_root`).
    """

    execution_target: str = "local.localhost"
    target_venv: typing.Optional[str] = None
    rp_resource_params: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    access: typing.Optional[str] = None
    enable_raptor: bool = False
    pre_exec: typing.Tuple[str, ...] = ()
    session_dir: typing.Optional[str] = None
    pilot_startup_timeout: typing.Optional[float] = None
    session_startup_timeout: float = 120.0
    close_timeout: float = 120.0
    task_requirements: typing.Optional[str] = None
    task_pip: typing.Tuple[str, ...] = ()
    task_env_root: typing.Optional[str] = None
    #: True in the copy the backend makes once scalems has provisioned ``target_venv``.
    provisioned: bool = False

    def __post_init__(self):
        # Normalize and check eagerly: a bad configuration must fail before a session starts.
        config = _resource_config(self.execution_target)
        if self.access is not None:
            schemas = sorted((config.get("schemas") or {}).keys())
            if self.access not in schemas:
                raise ConfigurationError(
                    f"access schema {self.access!r} is not defined for resource {self.execution_target!r}; "
                    f"choose one of: {', '.join(schemas) or '(none)'}"
                )
        params = {key: _check_value(key, value) for key, value in dict(self.rp_resource_params or {}).items()}
        object.__setattr__(self, "rp_resource_params", params)
        object.__setattr__(self, "pre_exec", tuple(self.pre_exec or ()))
        self._check_task_environment_options()
        venv = self.target_venv
        if venv is None or venv == "":
            if self.execution_target != "local.localhost" or self.task_pip or self.task_requirements:
                venv = None  # provisioned at the resource once the pilot is active
            else:
                venv = _running_venv()
        if venv is not None:
            venv = os.fspath(venv)
        if venv is not None and self.is_local:
            venv = os.path.abspath(os.path.expanduser(venv))
            if not any(os.path.exists(os.path.join(venv, "bin", name)) for name in ("python3", "python")):
                raise ConfigurationError(
                    f"--venv {venv!r} is not a Python environment: it has no bin/python3. "
                    "Give the directory that contains bin/activate."
                )
        object.__setattr__(self, "target_venv", venv)
        if self.session_dir is not None:
            object.__setattr__(self, "session_dir", os.path.abspath(os.fspath(self.session_dir)))
        for name in ("session_startup_timeout", "close_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")

    def _check_task_environment_options(self):
        object.__setattr__(self, "task_pip", tuple(self.task_pip or ()))
        given = {
            "--task-pip": self.task_pip,
            "--task-requirements": self.task_requirements,
            "--task-env-root": self.task_env_root,
        }
        extras = [name for name, value in given.items() if value]
        if extras and self.target_venv and not self.provisioned:
            raise ConfigurationError(
                f"{' and '.join(extras)} describe the task environment scalems provisions; with --venv "
                f"{self.target_venv!r} tasks use that environment as it is: install what they need there, "
                "or drop --venv."
            )
        for spec in self.task_pip:
            if not spec.strip() or "\n" in spec:
                raise ConfigurationError(f"--task-pip {spec!r} is not a pip requirement specifier")
        if self.task_requirements is not None:
            path = os.path.abspath(os.path.expanduser(os.fspath(self.task_requirements)))
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise ConfigurationError(f"--task-requirements {path!r} is not a readable file")
            object.__setattr__(self, "task_requirements", path)
        if self.task_env_root is not None:
            root = os.fspath(self.task_env_root)
            if self.is_local:
                root = os.path.abspath(os.path.expanduser(root))
            elif not root.startswith("/"):
                raise ConfigurationError(f"--task-env-root {root!r} must be an absolute path at the resource")
            object.__setattr__(self, "task_env_root", root)

    @property
    def provisions_task_environment(self) -> bool:
        """True until scalems has provisioned the task environment (no --venv given, see ``target_venv``)."""
        return self.target_venv is None

    def resource_config(self) -> dict:
        """RP's resource config of ``execution_target`` (as the client sees it)."""
        return dict(_resource_config(self.execution_target))

    @property
    def is_local(self) -> bool:
        """True for resources on this machine (RP's ``local`` site): sandboxes share our file system."""
        return self.execution_target.split(".", 1)[0] == "local"

    @property
    def venv_bin(self) -> str:
        if self.target_venv is None:
            raise ConfigurationError("the task environment is not provisioned yet")
        return os.path.join(self.target_venv, "bin")

    @property
    def python(self) -> str:
        """The interpreter tasks use to run ``python -m scalems.call``."""
        return os.path.join(self.venv_bin, "python3")

    def pilot_description(self, *, sandbox: typing.Optional[str] = None) -> dict:
        """The fields of the :class:`radical.pilot.PilotDescription` to submit."""
        description = dict(self.rp_resource_params)
        description["resource"] = self.execution_target
        if self.access is not None:
            description["access_schema"] = self.access
        description.setdefault("runtime", DEFAULT_PILOT_RUNTIME)
        description["exit_on_error"] = False
        if sandbox is not None:
            description.setdefault("sandbox", sandbox)
        if not description.get("cores") and not description.get("nodes"):
            if self.is_local:
                description["cores"] = (
                    len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1)
                )
            else:
                description["nodes"] = 1
        return description


def get_pre_exec(configuration: RuntimeConfiguration) -> typing.List[str]:
    """Shell lines every scalems task runs first: activate the task venv, then the user's lines.

    A plain ``PATH`` prepend is the fallback for environments without ``bin/activate``
    (a system or conda prefix).
    """
    if configuration.target_venv is None:
        raise ConfigurationError("the task environment is not provisioned yet: no task can be described")
    venv = shlex.quote(configuration.target_venv)
    lines = [
        f'if test -f {venv}/bin/activate; then . {venv}/bin/activate; else export PATH={venv}/bin:"$PATH"; fi'
    ]
    lines.extend(configuration.pre_exec)
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``scalems.radical`` options to *parser*."""
    group = parser.add_argument_group("scalems.radical")
    group.add_argument(
        "--resource",
        type=_resource_argument,
        required=True,
        metavar="RESOURCE",
        help="RADICAL-Pilot resource label (site.host) for the radical.pilot.PilotDescription, e.g. "
        "local.localhost. List the known names with 'radical-pilot-resources'. (Required)",
    )
    group.add_argument(
        "--access",
        metavar="SCHEMA",
        default=None,
        help="Explicitly specify the access_schema to use from the RADICAL resource.",
    )
    group.add_argument(
        "--venv",
        metavar="PATH",
        default=None,
        help="Path, at the resource, of a Python virtual environment in which RP tasks run; it must have the "
        "client's versions of Python (major.minor), scalems, dill and radical.pilot (checked before any task "
        "runs). Default: on local.localhost the environment running this command; elsewhere scalems "
        "provisions one at the resource, reused by later sessions.",
    )
    group.add_argument(
        "--task-requirements",
        dest="task_requirements",
        metavar="FILE",
        default=None,
        help="A pip requirements file of the workflow's own packages, installed into the task environment "
        "scalems provisions (not with --venv).",
    )
    group.add_argument(
        "--task-pip",
        dest="task_pip",
        metavar="SPEC",
        action="append",
        default=[],
        help="A pip requirement (e.g. 'numpy>=1.26') for the task environment scalems provisions (repeatable; "
        "not with --venv).",
    )
    group.add_argument(
        "--task-env-root",
        dest="task_env_root",
        metavar="DIR",
        default=None,
        help="Directory at the resource (shared file system) that holds the task environments scalems "
        "provisions, as scalems-env-<key>. Default: RP's resource sandbox, "
        "<default_remote_workdir>/radical.pilot.sandbox.",
    )
    group.add_argument(
        "--pilot-option",
        dest="pilot_option",
        metavar="KEY=VALUE",
        action="append",
        type=_pilot_option_argument,
        default=[],
        help="Add a key value pair to the radical.pilot.PilotDescription (repeatable), typed as RP declares "
        f"it, e.g. cores=4, runtime=60 (minutes; default {DEFAULT_PILOT_RUNTIME}), project=abc123, queue=debug.",
    )
    group.add_argument(
        "--enable-raptor",
        action="store_true",
        help="Enable RP Raptor, and manage an execution side dispatching task for function calls.",
    )
    return parser


def configuration(
    args: typing.Union[argparse.Namespace, typing.Sequence[str], None] = None,
) -> RuntimeConfiguration:
    """Backend configuration from parsed command-line arguments (or from a list of option strings).

    Raises:
        ConfigurationError: an option value is invalid (unknown resource, access schema or
            pilot option key, badly typed value, a --task-* option with --venv, an unreadable
            --task-requirements file).
    """
    if args is None or not isinstance(args, argparse.Namespace):
        options = argparse.ArgumentParser(add_help=False)
        add_arguments(options)
        args, _ = _parse_without_exit(options, list(args or []))
    pilot_options = {}
    for key, value in getattr(args, "pilot_option", None) or ():
        pilot_options[key] = value
    resource = getattr(args, "resource", None)
    if not resource:
        raise ConfigurationError("--resource is required, e.g. --resource local.localhost")
    venv = getattr(args, "venv", None)
    return RuntimeConfiguration(
        execution_target=resource,
        target_venv=venv,
        rp_resource_params=pilot_options,
        access=getattr(args, "access", None),
        enable_raptor=bool(getattr(args, "enable_raptor", False)),
        task_requirements=getattr(args, "task_requirements", None),
        task_pip=tuple(getattr(args, "task_pip", None) or ()),
        task_env_root=getattr(args, "task_env_root", None),
    )


def _parse_without_exit(parser: argparse.ArgumentParser, argv: typing.List[str]):
    """``parse_known_args`` that raises instead of exiting (``exit_on_error`` misses type errors before 3.12)."""

    def error(message):
        raise ConfigurationError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_known_args(argv)
