"""From a task to a backend job and back: one attempt at running a task.

The launcher prepares what a backend needs and nothing more (an empty task
directory, input files with the names the program will see, stdin as a file,
the encoded call with upstream results filled in), hands the job to the
backend, turns the outcome into the task's result, and records it in the
result cache. A failed attempt is recorded too and raised as
:class:`~scalems.exceptions.TaskFailedError`.
"""

from __future__ import annotations

__all__ = ("Launcher",)

import asyncio
import json
import os
import pathlib
import time

from scalems.exceptions import DispatchError, ProtocolError, TaskFailedError, TaskTimeoutError
from scalems.execution.backend import Backend
from scalems.execution.jobs import ExecutableJob, ExecutableOutcome, FunctionJob, FunctionOutcome, InputFile
from scalems.file import FileReference, OutputFile
from .cache import ResultCache
from .spec import ExecutableSpec, FunctionSpec
from .task import Ensemble, ExecutableResult, Task, decode_function_result, executable_result

#: The file a task's stdin text is written to, in its directory.
STDIN_NAME = ".scalems-stdin"

#: Where the stdout and stderr of earlier attempts are kept, in the task directory.
ATTEMPTS_NAME = ".scalems-attempts"


class Launcher:
    """Runs one attempt of a task on *backend*, recording the outcome in *cache*."""

    def __init__(self, backend: Backend, cache: ResultCache):
        self.backend = backend
        self.cache = cache
        self._started: dict = {}  # (uid, attempt) -> when it started, while it runs
        self._where: dict = {}  # uid -> where the backend ran its latest attempt

    async def run(self, task: Task, attempt: int = 1):
        """The task's result; raises TaskFailedError (already recorded) if the attempt failed.

        Every attempt goes into the run history with how it ended.
        """
        key = (task.uid, attempt)
        started = self._started[key] = time.time()
        outcome, exitcode, error = "cancelled", None, None
        try:
            if task.kind == "executable":
                result = await self._run_executable(task, attempt)
                exitcode = result.exitcode
            else:
                result = await self._run_function(task, attempt)
            outcome = "done"
            return result
        except TaskFailedError as failure:
            outcome, exitcode, error = "failed", failure.exitcode, failure.reason or str(failure)
            self.cache.record_failure(task, failure)
            raise
        except DispatchError as lost:
            # The backend lost the job (a pilot or session ended): the task failed, and may be retried.
            failure = TaskFailedError(task.label, uid=task.uid, reason=str(lost))
            outcome, error = "failed", failure.reason
            self.cache.record_failure(task, failure)
            raise failure from lost
        except asyncio.CancelledError:
            raise
        except Exception as failure:
            outcome, error = "failed", f"internal error in scalems: {failure!r}"
            raise
        finally:
            if outcome != "cancelled":  # a cancelled attempt is recorded by timed_out() or cancelled()
                del self._started[key]
                self.cache.record_attempt(task, attempt, started, outcome, self._where.pop(task.uid, None), exitcode, error)

    def timed_out(self, task: Task, timeout: float, attempt: int) -> TaskTimeoutError:
        """The (recorded) failure of an attempt stopped at its time limit."""
        stderr = None
        if task.kind == "executable":
            stderr = os.path.join(task.directory, task.spec.stderr)
        error = TaskTimeoutError(task.label, uid=task.uid, timeout=timeout, stderr=stderr)
        self.cache.record_failure(task, error)
        started = self._started.pop((task.uid, attempt), time.time())
        self.cache.record_attempt(task, attempt, started, "timeout", self._where.pop(task.uid, None), None, error.reason)
        return error

    def cancelled(self, task: Task, attempt: int) -> None:
        """Record an attempt cancelled by the run (Ctrl-C, a shutdown), not by its time limit."""
        started = self._started.pop((task.uid, attempt), None)
        if started is not None:
            self.cache.record_attempt(task, attempt, started, "cancelled", self._where.pop(task.uid, None))

    async def _run_executable(self, task: Task, attempt: int) -> ExecutableResult:
        # String paths (os.path) rather than pathlib here: this runs once per task, and the
        # pathlib operations alone cost more than spawning a short program's bookkeeping.
        spec: ExecutableSpec = task.spec
        prepare_directory(
            task.directory, attempt=attempt, resumable=spec.policy.resumable, streams=(spec.stdout, spec.stderr)
        )
        directory = os.fspath(task.directory)
        join = os.path.join
        stdin_path = None
        if spec.stdin is not None:
            stdin_path = pathlib.Path(directory, STDIN_NAME)
            stdin_path.write_text(spec.stdin)
        outputs = spec.outputs()
        job = ExecutableJob(
            uid=task.uid,
            label=task.label,
            directory=task.directory,
            argv=job_argv(spec.argv, taken={name for name, _ in spec.placed}),
            env=spec.env,
            stdin=stdin_path,
            stdout=spec.stdout,
            stderr=spec.stderr,
            outputs=list(outputs),
            resources=spec.resources,
            inputs=tuple(InputFile(source=_source(file), name=name) for name, file in spec.placed),
        )
        outcome = await self.backend.run(job)
        if not isinstance(outcome, ExecutableOutcome):
            raise ProtocolError(f"backend returned {type(outcome).__name__} for an executable job")
        self._where[task.uid] = outcome.where
        exitcode = outcome.exitcode
        stderr = join(directory, spec.stderr)
        if outcome.error is not None or exitcode != 0:
            raise TaskFailedError(task.label, uid=task.uid, exitcode=exitcode, reason=outcome.error or "", stderr=stderr)
        missing = [name for name in outputs if not os.path.exists(join(directory, name))]
        if missing:
            raise TaskFailedError(
                task.label,
                uid=task.uid,
                exitcode=0,
                reason=f"declared output file(s) not produced: {', '.join(missing)}",
                stderr=stderr,
            )
        await self.cache.record_executable(task, exitcode, directory, (spec.stdout, spec.stderr, *outputs))
        return executable_result(task, exitcode)

    async def _run_function(self, task: Task, attempt: int):
        spec: FunctionSpec = task.spec
        directory = None
        if spec.resources.ranks > 1 or self.backend.function_jobs_need_directory:
            prepare_directory(task.directory, attempt=attempt)
            directory = task.directory
        call = spec.call  # encoded when added, unless it waited for other tasks
        if attempt == 1:
            spec.call = None  # a retry needs it again; a first attempt that succeeds does not
        if call is None:
            call = spec.encode(resolve(spec.args), resolve(spec.kwargs))
        job = FunctionJob(
            uid=task.uid, label=task.label, call=call, directory=directory, resources=spec.resources, comm_arg=spec.comm_arg
        )
        outcome = await self.backend.run(job)
        if not isinstance(outcome, FunctionOutcome):
            raise ProtocolError(f"backend returned {type(outcome).__name__} for a function job")
        self._where[task.uid] = outcome.where
        if outcome.error is not None or outcome.result is None:
            raise TaskFailedError(task.label, uid=task.uid, reason=outcome.error or "no result was returned")
        text = outcome.result if isinstance(outcome.result, str) else json.dumps(outcome.result)
        value = decode_function_result(task, text)
        self.cache.record_function(task, text)
        return value


