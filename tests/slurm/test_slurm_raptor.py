"""``--enable-raptor`` on a 2-core Slurm pilot: the Raptor pool makes way for executables.

The master and one worker would hold both cores for the whole session; the RP backend's
budget shrinks the pool (or stops it, for a task that needs both cores) so that
executables run, and a task that can never fit fails at once.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("radical.pilot")
pytest.importorskip("mpi4py")

from cli import EXAMPLES, run_module, write_script  # noqa: E402
from md_examples import LJ_SWEEP, lj_runs, summary_line  # noqa: E402
from test_slurm_cli import RP_OPTIONS  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.radical, pytest.mark.slow]

RAPTOR_OPTIONS = [*RP_OPTIONS, "--enable-raptor"]


def test_lammps_sweep_with_raptor_matches_local(slurm_run, tmp_path):
    # One 1-rank replica at each of two temperatures and the 2-rank replica (both cores) at the
    # second; the analyses are function tasks for the Raptor workers.
    args = ("--temperatures", "1.0", "2.0", "--replicas", "1", "--steps", "1000", "--equil", "500")
    (tmp_path / "local").mkdir()
    local = run_module("scalems.local", "--cores", "2", EXAMPLES / LJ_SWEEP, *args, cwd=tmp_path / "local", timeout=300)
    assert local.returncode == 0, local.stdout + local.stderr
    work = tmp_path / "slurm"
    work.mkdir()
    done = run_module("scalems.radical", *RAPTOR_OPTIONS, EXAMPLES / LJ_SWEEP, *args, cwd=work, timeout=900, env=slurm_run.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(lj_runs(done.stdout)) == ["lj-T1.00-0", "lj-T2.00-0", "lj-T2.00-np2"], done.stdout
    assert "with 2 MPI tasks" in (work / "scalems_tasks" / "lj-T2.00-np2" / "log.lammps").read_text()
    assert done.stdout.replace(str(work), "W") == local.stdout.replace(str(tmp_path / "local"), "W")
    assert summary_line(6, 0) in done.stderr
    # The 2-rank replica needs both cores: the pool made way (it did not hold them for the session).
    assert "stopping the Raptor pool" in done.stderr, done.stderr


def test_pipeline_example_with_raptor_matches_local(slurm_run, tmp_path):
    (tmp_path / "local").mkdir()
    expected = run_module("scalems.local", "--cores", "2", EXAMPLES / "pipeline" / "pipeline.py", "6", cwd=tmp_path / "local")
    assert expected.returncode == 0, expected.stderr
    work = tmp_path / "slurm"
    work.mkdir()
    done = run_module(
        "scalems.radical", *RAPTOR_OPTIONS, EXAMPLES / "pipeline" / "pipeline.py", "6", cwd=work, timeout=600, env=slurm_run.env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace(str(work), "W") == expected.stdout.replace(str(tmp_path / "local"), "W")
    assert (work / "scalems_tasks" / "report" / "report.txt").read_text() == "count=6 sum=21 mean=3.5\n"


def test_a_task_larger_than_the_pilot_fails_at_once(slurm_run, tmp_path):
    script = write_script(
        tmp_path,
        "too_big.py",
        """
        import scalems

        @scalems.app
        def main():
            scalems.executable(["true"], label="three-cores", resources=dict(ranks=3)).result()
        """,
    )
    started = time.monotonic()
    # The timeout only guards against a hang; the task fails as soon as the pilot is up.
    done = run_module("scalems.radical", *RAPTOR_OPTIONS, script, cwd=tmp_path, timeout=600, env=slurm_run.env)
    assert done.returncode != 0
    assert "Task 'three-cores' needs 3 cores but the pilot has only 2" in done.stderr, done.stderr
    assert "--pilot-option cores=N" in done.stderr
    print(f"failed after {time.monotonic() - started:.1f} s")
