"""The RADICAL-Pilot backend on a real local pilot, driven directly with jobs.

All tests share one session and pilot (``rp_backend``, tests/rp_shared.py);
tests that end a pilot start their own (test_backend_shutdown.py).
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time

import pytest
from rp_jobs import executable_job

rp = pytest.importorskip("radical.pilot")

import scalems.call  # noqa: E402
from scalems.execution import ExecutableJob, FunctionJob, FunctionOutcome, InputFile  # noqa: E402
from scalems.execution import Resources  # noqa: E402

pytestmark = pytest.mark.radical

_count = iter(range(10**6))


def job(tmp_path: pathlib.Path, argv, **fields) -> ExecutableJob:
    directory = tmp_path / f"task{next(_count)}"
    directory.mkdir()
    return executable_job(directory, argv, **fields)


def assert_ran(outcome, exitcode: int, note: str = ""):
    """The program ran and exited with *exitcode*; the outcome names the RP task it ran as."""
    assert (outcome.exitcode, outcome.error) == (exitcode, None), (outcome, note)
    assert outcome.where and outcome.where.startswith("scalems.task."), outcome


def run_all(backend, jobs, timeout=180):
    """Run jobs concurrently, as the workflow layer does."""
    import asyncio

    async def gather():
        return await asyncio.gather(*(backend.executor.run(j) for j in jobs))

    return backend.call(gather(), timeout)


def test_echo_writes_stdout_into_the_task_directory(rp_backend, tmp_path):
    echo = job(tmp_path, ["echo", "hello", "world"])
    outcome = rp_backend.run(echo)
    assert_ran(outcome, 0)
    assert (echo.directory / "stdout").read_text() == "hello world\n"
    assert (echo.directory / "stderr").read_text() == ""


def test_input_staging_and_declared_output(rp_backend, tmp_path):
    source = tmp_path / "input data.txt"  # a space: RP's copy would split it without help
    source.write_text("line 1\nline 2\n")
    copy = job(
        tmp_path,
        [
            "sh",
            "-c",
            'mkdir -p out; wc -l < "$0" > out/count.txt; cp "$0" out/copy.txt',
            InputFile(source=source, name="in.txt"),
        ],
        outputs=["out/count.txt", "out/copy.txt"],
    )
    assert_ran(rp_backend.run(copy), 0)
    assert (copy.directory / "out" / "count.txt").read_text().strip() == "2"
    assert (copy.directory / "out" / "copy.txt").read_text() == source.read_text()


def test_missing_program_fails_alone(rp_backend, tmp_path, caplog):
    missing = job(tmp_path, ["no-such-program-xyz", "arg"])
    fine = job(tmp_path, ["true"])
    silent = job(tmp_path, ["true"], outputs=["never-written.txt"])
    outcomes = run_all(rp_backend, [missing, fine, silent])
    assert outcomes[0].exitcode == 127
    assert "program not found" in outcomes[0].error and "no-such-program-xyz" in outcomes[0].error
    assert "no-such-program-xyz" in (missing.directory / "stderr").read_text()
    assert_ran(outcomes[1], 0)
    # A declared output that was not written does not break the run; it is reported.
    assert_ran(outcomes[2], 0)
    assert not (silent.directory / "never-written.txt").exists()
    assert "never-written.txt" in caplog.text


def test_nonzero_exit_keeps_stderr_and_partial_outputs(rp_backend, tmp_path):
    failing = job(
        tmp_path, ["sh", "-c", "echo partial > part.txt; echo oops >&2; exit 3"], outputs=["part.txt"]
    )
    outcome = rp_backend.run(failing)
    assert_ran(outcome, 3)
    assert (failing.directory / "stderr").read_text() == "oops\n"
    assert (failing.directory / "part.txt").read_text() == "partial\n"


def test_environment_stdin_and_literal_arguments(rp_backend, tmp_path):
    stdin = tmp_path / "stdin.txt"
    stdin.write_text("from stdin\n")
    task = job(
        tmp_path,
        ["sh", "-c", 'echo "$SCALEMS_TEST_VALUE"; cat; printf "%s\\n" "$@"', "sh", "$HOME", "`id`", "a b"],
        env={"SCALEMS_TEST_VALUE": "a $b \"c\" 'd'"},
        stdin=stdin,
    )
    assert_ran(rp_backend.run(task), 0)
    lines = (task.directory / "stdout").read_text().splitlines()
    assert lines == ["a $b \"c\" 'd'", "from stdin", "$HOME", "`id`", "a b"]
    # The task's venv is active: its python is the one running the tests.
    which = job(tmp_path, ["python3", "-c", "import sys; print(sys.prefix)"])
    assert rp_backend.run(which).exitcode == 0
    assert (which.directory / "stdout").read_text().strip() == sys.prefix


def test_two_rank_mpi_executable(rp_backend, tmp_path):
    pytest.importorskip("mpi4py")
    # Each rank reports in its own file: the launcher interleaves the ranks' stdout ("22\n\n").
    code = (
        "from mpi4py import MPI; c = MPI.COMM_WORLD; "
        "open(f'rank{c.rank}.txt', 'w').write(f'{c.rank} of {c.size}')"
    )
    task = job(
        tmp_path, ["python3", "-c", code], resources=Resources(ranks=2), outputs=["rank0.txt", "rank1.txt"]
    )
    outcome = rp_backend.run(task)
    assert_ran(outcome, 0, (task.directory / "stderr").read_text())
    reports = sorted(p.read_text() for p in task.directory.glob("rank*.txt"))
    assert reports == ["0 of 2", "1 of 2"]


def function_job(tmp_path, func, *, args=(), ranks=1, comm_arg=None) -> FunctionJob:
    directory = tmp_path / f"call{next(_count)}"
    directory.mkdir()
    resources = Resources(ranks=ranks)
    call = scalems.call.serialize_call(func, args=args, requirements=resources.as_dict(), comm_arg=comm_arg)
    return FunctionJob(
        uid=directory.name, label=directory.name, call=call, directory=directory, resources=resources
    )


def test_function_calls_return_values_and_exceptions(rp_backend, tmp_path):
    calls = [function_job(tmp_path, math.hypot, args=(3, 4)), function_job(tmp_path, math.sqrt, args=(-1,))]
    outcomes = run_all(rp_backend, calls)
    assert all(isinstance(o, FunctionOutcome) and o.error is None for o in outcomes), outcomes
    assert scalems.call.deserialize_result(outcomes[0].result).return_value == 5.0
    raised = scalems.call.deserialize_result(outcomes[1].result)
    assert isinstance(raised.exception_object, ValueError)
    json.loads(outcomes[0].result)


def test_two_rank_function_call(rp_backend, tmp_path):
    pytest.importorskip("mpi4py")
    call = function_job(
        tmp_path, lambda tag, comm: (comm.Get_rank(), comm.Get_size(), tag), args=("x",), ranks=2
    )
    outcome = rp_backend.run(call)
    assert outcome.error is None, outcome.error
    assert scalems.call.deserialize_result(outcome.result).return_value == [(0, 2, "x"), (1, 2, "x")]


def test_cancelling_run_cancels_the_rp_task(rp_backend, tmp_path):
    import asyncio

    sleeper = job(tmp_path, ["sleep", "300"])

    async def cancel_soon():
        task = asyncio.ensure_future(rp_backend.executor.run(sleeper))
        await asyncio.sleep(3)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"

    started = time.monotonic()
    assert rp_backend.call(cancel_soon(), timeout=60) == "cancelled"
    assert time.monotonic() - started < 30
    # The pilot is still usable afterwards.
    assert rp_backend.run(job(tmp_path, ["true"])).exitcode == 0
