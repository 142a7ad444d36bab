"""Exceptions raised by scalems.

Every scalems error derives from :class:`ScaleMSError`, so ``except
scalems.exceptions.ScaleMSError`` catches anything the package raises on
purpose. Errors carry their data as attributes and format a sentence that
names the cause (the task, the file, the option)::

    ScaleMSError
     ├── APIError                    the API was used in a way it does not allow
     │    ├── ContextError           ... in the wrong scope (no workflow active, nested run, ...)
     │    └── ProtocolError          ... a component broke an internal protocol
     ├── ConfigurationError          a command-line option or setting is invalid
     ├── ScriptError                 the workflow script cannot be run (missing, syntax, no app)
     ├── MissingDependencyError      an optional package is not installed (names the extra)
     ├── MissingImplementationError  a feature is not implemented (also NotImplementedError)
     ├── DispatchError               work could not be handed to an execution backend
     │    └── ResourceError          a task can never fit the resources of the backend
     ├── StoreError                  the work directory's store failed
     │    ├── StoreLockedError       another live process owns the work directory
     │    └── DuplicateKeyError      a key already exists with different content
     ├── SoftwareCompatibilityError  incompatible package versions at the execution site
     └── TaskError                   a task did not produce its result
          ├── TaskFailedError        non-zero exit status, or the function raised
          │    └── TaskTimeoutError  an attempt ran longer than the task's time limit
          ├── UpstreamFailedError    a task this one depends on failed
          └── TaskCancelledError     the run was interrupted before the task finished
"""

from __future__ import annotations

__all__ = (
    "ScaleMSError",
    "APIError",
    "ContextError",
    "ProtocolError",
    "ConfigurationError",
    "ScriptError",
    "MissingDependencyError",
    "MissingImplementationError",
    "DispatchError",
    "ResourceError",
    "StoreError",
    "StoreLockedError",
    "DuplicateKeyError",
    "SoftwareCompatibilityError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UpstreamFailedError",
    "TaskCancelledError",
)

import typing


class ScaleMSError(Exception):
    """Base class for errors raised on purpose by scalems."""


class APIError(ScaleMSError):
    """The API was used in a way it does not allow."""


class ContextError(APIError):
    """The operation is not valid in the current scope (for example, no active workflow)."""


class ProtocolError(APIError):
    """A component did not follow an internal protocol (a bug in scalems or a plug-in)."""


class ConfigurationError(ScaleMSError, ValueError):
    """A command-line option or configuration value is invalid."""


class ScriptError(ScaleMSError):
    """The workflow script cannot be run.

    Attributes:
        script: path of the script, as given.
        reason: one-paragraph explanation.
    """

    def __init__(self, script, reason: str):
        self.script = str(script)
        self.reason = reason
        super().__init__(f"{self.script}: {reason}")


class MissingDependencyError(ScaleMSError, ImportError):
    """An optional dependency is missing.

    Attributes:
        package: the importable name that failed.
        extra: the ``pip install 'scalems[extra]'`` extra that provides it.
    """

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package = package
        self.extra = extra
        purpose = f" {purpose}" if purpose else ""
        super().__init__(
            f"{package} is required{purpose} but is not installed. "
            f"Install it with: pip install 'scalems[{extra}]'",
            name=package,
        )


class MissingImplementationError(ScaleMSError, NotImplementedError):
    """The requested feature is not implemented."""


class DispatchError(ScaleMSError):
    """Work could not be handed to (or managed by) an execution backend."""


class ResourceError(DispatchError):
    """A task asks for more resources than the backend will ever have.

    Attributes:
        task: label of the task.
        requested: cores requested.
        available: cores the backend has.
    """

    def __init__(self, task: str, requested: int, available: int, what: str = "cores"):
        self.task = task
        self.requested = requested
        self.available = available
        super().__init__(
            f"Task {task!r} needs {requested} {what} but the backend has only {available}; "
            f"it could never run. Reduce its resources or give the backend more (e.g. --cores)."
        )


class StoreError(ScaleMSError):
    """The work directory's store could not be used."""


