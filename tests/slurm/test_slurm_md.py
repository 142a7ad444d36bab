"""The LAMMPS example through ``python -m scalems.radical --resource local.slurm``.

LAMMPS runs as executables placed by srun in the pilot's batch job, one replica on 2 MPI ranks
(a 2-rank srun step), the analyses as function tasks. With fixed seeds and one thread per rank
the table is identical to that of ``python -m scalems.local``.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("radical.pilot")

from cli import EXAMPLES, run_module  # noqa: E402
from md_examples import LJ_SWEEP, lj_runs, summary_line  # noqa: E402
from slurm_helpers import RP_OPTIONS, pilot_sandboxes  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.radical, pytest.mark.slow]

#: Two temperatures, one 1-rank replica each, and the 2-rank replica at the second.
ARGS = ("--temperatures", "1.0", "2.0", "--replicas", "1", "--steps", "1000", "--equil", "500")


def slurm_steps(slurm, job_id: str) -> list:
    """Task counts of the srun steps slurmd launched in job *job_id*, from slurmd's own log."""
    log = slurm.conf.parent / "log" / "slurmd.log"
    pattern = re.compile(rf"launch task StepId={job_id}\.(\d+) request from .*")
    steps = {}
    for line in log.read_text(errors="replace").splitlines():
        found = pattern.search(line)
        if found:
            steps[found.group(1)] = line
    return list(steps.values())


def test_lammps_sweep_on_slurm_matches_local(slurm_run, tmp_path):
    slurm = slurm_run
    (tmp_path / "local").mkdir()
    local = run_module("scalems.local", "--cores", "2", EXAMPLES / LJ_SWEEP, *ARGS, cwd=tmp_path / "local", timeout=300)
    assert local.returncode == 0, local.stderr
    work = tmp_path / "slurm"
    work.mkdir()
    remote = run_module(
        "scalems.radical", *RP_OPTIONS, "--pilot-option", "cores=2", EXAMPLES / LJ_SWEEP, *ARGS,
        cwd=work, timeout=600, env=slurm.env,
    )
    assert remote.returncode == 0, remote.stderr
    runs = lj_runs(remote.stdout)
    assert sorted(runs) == ["lj-T1.00-0", "lj-T2.00-0", "lj-T2.00-np2"], remote.stdout
    assert remote.stdout.replace(str(work), "W") == local.stdout.replace(str(tmp_path / "local"), "W")
    assert summary_line(6, 0) in remote.stderr
    assert "with 2 MPI tasks" in (work / "scalems_tasks" / "lj-T2.00-np2" / "log.lammps").read_text()
    # Slurm's side: the pilot was a batch job, and the LAMMPS runs were srun steps in it.
    (sandbox,) = pilot_sandboxes(work)
    (record,) = [r for r in slurm.completed_records() if r.get("WorkDir") == str(sandbox)]
    assert record["Partition"] == "debug", record
    steps = slurm_steps(slurm, record["JobId"])
    assert len(steps) >= 3, f"expected an srun step per LAMMPS run in job {record['JobId']}: {steps}"
