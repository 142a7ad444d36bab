"""The LAMMPS and GROMACS examples through ``python -m scalems.radical`` on a real local.localhost pilot.

Both engines are deterministic here (fixed seeds, one thread per rank, the same binaries), so the
tables must be identical to those of ``python -m scalems.local`` in another directory; and a fully
cached re-run starts no RP session.
"""

from __future__ import annotations

import pytest

pytest.importorskip("radical.pilot")

from cli import EXAMPLES, run_module  # noqa: E402
from md_examples import LJ_SWEEP, WATER_SWEEP, lj_runs, require_gmx, summary_line, water_rows  # noqa: E402

pytestmark = [pytest.mark.radical, pytest.mark.slow]

RP_OPTIONS = ["--resource", "local.localhost", "--pilot-option", "cores=2", "--pilot-option", "runtime=10"]


def run_both(tmp_path, example, *args):
    """The example through scalems.local and through scalems.radical, each in its own directory."""
    (tmp_path / "local").mkdir()
    (tmp_path / "radical").mkdir()
    local = run_module("scalems.local", "--cores", "2", EXAMPLES / example, *args, cwd=tmp_path / "local", timeout=300)
    assert local.returncode == 0, local.stdout + local.stderr
    remote = run_module("scalems.radical", *RP_OPTIONS, EXAMPLES / example, *args, cwd=tmp_path / "radical", timeout=600)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    same = remote.stdout.replace(str(tmp_path / "radical"), "W") == local.stdout.replace(str(tmp_path / "local"), "W")
    return local, remote, same


def assert_rerun_runs_nothing(directory, example, args, tasks, first_stdout):
    sessions = set((directory / "scalems_radical").iterdir())
    again = run_module("scalems.radical", *RP_OPTIONS, EXAMPLES / example, *args, cwd=directory, timeout=600)
    assert again.returncode == 0, again.stderr
    assert summary_line(tasks, tasks) in again.stderr
    assert again.stdout == first_stdout
    assert set((directory / "scalems_radical").iterdir()) == sessions, "a fully cached re-run started an RP session"


def test_lammps_sweep_on_radical_matches_local(tmp_path):
    # Two temperatures, one 1-rank replica each, and the 2-rank replica at the second (the middle index).
    args = ("--temperatures", "1.0", "2.0", "--replicas", "1", "--steps", "1000", "--equil", "500")
    local, remote, same = run_both(tmp_path, LJ_SWEEP, *args)
    runs = lj_runs(remote.stdout)
    assert sorted(runs) == ["lj-T1.00-0", "lj-T2.00-0", "lj-T2.00-np2"], remote.stdout
    for label, run in runs.items():
        assert abs(run["temp"] - run["target"]) <= 0.1 * run["target"], (label, run)
    assert runs["lj-T1.00-0"]["pe"] < runs["lj-T2.00-0"]["pe"]
    log = tmp_path / "radical" / "scalems_tasks" / "lj-T2.00-np2" / "log.lammps"  # staged back from the sandbox
    assert "with 2 MPI tasks" in log.read_text()
    assert same, f"scalems.radical:\n{remote.stdout}\nscalems.local:\n{local.stdout}"
    assert summary_line(6, 0) in remote.stderr
    assert_rerun_runs_nothing(tmp_path / "radical", LJ_SWEEP, args, 6, remote.stdout)


def test_gromacs_water_sweep_on_radical_matches_local(tmp_path):
    require_gmx()
    local, remote, same = run_both(tmp_path, WATER_SWEEP)
    rows = water_rows(remote.stdout)
    assert sorted(rows) == ["md-0", "md-1", "md-2"], remote.stdout
    for label, (target, temperature, _, _) in rows.items():
        assert abs(temperature - target) <= 0.1 * target, (label, target, temperature)
    energies = [rows[m][2] for m in ("md-0", "md-1", "md-2")]
    assert energies == sorted(energies) and len(set(energies)) == 3, energies
    for member in range(3):
        for name in ("md.edr", "md.gro", "md.log"):  # written by mdrun itself, staged back
            assert (tmp_path / "radical" / "scalems_tasks" / f"md-{member}" / name).stat().st_size > 0
    assert same, f"scalems.radical:\n{remote.stdout}\nscalems.local:\n{local.stdout}"
    assert summary_line(16, 0) in remote.stderr
    assert_rerun_runs_nothing(tmp_path / "radical", WATER_SWEEP, (), 16, remote.stdout)
