"""``python -m scalems.local`` as a user runs it: examples, errors, limits, crashes and re-runs."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from cli import EXAMPLES, run_module, write_script

import scalems


def test_echo_example_writes_stdout_and_says_where(tmp_path):
    done = run_module("scalems.local", EXAMPLES / "basic" / "echo.py", "hello", "world", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stdout_files = list((tmp_path / "scalems_tasks").glob("*/stdout"))
    assert len(stdout_files) == 1
    assert stdout_files[0].read_text() == "hello world\n"
    assert str(stdout_files[0]) in done.stdout + done.stderr


def test_help_and_version(tmp_path):
    helped = run_module("scalems.local", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    for option in ("--log-level", "--version", "--pycharm", "--cores", "--work-dir", "--no-cache"):
        assert option in helped.stdout
    version = run_module("scalems.local", "--version", cwd=tmp_path)
    assert version.returncode == 0 and scalems.__version__ in version.stdout


@pytest.mark.parametrize("columns", ["50", "200", "", "junk"])
def test_help_is_wrapped_like_argparse_does(monkeypatch, columns):
    """scalems reads the terminal width itself (to keep shutil off the start-up path); the help
    must come out exactly as argparse's own formatter would wrap it."""
    import argparse

    import scalems.local

    monkeypatch.setenv("COLUMNS", columns)
    parser = scalems.local.parser
    ours = parser.format_help()
    monkeypatch.setattr(parser, "formatter_class", argparse.HelpFormatter)
    assert ours == parser.format_help()
    if columns == "50":
        assert "Ignore results recorded by earlier runs and run every task again." not in ours  # wrapped