class StoreLockedError(StoreError):
    """Another live process owns the work directory.

    Attributes:
        directory: the work directory.
        owner: description of the owning process (pid, host, command line, start time).
    """

    def __init__(self, directory, owner: str):
        self.directory = str(directory)
        self.owner = owner
        super().__init__(
            f"Work directory {self.directory} is in use by another scalems run ({owner}). "
            "Wait for it to finish, stop it, or choose another --work-dir."
        )


class DuplicateKeyError(StoreError, KeyError):
    """A key is already present in the store with different content."""

    def __str__(self):  # KeyError would otherwise show the repr of the message.
        return str(self.args[0]) if self.args else ""


class SoftwareCompatibilityError(ScaleMSError, RuntimeError):
    """Incompatible package versions or software interfaces at the execution site."""


class TaskError(ScaleMSError):
    """A task did not produce its result.

    Attributes:
        task: label of the task.
        uid: fingerprint uid of the task.
    """

    def __init__(self, message: str, *, task: str, uid: str = ""):
        self.task = task
        self.uid = uid
        super().__init__(message)


class TaskFailedError(TaskError):
    """The task ran and failed: non-zero exit status, a launch failure, or an exception.

    Attributes:
        exitcode: exit status for executables (None for function tasks).
        stderr: path of the captured standard error, if any.
        reason: short description (for function tasks: the exception text).
        remote_traceback: traceback text from the process that ran the function, if any.
        attempts: how many attempts were made (more than one with ``retries``).
    """

    def __init__(
        self,
        task: str,
        *,
        uid: str = "",
        exitcode: typing.Optional[int] = None,
        stderr: typing.Optional[str] = None,
        reason: str = "",
        remote_traceback: str = "",
        attempts: int = 1,
    ):
        self.exitcode = exitcode
        self.stderr = stderr
        self.reason = reason
        self.remote_traceback = remote_traceback
        self.attempts = attempts
        super().__init__(self._message(task), task=task, uid=uid)

    def _message(self, task: str) -> str:
        parts = [f"Task {task!r} failed"]
        if self.attempts > 1:
            parts.append(f" in all {self.attempts} attempts")
            if self.exitcode is not None:
                parts.append(f" (last exit status {self.exitcode})")
        elif self.exitcode is not None:
            parts.append(f" with exit status {self.exitcode}")
        if self.reason:
            parts.append(f": {self.reason}")
        if self.stderr:
            parts.append(f" (stderr: {self.stderr})")
        return "".join(parts)

    def after_attempts(self, attempts: int) -> "TaskFailedError":
        """This failure as the last of *attempts* attempts (the message says how many)."""
        self.attempts = attempts
        self.args = (self._message(self.task),)
        return self


class TaskTimeoutError(TaskFailedError):
    """An attempt of the task ran longer than its time limit and was stopped.

    Attributes:
        timeout: the limit, in seconds, that applies to each attempt.
    """

    def __init__(self, task: str, *, timeout: float, uid: str = "", stderr: typing.Optional[str] = None, attempts: int = 1):
        self.timeout = timeout
        super().__init__(
            task, uid=uid, stderr=stderr, attempts=attempts, reason=f"exceeded its time limit of {timeout:g} s (timeout=)"
        )


class UpstreamFailedError(TaskError):
    """A task this one depends on failed, so this one was not run.

    Attributes:
        upstream: label of the failed task that this task (directly or indirectly) needed.
    """

    def __init__(self, task: str, *, upstream: str, uid: str = "", cause: str = ""):
        self.upstream = upstream
        message = f"Task {task!r} was not run because task {upstream!r} it depends on failed"
        if cause:
            message += f": {cause}"
        super().__init__(message, task=task, uid=uid)


class TaskCancelledError(TaskError):
    """The run was interrupted (Ctrl-C, SIGTERM, shutdown) before the task finished."""

    def __init__(self, task: str, *, uid: str = "", reason: str = "the run was interrupted"):
        super().__init__(f"Task {task!r} was cancelled: {reason}", task=task, uid=uid)