def _source(file) -> pathlib.Path:
    return pathlib.Path(file.path()) if isinstance(file, FileReference) else file


def job_argv(argv, taken=()) -> list:
    """A spec's argv for a job: output files by name, input files as :class:`InputFile` with names
    unique among themselves and the *taken* names (the placed inputs), as a staging backend needs."""
    result = []
    staged_names = set(taken)
    for item in argv:
        if type(item) is str:
            result.append(item)
        elif isinstance(item, OutputFile):
            result.append(item.name)
        else:
            source = _source(item)
            name = source.name
            number = 1
            while name in staged_names:
                name = f"{number}-{source.name}"
                number += 1
            staged_names.add(name)
            result.append(InputFile(source=source, name=name))
    return result


def prepare_directory(
    directory: pathlib.Path, *, attempt: int = 1, resumable: bool = False, streams=("stdout", "stderr")
) -> None:
    """The working directory of an attempt: empty, or as the last attempt left it if *resumable*.

    The stdout and stderr an earlier attempt left are moved to ``.scalems-attempts/<n>/``
    first (on a retry, or whenever a resumable task starts again), so every attempt's
    streams are kept.
    """
    if attempt > 1 or resumable:
        _keep_streams(directory, streams)
        if resumable:
            directory.mkdir(parents=True, exist_ok=True)
            return
        _clear(directory, keep=ATTEMPTS_NAME)
        return
    try:
        os.mkdir(directory)
        return
    except FileNotFoundError:
        directory.mkdir(parents=True)
        return
    except FileExistsError:
        pass
    if directory.is_dir() and not directory.is_symlink():
        import shutil  # only to clear what an earlier attempt left

        shutil.rmtree(directory)
    else:
        directory.unlink()
    os.mkdir(directory)


def _keep_streams(directory: pathlib.Path, streams) -> None:
    """Move an attempt's stdout/stderr files into the next ``.scalems-attempts/<n>``."""
    names = [n for n in streams if os.path.isfile(os.path.join(directory, n))]
    if not names:
        return
    archive = directory / ATTEMPTS_NAME
    archive.mkdir(exist_ok=True)
    target = archive / str(len(os.listdir(archive)) + 1)
    target.mkdir()
    for name in names:
        os.replace(directory / name, target / name)


def _clear(directory: pathlib.Path, *, keep: str) -> None:
    import shutil

    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        directory.mkdir(parents=True)
        return
    for entry in entries:
        if entry.name == keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def resolve(value):
    """Replace task handles and file references in call arguments by their results / paths."""
    if isinstance(value, Task):
        return value.result()
    if isinstance(value, Ensemble):
        return value.result()
    if isinstance(value, FileReference):
        return value.path()
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(resolve(v) for v in value)
    return value
