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

import json
import os
import pathlib

from scalems.exceptions import ProtocolError, TaskFailedError
from scalems.execution.backend import Backend
from scalems.execution.jobs import ExecutableJob, ExecutableOutcome, FunctionJob, FunctionOutcome, InputFile
from scalems.file import FileReference, OutputFile
from .cache import ResultCache
from .spec import ExecutableSpec, FunctionSpec
from .task import Ensemble, ExecutableResult, Task, decode_function_result, executable_result

#: The file a task's stdin text is written to, in its directory.
STDIN_NAME = ".scalems-stdin"


class Launcher:
    """Runs one attempt of a task on *backend*, recording the outcome in *cache*."""

    def __init__(self, backend: Backend, cache: ResultCache):
        self.backend = backend
        self.cache = cache

    async def run(self, task: Task):
        """The task's result; raises TaskFailedError (already recorded) if the attempt failed."""
        try:
            if task.kind == "executable":
                return await self._run_executable(task)
            return await self._run_function(task)
        except TaskFailedError as error:
            self.cache.record_failure(task, error)
            raise

    async def _run_executable(self, task: Task) -> ExecutableResult:
        # String paths (os.path) rather than pathlib here: this runs once per task, and the
        # pathlib operations alone cost more than spawning a short program's bookkeeping.
        spec: ExecutableSpec = task.spec
        prepare_directory(task.directory)
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
            argv=job_argv(spec.argv),
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

    async def _run_function(self, task: Task):
        spec: FunctionSpec = task.spec
        directory = None
        if spec.resources.ranks > 1 or self.backend.function_jobs_need_directory:
            prepare_directory(task.directory)
            directory = task.directory
        call, spec.call = spec.call, None  # encoded when added, unless it waited for other tasks
        if call is None:
            call = spec.encode(resolve(spec.args), resolve(spec.kwargs))
        job = FunctionJob(
            uid=task.uid, label=task.label, call=call, directory=directory, resources=spec.resources, comm_arg=spec.comm_arg
        )
        outcome = await self.backend.run(job)
        if not isinstance(outcome, FunctionOutcome):
            raise ProtocolError(f"backend returned {type(outcome).__name__} for a function job")
        if outcome.error is not None or outcome.result is None:
            raise TaskFailedError(task.label, uid=task.uid, reason=outcome.error or "no result was returned")
        text = outcome.result if isinstance(outcome.result, str) else json.dumps(outcome.result)
        value = decode_function_result(task, text)
        self.cache.record_function(task, text)
        return value


def _source(file) -> pathlib.Path:
    return pathlib.Path(file.path()) if isinstance(file, FileReference) else file


def job_argv(argv) -> list:
    """A spec's argv for a job: output files by name, input files as :class:`InputFile` with unique names."""
    result = []
    staged_names = set()
    for item in argv:
        if type(item) is str:
            result.append(item)
        elif isinstance(item, OutputFile):
            result.append(item.name)
        else:
            source = _source(item)
            name = source.name
            if name in staged_names:
                name = f"{len(staged_names)}-{name}"
            staged_names.add(name)
            result.append(InputFile(source=source, name=name))
    return result


def prepare_directory(directory: pathlib.Path) -> None:
    """Give the attempt an empty working directory (removing what an earlier attempt left)."""
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
