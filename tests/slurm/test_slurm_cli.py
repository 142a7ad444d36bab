"""``python -m scalems.radical --resource local.slurm`` through a real Slurm cluster.

The pilot is a Slurm batch job (submitted by RP's psij launcher with sbatch) and tasks are
placed in it with srun. Each test starts its own session (about 30 s: RP start-up, the
pilot job, session close) and checks with Slurm itself, not with RP, what became of the job.
Every test leaves no Slurm job, no process and nothing outside its temporary folders
(the ``slurm_run`` fixture asserts it).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("radical.pilot")

from cli import EXAMPLES, run_module, write_script  # noqa: E402
from slurm_helpers import RP_OPTIONS, pilot_sandboxes, processes_with, wait_for  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.radical, pytest.mark.slow]


def start_long_run(work: pathlib.Path, slurm, marker: pathlib.Path) -> subprocess.Popen:
    """Start a run whose one task sleeps for 5 minutes; return it once the task runs."""
    script = write_script(
        work,
        "long.py",
        f"""
        import scalems
        @scalems.app
        def main():
            scalems.executable(["sh", "-c", "touch {marker}; sleep 300"], label="long")
        """,
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "scalems.radical", *RP_OPTIONS, str(script)],
        cwd=work,
        env={**os.environ, **slurm.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach the client even when this test runs where SIGINT is ignored
        # (a background job of a non-interactive shell): Python then installs no handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if runner.poll() is not None:
            out, err = runner.communicate()
            pytest.fail(f"the run ended (status {runner.returncode}) before its task started:\n{err}")
        if time.monotonic() > deadline:
            runner.kill()
            runner.communicate()
            pytest.fail("the task did not start within 240 s")
        time.sleep(0.2)
    return runner


def running_pilot_job(slurm, work: pathlib.Path) -> dict:
    """The one Slurm job of the run in *work*, as squeue shows it while the run goes on."""
    jobs = slurm.jobs_under(work)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    sandboxes = pilot_sandboxes(work)
    assert len(sandboxes) == 1, sandboxes
    assert job["WorkDir"] == str(sandboxes[0]), (job, sandboxes)
    assert job["JobState"] == "RUNNING", job
    return job


def test_pipeline_example_runs_as_a_batch_job_and_matches_local(slurm_run, tmp_path):
    slurm = slurm_run
    (tmp_path / "local").mkdir()
    expected = run_module("scalems.local", "--cores", "2", EXAMPLES / "pipeline" / "pipeline.py", "6", cwd=tmp_path / "local")
    assert expected.returncode == 0, expected.stderr
    work = tmp_path / "slurm"
    work.mkdir()
    submitted = time.time()
    done = run_module(
        "scalems.radical", *RP_OPTIONS, EXAMPLES / "pipeline" / "pipeline.py", "6", cwd=work, timeout=600, env=slurm.env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace(str(work), "W") == expected.stdout.replace(str(tmp_path / "local"), "W")
    for label, name in (("numbers", "numbers.txt"), ("report", "report.txt")):
        ours = (work / "scalems_tasks" / label / name).read_text()
        assert ours == (tmp_path / "local" / "scalems_tasks" / label / name).read_text()
    assert (work / "scalems_tasks" / "report" / "report.txt").read_text() == "count=6 sum=21 mean=3.5\n"

    # Slurm's own record: the pilot ran as a batch job, in the pilot sandbox, on the node.
    (sandbox,) = pilot_sandboxes(work)
    records = [record for record in slurm.completed_records() if record.get("WorkDir") == str(sandbox)]
    assert len(records) == 1, f"no single jobcomp record with WorkDir={sandbox}: {records}"
    record = records[0]
    assert record["JobState"] in ("COMPLETED", "CANCELLED"), record  # RP ends its pilot job by scancel
    assert record["Partition"] == "debug" and record["NodeCnt"] == "1", record
    start = time.mktime(time.strptime(record["StartTime"], "%Y-%m-%dT%H:%M:%S"))
    assert start >= int(submitted) - 1, (record, submitted)
    # The job's environment, as bootstrap_0 saved it in the pilot sandbox, had that job id.
    environment = (sandbox / "env" / "bs0_orig.env").read_text()
    assert f"SLURM_JOB_ID={record['JobId']}\n" in environment


def test_ctrl_c_ends_the_run_and_its_slurm_job(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    runner = start_long_run(work, slurm, tmp_path / "started")
    try:
        job = running_pilot_job(slurm, work)
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 130, err
    # The pilot job ends with the client (allowing Slurm KillWait, 10 s, to end what is left of it).
    over = wait_for(lambda: not slurm.active_jobs_under(work), 30)
    assert over, f"the pilot job outlived the client: {slurm.jobs_under(work)}"
    (state,) = [j["JobState"] for j in slurm.jobs_under(work) if j["JobId"] == job["JobId"]]
    assert state in ("CANCELLED", "COMPLETED"), state
    assert wait_for(lambda: not processes_with(str(work)), 10), f"processes of the run outlived it: {processes_with(str(work))}"


def test_scancelled_pilot_job_fails_the_run_naming_the_job(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    runner = start_long_run(work, slurm, tmp_path / "started")
    try:
        job = running_pilot_job(slurm, work)
        slurm.scancel(job["JobId"])
        cancelled = time.monotonic()
        out, err = runner.communicate(timeout=120)
        elapsed = time.monotonic() - cancelled
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 1, err
    assert elapsed < 120
    (sandbox,) = pilot_sandboxes(work)
    log = sandbox / "bootstrap_0.out"
    assert f"Slurm job {job['JobId']};" in err, err
    assert f"the pilot's log: {log}" in err, err
    assert log.is_file()
    assert "FAILED" in err and "long" in err
