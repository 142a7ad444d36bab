"""Long tasks on every backend (the contract suite): time limits, retries, results that are never stale.

Each test takes ``make_workflow`` and ``tool`` (conftest.py), so it runs on the
local, in-memory and both RADICAL-Pilot backends.
"""

import pathlib
import time

import pytest

import scalems
from scalems.exceptions import TaskFailedError, TaskTimeoutError, UpstreamFailedError


def lines(path: pathlib.Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_time_limit_stops_the_attempt_and_names_the_limit(make_workflow, tool, tmp_path):
    with make_workflow(tmp_path / "work") as workflow:
        started = time.monotonic()
        sleeper = scalems.executable([*tool, "sleep", "60"], timeout=1, label="sleeper")
        after = scalems.executable(["cat", sleeper.file["stdout"]], label="after")
        with pytest.raises(TaskTimeoutError, match="time limit of 1 s") as failure:
            sleeper.result(timeout=120)
        assert isinstance(failure.value, TaskFailedError) and failure.value.timeout == 1
        assert time.monotonic() - started < 45  # the 60 s sleep was stopped, not waited for
        with pytest.raises(UpstreamFailedError):
            after.result(timeout=120)
        quick = scalems.function_task(pow, args=(2, 5), timeout=60)
        assert quick.result(timeout=120) == 32
    assert workflow.counts["failed"] == 2


def test_retries_run_failed_attempts_again_and_keep_their_streams(make_workflow, tool, tmp_path):
    with make_workflow(tmp_path / "work"):
        enough = scalems.executable([*tool, "fail-until", "3", str(tmp_path / "a")], retries=2, label="enough")
        too_few = scalems.executable([*tool, "fail-until", "3", str(tmp_path / "b")], retries=1, label="too-few")
        downstream = scalems.executable(["cat", enough.file["stdout"]], label="downstream")
        assert enough.result(timeout=180).exitcode == 0
        assert downstream.result(timeout=180).exitcode == 0
        with pytest.raises(TaskFailedError, match="failed in all 2 attempts") as failure:
            too_few.result(timeout=180)
        assert failure.value.attempts == 2
    assert (lines(tmp_path / "a"), lines(tmp_path / "b")) == (3, 2)
    kept = pathlib.Path(enough.result().directory, ".scalems-attempts")
    assert sorted(p.name for p in kept.iterdir()) == ["1", "2"]
    assert (kept / "1" / "stderr").read_text() == "not yet\n"


def flaky(counter, succeed_at):
    with open(counter, "a") as fh:
        fh.write("call\n")
    calls = len(pathlib.Path(counter).read_text().splitlines())
    if calls < succeed_at:
        raise RuntimeError(f"transient failure {calls}")
    return calls


def test_function_retries(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        task = scalems.function_task(flaky, args=(str(tmp_path / "calls"), 2), retries=1)
        assert task.result(timeout=180) == 2


def test_changed_input_given_as_str_reruns_that_task_and_its_dependents(make_workflow, tool, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("data.txt").write_text("one\n")
    counter = tmp_path / "launches"

    def body():
        reader = scalems.executable([*tool, "append", "x", str(counter), "+", "cat"], inputs={"-i": "data.txt"})
        copy = scalems.executable(["cat", reader.file["stdout"]], label="copy")
        other = scalems.executable([*tool, "append", "y", str(counter), "+", "echo", "other"])
        return reader, copy, other

    with make_workflow(tmp_path / "work"):
        [t.result(timeout=120) for t in body()]
    pathlib.Path("data.txt").write_text("two\n")  # same size, new content
    with make_workflow(tmp_path / "work"):
        reader, copy, other = body()
        assert [t.result(timeout=120) is not None for t in (reader, copy, other)]
        assert (reader.from_cache, copy.from_cache, other.from_cache) == (False, False, True)
    assert sorted(counter.read_text().split()) == ["x", "x", "y"]  # only the reader ran again


def test_cache_false_always_runs(make_workflow, tool, tmp_path):
    counter = tmp_path / "launches"
    for _ in range(3):
        with make_workflow(tmp_path / "work"):
            fresh = scalems.executable([*tool, "append", "x", str(counter)], cache=False)
            cached = scalems.executable([*tool, "append", "y", str(counter)])
            fresh.result(timeout=120), cached.result(timeout=120)
            assert not fresh.from_cache
    assert counter.read_text().count("x") == 3 and counter.read_text().count("y") == 1


def test_bad_policies_are_reported_at_the_call(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        with pytest.raises(ValueError, match="timeout"):
            scalems.executable(["echo"], timeout=0)
        with pytest.raises(ValueError, match="retries"):
            scalems.function_task(pow, args=(1, 1), retries=-1)
        with pytest.raises(TypeError, match="resumable"):
            scalems.executable(["echo"], resumable="yes")
