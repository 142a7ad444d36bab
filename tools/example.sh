#!/usr/bin/env bash
# Set up .venv and run the pipeline example with the local execution module.
# Results go to ./example-run (run it again: nothing is recomputed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh" mpi
mkdir -p "$ROOT/example-run"
cd "$ROOT/example-run"
"$ROOT/.venv/bin/python" -m scalems.local "$ROOT/examples/pipeline/pipeline.py" 100
echo "Results are under $ROOT/example-run/scalems_tasks"
