#!/usr/bin/env bash
# Build the documentation into docs/_build/html, with every Sphinx warning an error.
# Sets up .venv with the docs extra first (SCALEMS_DOCS_NO_SETUP=1 skips that).
# Extra arguments go to sphinx-build, e.g. bash tools/docs.sh -E (rebuild everything).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${SCALEMS_DOCS_NO_SETUP:-}" ]; then
    bash "$ROOT/tools/setup.sh" docs
fi
# -W: warnings are errors; --keep-going: report all of them; -n: every cross-reference to a
# scalems name must resolve (docs/conf.py leaves names outside scalems unchecked: the build is offline).
"$ROOT/.venv/bin/python" -m sphinx -b html -W --keep-going -n -q \
    -d "$ROOT/docs/_build/doctrees" "$@" "$ROOT/docs" "$ROOT/docs/_build/html"
echo "Documentation: $ROOT/docs/_build/html/index.html"
