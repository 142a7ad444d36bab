"""Workflow scripts and runs shared by the tests of ``python -m scalems status / forget / report``.

Every task appends a line to ``<counts>/<name>`` when it runs, so a test can tell exactly which
tasks a run executed (the record is not asked: that is what is under test).
"""

import json
import os
import pathlib
import subprocess
import sys
import time

from cli import run_module, write_script

# What the runs below share: a task counts each run of itself in a file named after it, in COUNTS.
COUNTING = """
import os, sys, scalems

COUNTS = sys.argv[1]

def count(counts, name):
    with open(os.path.join(counts, name), "a") as fh:
        fh.write("ran\\n")

def summarize(path, counts):
    count(counts, "summary")
    return sum(int(x) for x in open(path))

def final(total, counts):
    count(counts, "final")
    return total * 2

def counted(name, command, *more):
    return ["sh", "-c", f'echo ran >> "$1"/{name}; ' + command, "sh", COUNTS, *more]
"""

# A run with every kind of ending: a chain prep -> summary -> final, a task that fails in both
# of its attempts after writing 30 lines to stderr, a task not run because of it, a function
# that raises, and a two-member ensemble.
MIXED = COUNTING + """
def boom(counts):
    count(counts, "boom")
    raise ValueError("bad value in boom")

@scalems.app
def main():
    prep = scalems.executable(counted("prep", "seq 1 3 > numbers"), outputs=["numbers"], label="prep")
    summary = scalems.function_task(summarize, args=(prep.file["numbers"], COUNTS), label="summary")
    scalems.function_task(final, args=(summary, COUNTS), label="final")
    flaky = scalems.executable(
        counted("flaky", 'for i in $(seq 1 30); do echo "complaint $i" >&2; done; exit 3'),
        outputs=["never"], retries=1, label="flaky",
    )
    scalems.executable(counted("after-flaky", 'cat "$2"', flaky.file["never"]), label="after-flaky")
    scalems.function_task(boom, args=(COUNTS,), label="boom")
    scalems.executable([counted(f"ens-{i}", "true") for i in range(2)], label="ens")
"""

# Every task succeeds: prep -> summary -> final, an independent executable and function, an ensemble.
CHAIN = COUNTING + """
def lonely(counts):
    count(counts, "lonely")
    return 1

@scalems.app
def main():
    prep = scalems.executable(counted("prep", "seq 1 3 > numbers"), outputs=["numbers"], label="prep")
    summary = scalems.function_task(summarize, args=(prep.file["numbers"], COUNTS), label="summary")
    scalems.function_task(final, args=(summary, COUNTS), label="final")
    scalems.executable(counted("other", "true"), label="other")
    scalems.function_task(lonely, args=(COUNTS,), label="lonely")
    scalems.executable([counted(f"ens-{i}", "true") for i in range(3)], label="ens")
"""

# A task that runs until the file named by argv[2] exists (and says it started in argv[2] + ".started").
LIVE = """
import sys, scalems

GO = sys.argv[1]

@scalems.app
def main():
    scalems.executable(["echo", "quick"], label="quick")
    scalems.executable(
        ["sh", "-c", 'echo $$ > "$1.started"; while [ ! -e "$1" ]; do sleep 0.05; done', "sh", GO], label="long"
    )
"""


def run_workflow(tmp_path: pathlib.Path, source: str, name: str, *, work: str = "work", cores: int = 2):
    """Run *source* with ``python -m scalems.local`` in ``tmp_path/work``; its counts in ``tmp_path/counts``."""
    counts = tmp_path / "counts"
    counts.mkdir(exist_ok=True)
    directory = tmp_path / work
    directory.mkdir(exist_ok=True)
    script = tmp_path / name
    if not script.exists():
        write_script(tmp_path, name, source)
    return run_module("scalems.local", "--cores", cores, script, counts, cwd=directory)


def counts(tmp_path: pathlib.Path) -> dict:
    """How many times each task ran, by name."""
    folder = tmp_path / "counts"
    return {p.name: len(p.read_text().splitlines()) for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def scalems_command(*args, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m scalems ARGS`` in *cwd*."""
    return run_module("scalems", *args, cwd=cwd, timeout=timeout)


def status_json(work: pathlib.Path) -> tuple:
    """``(exit status, parsed --json output)``."""
    done = scalems_command("status", "--json", work, cwd=work.parent)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


class LiveRun:
    """A ``python -m scalems.local`` run of :data:`LIVE`, started in the background; always ended by :meth:`finish`."""

    def __init__(self, tmp_path: pathlib.Path):
        self.go = tmp_path / "go"
        self.work = tmp_path / "work"
        self.work.mkdir()
        script = write_script(tmp_path, "live.py", LIVE)
        environment = {k: v for k, v in os.environ.items() if k != "SCALEMS_LOG_LEVEL"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scalems.local", script, self.go],
            cwd=self.work, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def wait_until_running(self, deadline: float = 120) -> dict:
        """Poll ``status --json`` until the long task shows as running; the last status."""
        end = time.monotonic() + deadline
        while True:
            assert self.process.poll() is None, self.process.stdout.read()
            done = scalems_command("status", "--json", self.work, cwd=self.work.parent)
            found = done.stderr
            if done.returncode != 2:  # 2: the run has not created its record yet
                assert done.returncode in (0, 1), done.stderr
                found = json.loads(done.stdout)
                if found["run"]["state"] == "live" and "long" in found["running"]:
                    return found
            assert time.monotonic() < end, f"the long task never showed as running: {found}"
            time.sleep(0.2)

    def task_pid(self) -> int:
        return int(pathlib.Path(f"{self.go}.started").read_text())

    def finish(self) -> str:
        """Let the long task end and wait for the run; its output."""
        self.go.touch()
        try:
            output, _ = self.process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output
