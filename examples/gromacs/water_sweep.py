"""Liquid water at several temperatures with GROMACS: solvate, minimise, an NVT ensemble, gmx energy, analysis.

    python -m scalems.local examples/gromacs/water_sweep.py [--temperatures 280 320 360] [--box 2.2]

1. ``gmx solvate`` fills a cubic box with SPC water from GROMACS's own equilibrated
   ``spc216.gro``; a Python function counts the molecules it placed, and the script
   writes the topology (``topol.top`` here, OPLS-AA with SPC water, plus that count).
2. ``gmx grompp`` + ``gmx mdrun``: steepest-descent minimisation removes the overlaps
   at the seams of the tiled box.
3. For each temperature, ``gmx grompp`` with a copy of ``md.mdp`` at that temperature,
   then ``gmx mdrun -deffnm md`` (an ensemble over temperatures; mdrun writes md.edr,
   md.gro and md.log by itself).
4. ``gmx energy`` reads the energy file and writes Potential and Temperature to
   ``energy.xvg`` (it asks for the terms on standard input).
5. A Python function reads each ``energy.xvg``, discards the first 25 % (0.5 ps) as equilibration
   and averages; the script prints the temperature reached, the potential energy per
   molecule, and d<U>/dT between neighbouring temperatures (the configurational part
   of the heat capacity).

Needs ``gmx`` on PATH (GROMACS; on Debian/Ubuntu ``apt-get install gromacs``).
The topology and the per-temperature parameter files are written to ``./water-inputs/``.
Re-running in the same directory runs nothing.
"""

import argparse
import pathlib
import re
import statistics
import sys

import scalems

HERE = pathlib.Path(__file__).resolve().parent
MDRUN = ["-nt", "1"]  # one thread per run: the ensemble members run side by side
GMX_ENV = {"GMX_MAXBACKUP": "-1"}  # no '#file.1#' backups: every task starts in a fresh directory
INPUTS = pathlib.Path("water-inputs")  # the topology and the .mdp files this script writes


def write_file(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write *text* to *path* (unless it is there already: a re-run leaves the file alone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def mdp_at(template: pathlib.Path, temperature: float) -> str:
    """The parameters of *template* with the thermostat and the initial velocities at *temperature* (K)."""
    text = template.read_text()
    for key in ("ref_t", "gen_temp"):
        text = re.sub(rf"^({key}\s*=\s*)\S+", rf"\g<1>{temperature:g}", text, flags=re.MULTILINE)
    return text


def xvg_averages(path, skip_fraction: float = 0.25) -> dict:
    """Means of the data sets in a GROMACS .xvg file (by legend), after the first *skip_fraction* of time."""
    legends, rows = [], []
    with open(path) as xvg:
        for line in xvg:
            if line.startswith("@"):
                match = re.match(r'@\s+s(\d+)\s+legend\s+"(.*)"', line)
                if match:
                    legends.append(match.group(2))
            elif not line.startswith("#") and line.strip():
                rows.append([float(value) for value in line.split()])
    start = rows[0][0] + skip_fraction * (rows[-1][0] - rows[0][0])
    kept = [row for row in rows if row[0] >= start]
    averages = {name: statistics.fmean(row[i + 1] for row in kept) for i, name in enumerate(legends)}
    averages["frames"] = len(kept)
    return averages


def count_waters(gro_path) -> int:
    """The number of water molecules (residues SOL, one OW oxygen each) in a .gro structure file."""
    with open(gro_path) as gro:
        lines = gro.readlines()
    atoms = lines[2 : 2 + int(lines[1])]  # title, atom count, atoms (fixed columns), box
    return sum(1 for atom in atoms if atom[5:10].strip() == "SOL" and atom[10:15].strip() == "OW")


@scalems.app
def main():
    parser = argparse.ArgumentParser(description="SPC water at several temperatures with GROMACS")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[280.0, 320.0, 360.0], help="K")
    parser.add_argument("--box", type=float, default=2.2, help="edge of the cubic box (nm)")
    options = parser.parse_args(sys.argv[1:])
    temperatures = options.temperatures

    box = f"{options.box:g}"
    solvate = scalems.executable(
        ["gmx", "solvate", "-cs", "spc216.gro", "-box", box, box, box, "-o", scalems.output_file("water.gro")],
        env=GMX_ENV,
        label="solvate",
    )
    # The topology needs the number of molecules solvate placed (it depends on the box).
    n_water = scalems.submit(count_waters, solvate.file["water.gro"]).result()
    topology = write_file(INPUTS / "topol.top", (HERE / "topol.top").read_text() + f"SOL {n_water:>14}\n")

    em_input = scalems.executable(
        ["gmx", "grompp", "-f", HERE / "em.mdp", "-c", solvate.file["water.gro"], "-p", topology,
         "-o", scalems.output_file("em.tpr")],
        env=GMX_ENV,
        label="grompp-em",
    )
    em = scalems.executable(
        ["gmx", "mdrun", "-deffnm", "em", *MDRUN],
        inputs=[em_input.file["em.tpr"]],  # -deffnm em reads ./em.tpr
        outputs=["em.gro", "em.edr", "em.log"],
        env=GMX_ENV,
        label="em",
    )

    mdp_files = [write_file(INPUTS / f"md-{t:g}K.mdp", mdp_at(HERE / "md.mdp", t)) for t in temperatures]
    md_inputs = scalems.executable(
        [
            ["gmx", "grompp", "-f", mdp, "-c", em.file["em.gro"], "-p", topology, "-o", scalems.output_file("md.tpr")]
            for mdp in mdp_files
        ],
        env=GMX_ENV,
        label="grompp-md",
    )
    md = scalems.executable(
        [["gmx", "mdrun", "-deffnm", "md", "-s", tpr.file["md.tpr"], *MDRUN] for tpr in md_inputs],
        outputs=["md.edr", "md.gro", "md.log"],  # written by mdrun itself (-deffnm md)
        env=GMX_ENV,
        label="md",
    )
    energies = scalems.executable(
        [["gmx", "energy", "-f", run.file["md.edr"]] for run in md],
        stdin="Potential\nTemperature\n\n",  # the terms gmx energy asks for, then an empty line
        outputs=["energy.xvg"],  # its default output name
        env=GMX_ENV,
        label="energy",
    )
    analyses = [scalems.submit(xvg_averages, run.file["energy.xvg"]) for run in energies]

    print(f"{n_water} SPC water molecules in a {box} nm cubic box")
    print(f"{'member':<10} {'T target (K)':>12} {'<T> (K)':>9} {'<U> (kJ/mol)':>13} {'<U>/molecule':>13}")
    rows = []
    for member, temperature, analysis in zip(md, temperatures, analyses):
        averages = analysis.result()
        per_molecule = averages["Potential"] / n_water
        rows.append((temperature, per_molecule))
        print(
            f"{member.label:<10} {temperature:>12.1f} {averages['Temperature']:>9.2f} "
            f"{averages['Potential']:>13.1f} {per_molecule:>13.3f}"
        )
    print()
    for (t1, u1), (t2, u2) in zip(rows, rows[1:]):
        print(f"d<U>/dT between {t1:g} and {t2:g} K: {1000 * (u2 - u1) / (t2 - t1):.0f} J/(mol K) per molecule")
    print()
    print(f"GROMACS outputs: {pathlib.Path(md[0].result().directory).parent}/md-*/md.{{edr,gro,log}}")
