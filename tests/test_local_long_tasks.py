"""Long tasks under ``python -m scalems.local``: a killed runner leaves no process, a resumable task
continues from its own checkpoint, and a changed program runs its tasks again."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from cli import write_script

import scalems
import scalems.local

#: A program that checkpoints: N steps of work; every 5 steps it saves the step it reached.
SIMULATION = '''
import os, pathlib, sys, time
steps = int(sys.argv[1])
checkpoint = pathlib.Path("state.ckpt")
start = int(checkpoint.read_text()) if checkpoint.exists() else 0
print(f"start step {start}", flush=True)
pathlib.Path("sim.pid").write_text(str(os.getpid()))
for step in range(start + 1, steps + 1):
    time.sleep(0.1)
    if step % 5 == 0:
        pathlib.Path("state.tmp").write_text(str(step))
        os.replace("state.tmp", checkpoint)
pathlib.Path("final.txt").write_text(str(step))
print(f"final step {step}", flush=True)
'''

WORKFLOW = '''
import sys
import scalems

@scalems.app
def main():
    task = scalems.executable(
        [sys.executable, {program!r}, "60"], outputs=["final.txt"], resumable=True, label="md"
    )
    print("final", open(task.result().file["final.txt"]).read())
'''


def start_runner(script: pathlib.Path, cwd: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scalems.local", str(script)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_killed_runner_leaves_no_process_and_resumable_task_continues_from_its_checkpoint(tmp_path):
    program = write_script(tmp_path, "simulate.py", SIMULATION)
    script = write_script(tmp_path, "workflow.py", WORKFLOW.format(program=str(program)))
    work = tmp_path / "work"
    work.mkdir()
    task_dir = work / "scalems_tasks" / "md"

    runner = start_runner(script, work)
    checkpoint = task_dir / "state.ckpt"
    wait_for(lambda: checkpoint.exists() and int(checkpoint.read_text()) >= 10, 60, "a checkpoint at step 10")
    pid = int((task_dir / "sim.pid").read_text())
    runner.kill()  # SIGKILL: the runner can do nothing about it
    runner.communicate(timeout=30)
    wait_for(lambda: not group_alive(pid), 15, "the task's processes to end after the runner died")
    reached = int(checkpoint.read_text())
    assert 10 <= reached < 60

    again = start_runner(script, work)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "final 60" in out
    log = (task_dir / "stdout").read_text()
    first_step = int(log.split("start step ")[1].split()[0])
    assert first_step >= reached > 0, log  # continued from the checkpoint, not from the start
    assert "final step 60" in log
    # The killed attempt's output was kept.
    assert "start step 0" in (task_dir / ".scalems-attempts" / "1" / "stdout").read_text()

    # The same task uninterrupted ends at the same step; and a finished task is not run again.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    uninterrupted = start_runner(script, fresh)
    out, err = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0 and "final 60" in out, err
    rerun = start_runner(script, work)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0 and "1 tasks: 1 done (1 from earlier runs)" in err, err


def test_replaced_program_reruns_its_tasks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = tmp_path / "analyse.sh"
    program.write_text("#!/bin/sh\necho version 1\n")
    program.chmod(0o755)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "analyse").symlink_to(program)
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ['PATH']}")

    def run():
        with scalems.local.workflow(directory=tmp_path / "work", progress=False):
            by_path = scalems.executable([str(program)])
            by_name = scalems.executable(["analyse"])
            return [(t.from_cache, pathlib.Path(t.result(timeout=60).stdout).read_text()) for t in (by_path, by_name)]

    assert run() == [(False, "version 1\n")] * 2
    assert run() == [(True, "version 1\n")] * 2
    program.write_text("#!/bin/sh\necho version 2\n")  # an upgraded program, same name and path
    assert run() == [(False, "version 2\n")] * 2


def test_leftover_processes_of_an_earlier_run_end_before_its_tasks_start_again(tmp_path):
    """When the guardian died too (both killed at once), the next run finds the processes with the
    dead run's mark still alive and ends them first: a task never runs twice at once."""
    from scalems.local.guardian import MARK, end_leftovers

    running = tmp_path / "scalems_local" / "running"
    dead_run = running / "12345"  # the folder of a run that was killed with its guardian
    dead_run.mkdir(parents=True)
    marked = {**os.environ, MARK: str(dead_run)}
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True, env=marked)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)  # not the run's: left alone
    try:
        assert end_leftovers(running, grace=5) == 1
        assert orphan.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
        assert not list(running.iterdir())
        assert end_leftovers(running, grace=5) == 0  # nothing left to scan
    finally:
        other.kill()
        other.wait()


def test_time_limit_ends_every_process_of_the_task(tmp_path):
    """timeout=1 on a task whose program started children: the attempt fails within seconds with
    TaskTimeoutError and none of its processes is left (the whole process group is ended)."""
    from scalems.exceptions import TaskTimeoutError

    script = 'sleep 60 & echo $! > child.pid; echo $$ > parent.pid; wait'
    with scalems.local.workflow(directory=tmp_path / "work", cores=2, progress=False):
        started = time.monotonic()
        task = scalems.executable(["sh", "-c", script], timeout=1, label="tree")
        with pytest.raises(TaskTimeoutError, match="time limit of 1 s"):
            task.result(timeout=60)
        assert time.monotonic() - started < 30
    directory = tmp_path / "work" / "scalems_tasks" / "tree"
    for name in ("parent.pid", "child.pid"):
        pid = int((directory / name).read_text())
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, f"{name} to end")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
