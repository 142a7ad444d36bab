"""Shared by the tests of the real-MD-engine examples (LAMMPS, GROMACS) on every backend.

Reading the tables the example scripts print, and finding (or, as root, installing) GROMACS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cli import REPO

LJ_SWEEP = "lammps/lj_sweep.py"
WATER_SWEEP = "gromacs/water_sweep.py"
LJ38_SEARCH = "adaptive/lj38_search.py"

_NUMBER = r"(-?\d+(?:\.\d+)?)"


def lj_runs(stdout: str) -> dict:
    """{label: {target, seed, ranks, temp, pe, press}} from the per-run table of lj_sweep.py."""
    runs = {}
    pattern = re.compile(rf"^(lj-T\S+)\s+{_NUMBER}\s+(\d+)\s+(\d+)\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}$")
    for line in stdout.splitlines():
        match = pattern.match(line)
        if match:
            label, target, seed, ranks, temp, pe, press = match.groups()
            runs[label] = dict(
                target=float(target), seed=int(seed), ranks=int(ranks), temp=float(temp), pe=float(pe), press=float(press)
            )
    return runs


def lj_summary(stdout: str) -> dict:
    """{target T*: (runs, mean T*, mean PE per atom)} from the summary table of lj_sweep.py."""
    rows = {}
    pattern = re.compile(rf"^\s*{_NUMBER}\s+(\d+)\s+{_NUMBER}\s+{_NUMBER} \+- ")
    for line in stdout.splitlines():
        match = pattern.match(line)
        if match:
            target, runs, temp, pe = match.groups()
            rows[float(target)] = (int(runs), float(temp), float(pe))
    return rows


def water_rows(stdout: str) -> dict:
    """{member label: (target K, mean T, U kJ/mol, U per molecule)} from water_sweep.py's table."""
    rows = {}
    pattern = re.compile(rf"^(md-\d+)\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}$")
    for line in stdout.splitlines():
        match = pattern.match(line)
        if match:
            label, *numbers = match.groups()
            rows[label] = tuple(float(x) for x in numbers)
    return rows


def lj38_rounds(stdout: str) -> list:
    """[(round, lowest trial, highest trial, best so far, from)] from lj38_search.py's table."""
    rows = []
    pattern = re.compile(rf"^\s*(\d+)\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s+(.+)$")
    for line in stdout.splitlines():
        match = pattern.match(line)
        if match:
            round_, low, high, best, chosen = match.groups()
            rows.append((int(round_), float(low), float(high), float(best), chosen.strip()))
    return rows


def summary_line(tasks: int, cached: int) -> str:
    """The run summary scalems prints on stderr: 'N tasks: N done (M from earlier runs)'."""
    return f"{tasks} tasks: {tasks} done" + (f" ({cached} from earlier runs)" if cached else ".")


def require_gmx() -> str:
    """The path of ``gmx``, installing Debian's package first as root (tools/install-gromacs.sh, as CI does).

    Skips only where GROMACS is missing and cannot be installed here (not root, or no apt-get).
    """
    found = shutil.which("gmx")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "GROMACS (gmx) is not on PATH and cannot be installed here (not root with apt-get); install it "
            "(apt-get install gromacs, conda install -c conda-forge gromacs, module load gromacs) to run this test"
        )
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "install-gromacs.sh")], capture_output=True, text=True, timeout=900
    )
    found = shutil.which("gmx")
    if not found:
        pytest.fail(f"gmx is missing and tools/install-gromacs.sh could not install it:\n{done.stdout}{done.stderr}")
    return found
