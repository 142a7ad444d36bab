#!/usr/bin/env bash
# Create (or update) the project virtualenv in .venv with scalems and the given extras.
# Usage: source tools/setup.sh [EXTRAS]   e.g. EXTRAS="radical,mpi,test"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-mpi}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --upgrade pip
"$ROOT/.venv/bin/python" -m pip install --quiet -e "$ROOT[$EXTRAS]"
