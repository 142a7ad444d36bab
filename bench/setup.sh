#!/usr/bin/env bash
# Install the optional peers of the benchmark (Parsl, Dask distributed) into the project's venv.
# bench/run.py runs without them and marks their rows "not installed (run bench/setup.sh)".
# py-spy is for bench/profile.py (sampling profiles of every process); it is optional too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${VENV:-$here/../.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "bench/setup.sh: no virtualenv at $venv (set VENV=... or run tools/test.sh first)" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet parsl dask distributed py-spy
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("parsl", "dask", "distributed", "py-spy"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: NOT installed")
PY
