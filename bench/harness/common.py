"""Paths, sizes and running one sample: what every workload module and the driver share.

Every sample runs in a fresh process (bench/measure.py, or a real command); the helpers here start it
with the bench's environment and turn a failure or time-out into ``BenchError``, which a workload
reports in its row instead of crashing the bench.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import typing

BENCH = pathlib.Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
MEASURE = BENCH / "measure.py"
RP_PLAIN = BENCH / "rp_plain.py"
PY = sys.executable
VENV_BIN = os.path.dirname(PY)


ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")
NOT_INSTALLED = "not installed (run bench/setup.sh)"

SIZES = {
    "full": {
        "W1": 1000,
        "W2": 10_000,
        "W3": 10_000,
        "W4": (10_000, 100_000),
        "W6_exe": 200,
        "W6_raptor": 1000,
    },
    "smoke": {"W1": 20, "W2": 200, "W3": 200, "W4": (100, 1000), "W6_exe": 10, "W6_raptor": 20},
}


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- running samples ----------------------------------------------------------------------------------
def child_env(extra: typing.Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    # Parsl's interchange/worker pool and RP's helpers are started by name: the venv's bin/ goes first.
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.pop("SCALEMS_LOG_LEVEL", None)
    # Measure Python as installed by default: with cached bytecode. (With PYTHONDONTWRITEBYTECODE set, every
    # process would compile scalems from source again, ~0.2 s, which python -c pass never pays.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


def run_command(argv, *, timeout: float, cwd=None, env=None) -> tuple:
    """Run *argv*; return ``(wall seconds, stdout, stderr)``. Raises BenchError on failure or time-out."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env or child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"timed out after {timeout:.0f} s") from error
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise BenchError(f"exit status {proc.returncode}: {' | '.join(tail)[-400:]}")
    return wall, proc.stdout, proc.stderr


def parse_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT ") :])
    raise BenchError("no BENCH_RESULT line in the output")


def measure(kind: str, n: int, *rest, timeout: float = 600, env=None) -> dict:
    wall, out, _ = run_command([PY, str(MEASURE), kind, str(n), *map(str, rest)], timeout=timeout, env=env)
    result = parse_result(out)
    result["wall"] = wall
    return result


# ---- availability -----------------------------------------------------------------------------------------
def have(*modules: str) -> typing.Optional[str]:
    """None if every module is importable, else the "not installed" reason."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return NOT_INSTALLED
    return None


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
