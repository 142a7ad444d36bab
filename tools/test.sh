#!/usr/bin/env bash
# Set up .venv with every extra and run the whole test suite (RADICAL-Pilot and MPI tests included).
# Extra arguments go to pytest, e.g. bash tools/test.sh -m "not radical".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh" "radical,mpi,test"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
"$ROOT/.venv/bin/ruff" check "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
