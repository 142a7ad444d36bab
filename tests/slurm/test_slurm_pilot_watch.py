"""A pilot job on Slurm outlives neither its client nor stays silent while it waits in the queue.

* ``kill -9`` of the client: the scalems watchdog in the pilot job (``scalems.radical.pilot_watchdog``)
  sees the client's heartbeat stop and cancels the job; Slurm's own records say so. The next
  run of the script in the same work directory keeps the finished task and runs the rest.
* A pilot job waiting for a busy node: the run says, at INFO, that the pilot waits in the queue
  as Slurm job N, and completes once the node is free.

Every test leaves no Slurm job, no process and nothing outside its temporary folders (the
``slurm_run`` fixture asserts it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("radical.pilot")

from cli import run_module, write_script  # noqa: E402
from slurm_helpers import RP_OPTIONS, pilot_sandboxes, processes_with, wait_for  # noqa: E402

from scalems.radical.pilot_watchdog import CANCEL_BOUND, WATCHDOG_LOG  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.radical, pytest.mark.slow]

#: Slurm's KillWait on the cluster of tools/slurm.sh: how long a cancelled job may take to end.
KILL_WAIT = 10
#: The promised bound on how long a pilot job outlives a killed client (see pilot_watchdog).
BOUND = CANCEL_BOUND + KILL_WAIT
#: Slack for a loaded machine (a guard against a job that is never ended, not a performance test).
MARGIN = 60

def describe(pids) -> list:
    """PID and command line of each of *pids* (for messages)."""
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found.append((pid, fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]))
        except OSError:
            pass
    return found


TWO_TASKS = """
import sys
import scalems

@scalems.app
def main():
    first = scalems.executable(
        ["sh", "-c", "echo ran >> {count}; echo one > one.txt"], outputs=["one.txt"], label="first"
    )
    scalems.executable(
        ["sh", "-c", "touch {started}; sleep " + sys.argv[1] + "; cat one.txt"],
        inputs=[first.file["one.txt"]],
        label="second",
    )
"""


@pytest.mark.timeout(900)
def test_killed_client_ends_its_pilot_job_and_the_next_run_resumes(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    count = tmp_path / "first-ran.txt"
    started = tmp_path / "second-started"
    script = write_script(work, "two.py", TWO_TASKS.format(count=count, started=started))
    client = subprocess.Popen(
        [sys.executable, "-m", "scalems.radical", *RP_OPTIONS, str(script), "600"],
        cwd=work,
        env={**os.environ, **slurm.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: started.exists() or client.poll() is not None, 240), "the second task never started"
        assert client.poll() is None, f"the run ended (status {client.returncode}) before its second task started"
        (job,) = slurm.active_jobs_under(work)
        client.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert count.read_text() == "ran\n"

    # Slurm's side: the pilot job ends, cancelled by the watchdog, within the bound.
    ended = wait_for(lambda: not slurm.active_jobs_under(work), BOUND + MARGIN, interval=1)
    waited = time.monotonic() - killed
    assert ended, f"the pilot job outlived its killed client by {waited:.0f} s: {slurm.jobs_under(work)}"
    print(f"the pilot job ended {waited:.0f} s after the client was killed (bound {BOUND} s)")
    (sandbox,) = pilot_sandboxes(work)
    records = [r for r in slurm.completed_records() if r.get("WorkDir") == str(sandbox)]
    assert [r["JobId"] for r in records] == [job["JobId"]], records
    assert records[0]["JobState"] == "CANCELLED", records
    log = (sandbox / WATCHDOG_LOG).read_text()
    assert f"cancelling Slurm job {job['JobId']}" in log, log
    left = wait_for(lambda: not processes_with(str(work)), 30) or describe(processes_with(str(work)))
    assert left is True, f"processes of the killed run outlived it: {left}"

    # The next run in the same work directory keeps the finished task and runs the rest.
    again = run_module("scalems.radical", *RP_OPTIONS, script, "1", cwd=work, timeout=600, env=slurm.env)
    assert again.returncode == 0, again.stderr
    assert count.read_text() == "ran\n", "the finished task ran again"
    assert (work / "scalems_tasks" / "second" / "stdout").read_text() == "one\n"
    assert len(pilot_sandboxes(work)) == 2


@pytest.mark.timeout(600)
def test_a_pilot_waiting_in_the_queue_says_so_and_runs_when_the_node_is_free(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    script = write_script(
        work,
        "echo.py",
        """
        import scalems
        @scalems.app
        def main():
            print(open(scalems.executable(["echo", "hello"], label="hello").result().stdout).read(), end="")
        """,
    )
    # A job of the test's own holds both cores of the node, so the pilot job has to wait.
    blocker = slurm.sbatch("--wrap", "sleep 600", "-n", "2", "-D", str(tmp_path), "-o", "/dev/null")
    client = None
    try:
        assert wait_for(lambda: [j for j in slurm.jobs() if j["JobId"] == blocker and j["JobState"] == "RUNNING"], 60)
        client = subprocess.Popen(
            [sys.executable, "-m", "scalems.radical", *RP_OPTIONS, "--log-level", "INFO", str(script)],
            cwd=work,
            env={**os.environ, **slurm.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        err = StreamLines(client.stderr)
        out = StreamLines(client.stdout)
        said = wait_for(lambda: err.find("waiting in the queue") or client.poll() is not None, 240)
        assert said and client.poll() is None, f"the run did not say that its pilot waits:\n{err.text()}"
        (pilot_job,) = slurm.active_jobs_under(work)
        assert pilot_job["JobState"] == "PENDING", pilot_job
        assert f"is Slurm job {pilot_job['JobId']}, waiting in the queue (reason: Resources)" in err.text(), err.text()
        # ... and says it again while it waits (every minute).
        again = wait_for(lambda: err.find("still waiting in the queue after 1 min") or client.poll() is not None, 150)
        assert again and client.poll() is None, err.text()
        assert pilot_job in slurm.active_jobs_under(work)
        slurm.scancel(blocker)
        client.wait(timeout=300)
    finally:
        slurm.scancel(blocker)
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err.text()
    assert out.text() == "hello\n"
    assert f"(Slurm job {pilot_job['JobId']}) is active after waiting" in err.text(), err.text()


class StreamLines:
    """Collects the lines of a text stream in a thread (so that the writer never blocks on a full pipe)."""

    def __init__(self, stream):
        import threading

        self._lines = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self._lines.append(line)

    def text(self) -> str:
        return "".join(self._lines)

    def find(self, needle: str):
        return next((line for line in list(self._lines) if needle in line), None)
