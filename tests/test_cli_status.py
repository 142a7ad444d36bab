"""``python -m scalems status``: after a run, during one, after a kill; exit statuses and --json."""

import json
import os
import signal
import time

import pytest

from cli_runs import CHAIN, MIXED, LiveRun, counts, run_workflow, scalems_command, status_json

from scalems.store import LAYOUT
from scalems.store.history import HistoryReader

TASK_KEYS = {
    "label", "uid", "kind", "state", "cached", "exitcode", "error", "attempts",
    "duration", "started", "ended", "place", "stderr", "recorded",
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A finished run of cli_runs.MIXED: ``(tmp dir, work dir)``."""
    tmp = tmp_path_factory.mktemp("mixed")
    done = run_workflow(tmp, MIXED, "mixed.py")
    assert done.returncode == 1, done.stderr  # it has failures
    return tmp, tmp / "work"


def _table(stdout: str) -> dict:
    """Rows of the status table by label: the cells as split on runs of 2+ spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("LABEL"))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("(", "---")):
            break
        cells = [c for c in line.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


def test_status_lists_every_task_with_how_it_ended(mixed):
    tmp, work = mixed
    done = scalems_command("status", work, cwd=tmp)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Run 1 in {work} (local, 2 cores") and "ended after" in lines[0]
    assert lines[1] == "8 tasks: 5 done, 2 failed, 1 not run (a task they need failed)"
    rows = _table(done.stdout)
    assert set(rows) == {"prep", "summary", "final", "flaky", "after-flaky", "boom", "ens-0", "ens-1"}
    assert rows["flaky"][:4] == ["executable", "failed", "exit 3", "2"]  # two attempts
    assert rows["boom"][:4] == ["function", "failed", "ValueError: bad value in boom", "1"]
    assert rows["after-flaky"] == ["executable", "not run", "needs 'flaky', which failed", "0"]
    assert rows["prep"][:4] == ["executable", "done", "exit 0", "1"]
    assert rows["final"][:3] == ["function", "done", "1"]
    assert list(rows) == sorted(rows, key=lambda label: label.replace("-", " "))  # sorted by label
    # The columns line up: every row's KIND and STATE cells start where their headers do.
    header = next(line for line in lines if line.startswith("LABEL"))
    for line in lines[lines.index(header) + 1 : lines.index(header) + 1 + len(rows)]:
        for column in ("KIND", "STATE"):
            at = header.index(column)
            assert line[at - 2 : at] == "  " and line[at] != " ", (line, column)


def test_failed_adds_the_tail_of_each_failed_tasks_stderr(mixed):
    tmp, work = mixed
    done = scalems_command("status", "--failed", work, cwd=tmp)
    assert done.returncode == 1
    out = done.stdout
    section = out[out.index("--- flaky") :]
    assert f"last 20 line(s) of {work / 'scalems_tasks' / 'flaky' / 'stderr'}:" in section
    shown = [line for line in section.splitlines() if line.startswith("    | ")]
    assert shown[:20] == [f"    | complaint {i}" for i in range(11, 31)]
    assert "--- boom (function, 1 attempt)" in out and "ValueError: bad value in boom" in out
    assert "--- after-flaky" not in out  # not run: it has no stderr


def test_json_has_the_documented_structure(mixed):
    tmp, work = mixed
    done = scalems_command("status", "--json", "--failed", work, cwd=tmp)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["format"] == "scalems-status/1" and data["work_dir"] == str(work)
    assert set(data) == {"format", "work_dir", "run", "complete", "ok", "summary", "counts", "running", "tasks"}
    assert set(data["run"]) == {"id", "state", "started", "ended", "pid", "host", "backend", "budget"}
    assert data["run"]["state"] == "ended" and data["run"]["budget"] == {"cores": 2, "gpus": 0}
    assert data["complete"] is True and data["ok"] is False and data["running"] == []
    assert data["counts"]["done"] == 5 and data["counts"]["failed"] == 3 and data["counts"]["not run"] == 1
    tasks = {t["label"]: t for t in data["tasks"]}
    for task in tasks.values():
        assert set(task) - {"stderr_tail"} == TASK_KEYS
    flaky = tasks["flaky"]
    assert (flaky["state"], flaky["exitcode"], flaky["attempts"], flaky["cached"]) == ("failed", 3, 2, False)
    assert flaky["stderr"] == str(work / "scalems_tasks" / "flaky" / "stderr")
    assert flaky["stderr_tail"] == [f"complaint {i}" for i in range(11, 31)]
    assert flaky["duration"] > 0 and flaky["ended"] >= flaky["started"] and flaky["place"].startswith("cores ")
    assert tasks["boom"]["stderr_tail"] is None and "ValueError" in tasks["boom"]["error"]
    assert tasks["after-flaky"]["state"] == "not run" and tasks["after-flaky"]["attempts"] == 0
    assert "stderr_tail" not in tasks["after-flaky"]
    assert tasks["summary"]["place"].startswith("worker ") and tasks["summary"]["recorded"] is True
    with HistoryReader(work / LAYOUT / "record.sqlite") as reader:
        uids = {a.label: a.uid for a in reader.attempts()}
    assert all(tasks[label]["uid"] == uid for label, uid in uids.items())


def test_a_clean_run_exits_0_and_a_rerun_shows_cached_tasks(tmp_path):
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    code, first = status_json(tmp_path / "work")
    assert code == 0 and first["ok"] and all(t["state"] == "done" and not t["cached"] for t in first["tasks"])
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    done = scalems_command("status", cwd=tmp_path / "work")  # WORK_DIR defaults to the current directory
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "8 tasks: 8 done (8 from earlier runs)"
    assert all(row[-1] == "yes" for row in _table(done.stdout).values())
    earlier = scalems_command("status", "--run", "1", "--json", cwd=tmp_path / "work")
    assert earlier.returncode == 0 and json.loads(earlier.stdout)["run"]["id"] == 1


@pytest.mark.parametrize("where", ["empty", "missing", "file"])
def test_no_record_is_a_usage_error(tmp_path, where):
    target = tmp_path / "target"
    if where == "empty":
        target.mkdir()
    elif where == "file":
        target.write_text("not a directory")
    done = scalems_command("status", target, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("python -m scalems status: error: ") and "Traceback" not in done.stderr
    assert {"empty": "has no scalems record", "missing": "does not exist", "file": "is not a directory"}[where] in done.stderr
    assert not (target / LAYOUT).exists()  # status never creates a store


def test_commands_and_help(tmp_path):
    bare = scalems_command(cwd=tmp_path)
    assert bare.returncode == 2 and "give a command: status, forget or report" in bare.stderr
    helped = scalems_command("--help", cwd=tmp_path)
    assert helped.returncode == 0 and all(word in helped.stdout for word in ("status", "forget", "report"))
    run_again = scalems_command("status", "--run", "7", cwd=tmp_path)
    assert run_again.returncode == 2


def test_status_during_a_live_run_and_after_it(tmp_path):
    live = LiveRun(tmp_path)
    try:
        found = live.wait_until_running()
        # status returned while the long task still waits for its go file: it did not wait for the run.
        assert live.process.poll() is None and not live.go.exists()
        assert found["complete"] is False and found["run"]["ended"] is None and found["run"]["pid"] == live.process.pid
        tasks = {t["label"]: t for t in found["tasks"]}
        assert tasks["long"]["state"] == "running"
        assert found["ok"] is True  # nothing failed so far
        text = scalems_command("status", live.work, cwd=tmp_path)
        assert text.returncode == 0 and "Running at the last refresh: long" in text.stdout
        assert "long" in _table(text.stdout) and "running for" in text.stdout.splitlines()[0]
        page = scalems_command("report", live.work, "-o", tmp_path / "live.html", cwd=tmp_path)
        assert page.returncode == 0, page.stderr
        assert "The run has not ended (live)" in (tmp_path / "live.html").read_text()
        refused = scalems_command("forget", "--work-dir", live.work, "quick", cwd=tmp_path)
        assert refused.returncode == 1 and f"pid {live.process.pid}" in refused.stderr
        assert "wait for the run to end" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        output = live.finish()
    assert live.process.returncode == 0, output
    code, after = status_json(live.work)
    assert code == 0 and after["run"]["state"] == "ended" and after["complete"]
    assert {t["label"]: t["state"] for t in after["tasks"]} == {"quick": "done", "long": "done"}


def test_status_of_a_killed_run(tmp_path):
    live = LiveRun(tmp_path)
    try:
        live.wait_until_running()
        task = live.task_pid()
        os.kill(live.process.pid, signal.SIGKILL)
        live.process.wait()
        code, found = status_json(live.work)
        assert code == 1 and found["run"]["state"] == "killed" and not found["ok"]
        assert {t["label"]: t["state"] for t in found["tasks"]}["long"] == "unfinished"
        text = scalems_command("status", live.work, cwd=tmp_path)
        assert "it did not end (its process was killed or crashed)" in text.stdout
        _wait_gone(task)  # the run's guardian ends the task it left
    finally:
        live.finish()


def _wait_gone(pid: int, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), f"task process {pid} outlived its killed run"


def test_counts_helper_sees_each_execution(tmp_path):
    """The side-effect counters the forget tests rely on count executions, not results."""
    run_workflow(tmp_path, CHAIN, "chain.py")
    assert counts(tmp_path) == dict.fromkeys(["ens-0", "ens-1", "ens-2", "final", "lonely", "other", "prep", "summary"], 1)