def test_unrecognized_arguments_reach_the_script(tmp_path):
    script = write_script(
        tmp_path,
        "args.py",
        """
        import sys, scalems
        @scalems.app
        def main():
            print("ARGV", sys.argv[1:])
        """,
    )
    done = run_module("scalems.local", "--cores", "1", script, "--cores", "7", "-x", "data", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ARGV ['--cores', '7', '-x', 'data']" in done.stdout


def test_script_garbage_is_still_collected(tmp_path):
    """The command line hides its own start-up objects from the garbage collector, not the script's."""
    script = write_script(
        tmp_path,
        "cycles.py",
        """
        import gc, weakref, scalems

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        at_load = cycle()

        @scalems.app
        def main():
            in_app = cycle()
            gc.collect()
            print("COLLECTED", at_load() is None, in_app() is None)
        """,
    )
    done = run_module("scalems.local", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "COLLECTED True True" in done.stdout


@pytest.mark.parametrize(
    "source, expected",
    [
        (None, "no such file"),
        ("def broken(:\n    pass\n", "syntax error at line 1"),
        ("import scalems\n\ndef main():\n    pass\n", "no function decorated with @scalems.app"),
        (
            "import scalems\n\n@scalems.app\ndef one():\n    pass\n\n@scalems.app\ndef two():\n    pass\n",
            "exactly one is allowed",
        ),
        (
            "import scalems\n\nscalems.executable(['echo', 'hi'])\n",
            "adds scalems tasks while it is being loaded (line 3). Put the workflow in a function decorated",
        ),
    ],
    ids=["missing", "syntax", "no-app", "two-apps", "top-level-task"],
)
def test_bad_scripts_get_one_paragraph_errors(tmp_path, source, expected):
    script = tmp_path / "workflow.py"
    if source is not None:
        script.write_text(source)
    done = run_module("scalems.local", script, cwd=tmp_path)
    assert done.returncode != 0
    assert expected in done.stderr
    assert str(script) in done.stderr
    assert "Traceback" not in done.stderr
    debug = run_module("scalems.local", "--log-level", "DEBUG", script, cwd=tmp_path)
    assert "Traceback" in debug.stderr


def test_ensemble_never_exceeds_cores(tmp_path):
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    script = write_script(
        tmp_path,
        "wide.py",
        f"""
        import scalems
        STAMP = 'import sys, time, os; d = sys.argv[1]; i = sys.argv[2]\\n' \\
                'open(os.path.join(d, i + ".start"), "w").write(str(time.time_ns()))\\n' \\
                'time.sleep(0.05)\\n' \\
                'open(os.path.join(d, i + ".end"), "w").write(str(time.time_ns()))'
        @scalems.app
        def main():
            scalems.executable([["python3", "-c", STAMP, {str(stamps)!r}, str(i)] for i in range(20)], label="m")
        """,
    )
    done = run_module("scalems.local", "--cores", "2", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = []
    for i in range(20):
        events.append((int((stamps / f"{i}.start").read_text()), 1))
        events.append((int((stamps / f"{i}.end").read_text()), -1))
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert 1 <= peak <= 2


def test_resource_request_that_cannot_fit_is_an_error(tmp_path):
    script = write_script(
        tmp_path,
        "big.py",
        """
        import scalems
        @scalems.app
        def main():
            scalems.executable(["true"], resources={"ranks": 4}, label="too-big")
        """,
    )
    done = run_module("scalems.local", "--cores", "2", script, cwd=tmp_path)
    assert done.returncode != 0
    assert "too-big" in done.stderr and "needs 4 cores" in done.stderr


def test_pipeline_example_and_rerun(tmp_path):
    first = run_module("scalems.local", EXAMPLES / "pipeline" / "pipeline.py", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "summary: {'count': 4, 'sum': 10, 'mean': 2.5}" in first.stdout
    report = next((tmp_path / "scalems_tasks").glob("report*/report.txt"))
    assert report.read_text() == "count=4 sum=10 mean=2.5\n"
    second = run_module("scalems.local", EXAMPLES / "pipeline" / "pipeline.py", "4", cwd=tmp_path)
    assert second.returncode == 0
    assert second.stdout == first.stdout
    assert "3 tasks: 3 done (3 from earlier runs)" in second.stderr


def test_ensemble_example(tmp_path):
    done = run_module("scalems.local", "--cores", "2", EXAMPLES / "ensemble" / "ensemble.py", "6", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    energies = [(seed * 7919) % 101 - 50 for seed in range(6)]
    best = min(range(6), key=energies.__getitem__)
    assert f"6 members; lowest energy {float(energies[best])} from member {best}" in done.stdout


def test_failed_tasks_reported_and_exit_nonzero(tmp_path):
    script = write_script(
        tmp_path,
        "fails.py",
        """
        import scalems
        def double(x):
            return 2 * x
        @scalems.app
        def main():
            bad = scalems.executable(["sh", "-c", "echo broken >&2; exit 4", scalems.output_file("out")], label="bad")
            scalems.executable(["cat", bad.file["out"]], label="needs-bad")
            scalems.executable(["echo", "independent"], label="good")
            scalems.submit(double, 21)
        """,
    )
    done = run_module("scalems.local", script, cwd=tmp_path)
    assert done.returncode == 1
    assert "FAILED Task 'bad' failed with exit status 4" in done.stderr
    assert str(tmp_path / "scalems_tasks" / "bad" / "stderr") in done.stderr
    assert "1 task(s) were not run because a task they depend on failed" in done.stderr
    assert (tmp_path / "scalems_tasks" / "good" / "stdout").read_text() == "independent\n"


def test_exception_in_function_task_shows_its_traceback(tmp_path):
    script = write_script(
        tmp_path,
        "raises.py",
        """
        import scalems
        def analyse(x):
            raise RuntimeError(f"cannot analyse {x}")
        @scalems.app
        def main():
            scalems.submit(analyse, 5)
        """,
    )
    done = run_module("scalems.local", script, cwd=tmp_path)
    assert done.returncode == 1
    assert "RuntimeError: cannot analyse 5" in done.stderr
    assert "in analyse" in done.stderr  # the user's frame from the worker's traceback


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


ENSEMBLE_WITH_LOG = """
import sys, scalems
LOG = sys.argv[1]
GATE = sys.argv[2]
@scalems.app
def main():
    scalems.executable(
        [["sh", "-c", f'echo "$0" >> {LOG}; if [ "$0" -ge 4 ]; then while [ ! -e {GATE} ]; do sleep 0.02; done; fi', str(i)]
         for i in range(10)],
        label="member",
    )
"""


def _complete_labels(work: pathlib.Path) -> set:
    """Labels the (live) runner has committed as complete, read without taking the store's lock."""
    import sqlite3

    database = work / "scalems_0_0" / "record.sqlite"
    if not database.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return {row[0] for row in connection.execute("SELECT label FROM task WHERE state = 'complete'")}
    except sqlite3.OperationalError:
        return set()


def test_kill_9_then_rerun_resumes_without_redoing_finished_work(tmp_path):
    log, gate = tmp_path / "launches.log", tmp_path / "gate"
    script = write_script(tmp_path, "resume.py", ENSEMBLE_WITH_LOG)
    work = tmp_path / "work"
    command = [sys.executable, "-m", "scalems.local", "--cores", "2", "--work-dir", str(work), str(script), str(log), str(gate)]
    runner = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Members 0-3 finish at once; members 4 and 5 block on the gate, holding both cores.
        _wait_for(lambda: log.exists() and {"4", "5"} <= set(log.read_text().split()))
        _wait_for(lambda: len(_complete_labels(work)) >= 4)  # the record is committed in batches
        os.killpg(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(timeout=30)
    import scalems.store

    with scalems.store.FileStore(work) as store:
        finished = {record.label for record in store.tasks() if record.state == "complete"}
    assert {"member-0", "member-1", "member-2", "member-3"} <= finished
    gate.touch()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    launches = log.read_text().split()
    for label in finished:
        assert launches.count(label.split("-")[1]) == 1, f"{label} ran again"
    assert set(launches) == {str(i) for i in range(10)}
    assert "10 tasks: 10 done" in again.stderr


def test_second_run_on_same_work_dir_is_refused(tmp_path):
    log, gate = tmp_path / "launches.log", tmp_path / "gate"
    script = write_script(tmp_path, "hold.py", ENSEMBLE_WITH_LOG)
    first = subprocess.Popen(
        [sys.executable, "-m", "scalems.local", "--cores", "1", str(script), str(log), str(gate)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: log.exists() and "4" in log.read_text().split())
        second = run_module("scalems.local", script, str(log), str(gate), cwd=tmp_path, timeout=60)
        assert second.returncode != 0
        assert str(first.pid) in second.stderr
        assert "in use" in second.stderr
    finally:
        gate.touch()
        assert first.wait(timeout=120) == 0


def test_interrupt_stops_tasks_and_keeps_finished_results(tmp_path, no_leaked_processes):
    log, gate = tmp_path / "launches.log", tmp_path / "gate"
    script = write_script(tmp_path, "interrupt.py", ENSEMBLE_WITH_LOG)
    runner = subprocess.Popen(
        [sys.executable, "-m", "scalems.local", "--cores", "2", str(script), str(log), str(gate)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: log.exists() and {"4", "5"} <= set(log.read_text().split()))
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert "interrupted" in err
    assert "cancelled" in err
    gate.touch()
    again = run_module("scalems.local", "--cores", "2", script, str(log), str(gate), cwd=tmp_path)
    assert again.returncode == 0
    assert "(4 from earlier runs)" in again.stderr


@pytest.mark.parametrize(
    "example, args, tasks",
    [("basic/echo.py", ["hello", "world"], 1), ("pipeline/pipeline.py", ["7"], 3), ("ensemble/ensemble.py", ["5"], 6)],
)
def test_rerunning_examples_runs_nothing_and_gives_identical_results(tmp_path, example, args, tasks):
    first = run_module("scalems.local", "--cores", "2", EXAMPLES / example, *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "scalems_tasks").rglob("*") if p.is_file()}
    second = run_module("scalems.local", "--cores", "2", EXAMPLES / example, *args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert f"{tasks} tasks: {tasks} done ({tasks} from earlier runs)" in second.stderr
    # Nothing was rewritten: no task ran again.
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "scalems_tasks").rglob("*") if p.is_file()}


BAD_ARGUMENT = """
import scalems

def prepare():
    return scalems.executable("echo hello")   # a str, not a list: the user's mistake is here

@scalems.app
def main():
    prepare()
"""


def test_errors_show_the_users_line_not_scalems_frames(tmp_path):
    script = write_script(tmp_path, "bad.py", BAD_ARGUMENT)
    done = run_module("scalems.local", script, cwd=tmp_path)
    assert done.returncode == 1
    package = os.path.dirname(scalems.__file__)
    assert 'line 5, in prepare' in done.stderr and 'scalems.executable("echo hello")' in done.stderr
    assert "argv must be a list of arguments" in done.stderr
    assert package not in done.stderr and "runpy" not in done.stderr, done.stderr
    debug = run_module("scalems.local", "--log-level", "DEBUG", script, cwd=tmp_path)
    assert os.path.join(package, "workflow", "spec.py") in debug.stderr  # the whole story when asked


@pytest.mark.parametrize("relative", ["a-file", "a-file/below"])
def test_work_dir_that_cannot_be_one_is_a_usage_error(tmp_path, relative):
    (tmp_path / "a-file").write_text("not a directory")
    script = write_script(tmp_path, "ok.py", "import scalems\n@scalems.app\ndef main():\n    pass\n")
    done = run_module("scalems.local", "--work-dir", tmp_path / relative, script, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "a-file" in done.stderr.splitlines()[-1] and "error: --work-dir" in done.stderr
