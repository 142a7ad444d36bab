"""Helpers to run execution modules as a user would: ``python -m scalems.<backend> ...``."""

import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def run_module(module: str, *args, cwd, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` in *cwd*; return the completed process (text output)."""
    environment = dict(os.environ)
    environment.pop("SCALEMS_LOG_LEVEL", None)
    if env:
        environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_script(directory: pathlib.Path, name: str, source: str) -> pathlib.Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path
