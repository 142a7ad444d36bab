"""Workflow scripts for the real ``python -m scalems.local`` / ``scalems.radical`` runs of W1, W2, W5, W6.

The scripts write timing marks (loaded, app entered, exit, ...) to a JSON file, so that a workload can
time the workflow manager's run apart from interpreter start-up; ``Scratch`` hands out the fresh
work directories every sample needs.
"""

from __future__ import annotations

import json
import pathlib

from harness.common import PY, BenchError, child_env, run_command


SCRIPT_HEAD = """\
import atexit, json, os, time
_MARKS = {"load": time.perf_counter()}
import scalems

_N = int(os.environ["SCALEMS_BENCH_N"])


def _write_marks():
    _MARKS["exit"] = time.perf_counter()
    with open(os.environ["SCALEMS_BENCH_OUT"], "w") as fh:
        json.dump(_MARKS, fh)


atexit.register(_write_marks)


def noop(i):
    return i

"""

SCRIPTS = {
    # W1 / W6: N distinct /bin/true tasks (identical argv would be one task).
    "executables": SCRIPT_HEAD
    + """
@scalems.app
def main():
    _MARKS["app"] = time.perf_counter()
    for i in range(_N):
        scalems.executable(["/bin/true", str(i)])
    _MARKS["added"] = time.perf_counter()
""",
    # W5: the smallest real workflow.
    "echo": SCRIPT_HEAD
    + """
@scalems.app
def main():
    _MARKS["app"] = time.perf_counter()
    scalems.executable(["echo", "hello"])
""",
    # W2 (information): the function is defined in the script (__main__), as users write it.
    "main_functions": SCRIPT_HEAD
    + """
@scalems.app
def main():
    _MARKS["app"] = time.perf_counter()
    for i in range(_N):
        scalems.submit(noop, i)
""",
    # W6: function throughput after one warm-up call (the Raptor master and worker are up).
    "functions": SCRIPT_HEAD
    + """
@scalems.app
def main():
    _MARKS["app"] = time.perf_counter()
    scalems.submit(noop, -1).result()
    _MARKS["t0"] = time.perf_counter()
    tasks = [scalems.submit(noop, i) for i in range(_N)]
    scalems.wait(tasks)
    _MARKS["t1"] = time.perf_counter()
    assert [t.result() for t in tasks[:3]] == [0, 1, 2]
""",
}


class Scratch:
    """Fresh directories under one temporary root."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.counter = 0

    def fresh(self, name: str) -> pathlib.Path:
        self.counter += 1
        path = self.root / f"{self.counter:04d}-{name}"
        path.mkdir(parents=True)
        return path

    def script(self, kind: str) -> pathlib.Path:
        path = self.root / f"bench_{kind}.py"
        if not path.exists():
            path.write_text(SCRIPTS[kind])
        return path


def scalems_command(
    scratch: Scratch,
    module: str,
    script_kind: str,
    n: int,
    options=(),
    *,
    timeout=600,
    env_extra=None,
    cwd=None,
) -> dict:
    """Run ``python -m MODULE [options] --work-dir FRESH script.py``; return wall time and the script's marks."""
    workdir = scratch.fresh(f"{module.split('.')[-1]}-{script_kind}")
    marks_file = workdir.parent / (workdir.name + ".marks.json")
    env = child_env({"SCALEMS_BENCH_N": str(n), "SCALEMS_BENCH_OUT": str(marks_file), **(env_extra or {})})
    argv = [PY, "-m", module, *options, "--work-dir", str(workdir), str(scratch.script(script_kind))]
    wall, _, _ = run_command(argv, timeout=timeout, env=env, cwd=cwd or workdir)
    try:
        marks = json.loads(marks_file.read_text())
    except (OSError, ValueError) as error:
        raise BenchError(f"the workflow script left no timing marks ({error})") from error
    marks["wall"] = wall
    marks["run"] = marks["exit"] - marks["load"]
    return marks
