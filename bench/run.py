#!/usr/bin/env python3
"""scalems benchmark harness: scalems against its peers, in one invocation.

    python bench/run.py [--smoke] [--repeat N] [--only W1,W2,...] [--with-radical]
                        [--json bench/results.json] [--no-write] [--keep]

Every sample runs in a fresh process (bench/measure.py, or a real
``python -m scalems.local`` command), and the systems under test are run in
turn, A, B, C, A, B, C, ..., so that a disturbance on the machine hits all of
them alike. The table shows medians; "ratio" is scalems ÷ baseline throughput
(or the time ratio where the target is about time). Without ``--smoke`` or
``--no-write`` the run regenerates bench/RESULTS.md.

Workloads (see bench/README.md): W1 executables, W2 function calls, W3 cached
re-run, W4 scale, W5 start-up, W6 RADICAL-Pilot overhead (opt-in: ``--only W6``
or ``--with-radical``; never in ``--smoke``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing

BENCH = pathlib.Path(__file__).resolve().parent
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


@dataclasses.dataclass
class Impl:
    """One system under test in one workload; ``sample(rep)`` returns ``(value, details)``."""

    key: str
    label: str
    unit: str  # "tasks/s" (higher is better) or "s" (lower is better)
    sample: typing.Callable[[int], tuple]
    unavailable: typing.Optional[str] = None
    values: list = dataclasses.field(default_factory=list)
    details: list = dataclasses.field(default_factory=list)
    background: list = dataclasses.field(default_factory=list)
    error: typing.Optional[str] = None

    @property
    def status(self) -> str:
        if self.unavailable:
            return self.unavailable
        if self.error:
            return f"failed: {self.error}"
        return "ok"

    @property
    def median(self) -> typing.Optional[float]:
        return statistics.median(self.values) if self.values and not self.error else None

    def detail_median(self, name: str) -> typing.Optional[float]:
        values = [d[name] for d in self.details if isinstance(d.get(name), (int, float))]
        return statistics.median(values) if values and not self.error else None


def _cpu_times() -> tuple:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def background_busy(window: float = 0.3) -> typing.Optional[float]:
    """Share of the machine's CPU time (0..1) used by other processes during *window* s (nothing of ours runs)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(window)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return (total - (idle1 - idle0)) / total if total > 0 else None


QUIET = {"wait": 0.0, "threshold": 0.25, "max_foreign": 0.3, "retries": 2, "io_wait": 15.0, "io_threshold": 0.02}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _io_stall_us() -> typing.Optional[int]:
    """Microseconds in which some task waited for I/O since boot (Linux PSI), or None without PSI."""
    try:
        with open("/proc/pressure/io") as fh:
            return int(fh.readline().rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def io_stalled(window: float = 0.3) -> typing.Optional[float]:
    """Share of *window* (0..1) in which some task waited for I/O; nothing of ours runs meanwhile."""
    before = _io_stall_us()
    if before is None:
        return None
    time.sleep(window)
    after = _io_stall_us()
    return None if after is None else min(1.0, (after - before) / (window * 1e6))


def wait_for_io_quiet() -> typing.Optional[float]:
    """Wait (up to 15 s) until tasks waited for I/O in under 2 % of a window; the last share seen."""
    deadline = time.monotonic() + QUIET["io_wait"]
    stall = io_stalled()
    while stall is not None and stall > QUIET["io_threshold"] and time.monotonic() < deadline:
        stall = io_stalled(1.0)
    return stall


def wait_for_quiet() -> typing.Optional[float]:
    """Background CPU share before a sample, after waiting for the file system to settle.

    Deleting a large work directory keeps the disk busy (discards, journal) for
    seconds afterwards, and file-system latency then multiplies the store's
    fixed costs. Before each sample this waits, up to 15 s, until tasks waited
    for I/O in under 2 % of a 0.3 s window (Linux PSI). With ``--wait-quiet S``
    it also waits up to S s for other processes' CPU use to drop below 25 %.
    """
    wait_for_io_quiet()
    busy = background_busy()
    deadline = time.monotonic() + QUIET["wait"]
    while busy is not None and busy > QUIET["threshold"] and time.monotonic() < deadline:
        time.sleep(2)
        busy = background_busy(1.0)
    return busy


class ForeignMeter:
    """CPU that processes other than ours used while a sample ran, as a share of the machine (0..1).

    Machine-wide busy time comes from /proc/stat; ours is this process plus every descendant it has
    waited for (``getrusage``). Processes that detach from our tree (RADICAL-Pilot agents) count as foreign.
    """

    def __enter__(self):
        self.t0 = time.monotonic()
        self.ours0 = self._ours()
        try:
            self.cpu0 = _cpu_times()
        except (OSError, ValueError, IndexError):
            self.cpu0 = None
        return self

    @staticmethod
    def _ours() -> float:
        import resource

        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.t0
        self.share = None
        if self.cpu0 is None or elapsed <= 0:
            return False
        try:
            total1, idle1 = _cpu_times()
        except (OSError, ValueError, IndexError):
            return False
        busy = ((total1 - self.cpu0[0]) - (idle1 - self.cpu0[1])) / CLK_TCK
        foreign = max(0.0, busy - (self._ours() - self.ours0))
        self.share = min(1.0, foreign / (elapsed * NCPU))
        return False


def alternate(workload: str, impls: list, reps: int, *, retry_foreign: bool = True) -> None:
    """Run the available *impls* in turn, *reps* rounds: A, B, C, A, B, C, ...

    A sample during which other processes used more than ``--max-foreign`` of the machine is run
    again (up to ``--retries`` times; the last try is kept either way, with its foreign share).
    """
    for rep in range(reps):
        for impl in impls:
            if impl.unavailable or impl.error:
                continue
            for attempt in range(QUIET["retries"] + 1):
                before = wait_for_quiet()
                try:
                    with ForeignMeter() as meter:
                        value, details = impl.sample(rep)
                except BenchError as error:
                    impl.error = str(error)
                    log(f"{workload} {impl.key}: {impl.error}")
                    break
                foreign = meter.share
                shown = "?" if foreign is None else f"{100 * foreign:.0f}%"
                noisy = foreign is not None and foreign > QUIET["max_foreign"]
                if retry_foreign and noisy and attempt < QUIET["retries"]:
                    log(
                        f"{workload} rep {rep + 1}/{reps} {impl.key}: {value:.4g} {impl.unit} discarded: other "
                        f"processes used {shown} of the machine meanwhile; again"
                    )
                    continue
                impl.values.append(value)
                impl.details.append({**details, "foreign_cpu": foreign, "background_before": before})
                impl.background.append(foreign)
                log(
                    f"{workload} rep {rep + 1}/{reps} {impl.key}: {value:.4g} {impl.unit} "
                    f"(other processes: {shown} of the machine)"
                )
                break


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


# ---- generated workflow scripts -----------------------------------------------------------------------------
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


# ---- workloads ---------------------------------------------------------------------------------------------------------
class Workload:
    key = ""
    title = ""

    def __init__(self, args, scratch: Scratch):
        self.args = args
        self.scratch = scratch
        self.sizes = SIZES["smoke" if args.smoke else "full"]
        self.reps = args.repeat
        self.impls: list = []
        self.rows: list = []  # for the table
        self.checks: list = []  # targets
        self.extra: dict = {}

    def run(self) -> None:
        alternate(self.key, self.impls, self.reps)
        self.summarize()

    def summarize(self) -> None:
        raise NotImplementedError

    def impl(self, key: str) -> Impl:
        return next(i for i in self.impls if i.key == key)

    # Row helpers
    def row(
        self,
        what: str,
        median,
        unit: str,
        *,
        status="ok",
        ratio=None,
        target=None,
        holds=None,
        samples=None,
        impl: typing.Optional[Impl] = None,
    ):
        shares = [b for b in (impl.background if impl else []) if b is not None]
        self.rows.append(
            {
                "what": what,
                "median": median,
                "unit": unit,
                "status": status,
                "ratio": ratio,
                "target": target,
                "holds": holds,
                "samples": samples,
                "foreign_cpu": statistics.median(shares) if shares else None,
            }
        )

    def check(self, name: str, value, target: str, holds: typing.Optional[bool], note: str = ""):
        self.checks.append({"name": name, "value": value, "target": target, "holds": holds, "note": note})

    def throughput_rows(self, headline: Impl, baselines: list) -> None:
        """Rows for baselines with targets ``scalems ÷ baseline >= factor``; factor None = for information."""
        h = headline.median
        for impl, factor in baselines:
            m = impl.median
            ratio = h / m if (h is not None and m) else None
            target = f"≥ {factor:g}×" if factor is not None else None
            holds = (ratio >= factor) if (ratio is not None and factor is not None) else None
            self.row(
                impl.label,
                m,
                impl.unit,
                status=impl.status,
                ratio=ratio,
                target=target,
                holds=holds,
                samples=impl.values,
                impl=impl,
            )
            if factor is not None:
                self.check(
                    f"{headline.label} ÷ {impl.label}",
                    ratio,
                    target,
                    holds,
                    "" if impl.status == "ok" else impl.status,
                )

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "medians": {i.key: i.median for i in self.impls if i.median is not None},
            "status": {i.key: i.status for i in self.impls},
            "samples": {i.key: i.values for i in self.impls},
            "details": {i.key: i.details for i in self.impls},
            "foreign_cpu": {i.key: i.background for i in self.impls},
            "rows": self.rows,
            "checks": self.checks,
            **self.extra,
        }


def per_s(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


class W1(Workload):
    key, title = "W1", "executables: N × /bin/true, 2 cores"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        n = self.n = self.sizes["W1"]
        self.title = f"executables: {n} × /bin/true, 2 cores"

        def cmd(rep):
            marks = scalems_command(self.scratch, "scalems.local", "executables", n, ["--cores", "2"])
            return per_s(n, marks["run"]), {**marks, "wall_rate": per_s(n, marks["wall"])}

        def inproc(rep):
            r = measure("scalems-exe", n, self.scratch.fresh("w1-inproc"))
            return per_s(n, r["seconds"]), r

        def simple(kind):
            def sample(rep):
                r = measure(kind, n)
                return per_s(n, r["seconds"]), r

            return sample

        self.impls = [
            Impl(
                "scalems",
                "scalems: python -m scalems.local --cores 2 (manager start → all done)",
                "tasks/s",
                cmd,
            ),
            Impl(
                "scalems_inprocess", "scalems: in-process scalems.local.workflow(cores=2)", "tasks/s", inproc
            ),
            Impl(
                "asyncio",
                "raw asyncio.create_subprocess_exec, semaphore(2)",
                "tasks/s",
                simple("asyncio-exe"),
            ),
            Impl(
                "asyncio_pidfd",
                "raw asyncio + PidfdChildWatcher (for information)",
                "tasks/s",
                simple("asyncio-pidfd-exe"),
            ),
            Impl("parsl", "Parsl HTEX bash_app (warm)", "tasks/s", simple("parsl-exe"), have("parsl")),
            Impl(
                "dask",
                "Dask LocalCluster client.submit(subprocess.run) (warm)",
                "tasks/s",
                simple("dask-exe"),
                have("distributed"),
            ),
        ]

    def summarize(self):
        head = self.impl("scalems")
        self.row(head.label, head.median, "tasks/s", status=head.status, samples=head.values, impl=head)
        wall = [n_ for n_ in (d.get("wall_rate") for d in head.details) if n_]
        self.row(
            "scalems: same command, whole-command wall time (interpreter start → exit)",
            statistics.median(wall) if wall and not head.error else None,
            "tasks/s",
            status=head.status,
            samples=wall,
            impl=head,
        )
        inproc = self.impl("scalems_inprocess")
        self.row(
            inproc.label, inproc.median, "tasks/s", status=inproc.status, samples=inproc.values, impl=inproc
        )
        self.throughput_rows(
            head,
            [
                (self.impl("asyncio"), 0.7),
                (self.impl("asyncio_pidfd"), None),
                (self.impl("parsl"), 2.0),
                (self.impl("dask"), 2.0),
            ],
        )


class W2(Workload):
    key = "W2"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        n = self.n = self.sizes["W2"]
        self.title = f"function calls: {n} × noop(i), 2 workers"

        def scalems_fn(rep):
            r = measure("scalems-fn", n, self.scratch.fresh("w2-scalems"))
            return per_s(n, r["seconds"]), r

        def simple(kind):
            def sample(rep):
                r = measure(kind, n)
                return per_s(n, r["seconds"]), r

            return sample

        def scalems_main(rep):
            marks = scalems_command(self.scratch, "scalems.local", "main_functions", n, ["--cores", "2"])
            return per_s(n, marks["run"]), marks

        self.impls = [
            Impl(
                "scalems",
                "scalems: scalems.submit in scalems.local.workflow(cores=2) (manager start → all done)",
                "tasks/s",
                scalems_fn,
            ),
            Impl(
                "scalems_main",
                "scalems: python -m scalems.local, noop defined in the script (__main__; for information)",
                "tasks/s",
                scalems_main,
            ),
            Impl("ppe", "ProcessPoolExecutor(2).submit (warm pool)", "tasks/s", simple("ppe-fn")),
            Impl("parsl", "Parsl HTEX python_app (warm)", "tasks/s", simple("parsl-fn"), have("parsl")),
            Impl(
                "dask",
                "Dask LocalCluster client.map (warm)",
                "tasks/s",
                simple("dask-fn"),
                have("distributed"),
            ),
        ]

    def summarize(self):
        head = self.impl("scalems")
        self.row(head.label, head.median, "tasks/s", status=head.status, samples=head.values, impl=head)
        main = self.impl("scalems_main")
        self.row(main.label, main.median, "tasks/s", status=main.status, samples=main.values, impl=main)
        self.throughput_rows(
            head, [(self.impl("ppe"), 0.5), (self.impl("parsl"), 4.0), (self.impl("dask"), 4.0)]
        )


class W3(Workload):
    key = "W3"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        n = self.n = self.sizes["W3"]
        # A re-run lasts about 0.1 s, and consecutive ones on an idle machine spread from 0.09 to
        # 0.14 s: 5 pairs for the median, as for W5 (a pair takes about 3 s).
        self.reps = args.repeat if args.smoke else max(args.repeat, 5)
        self.title = f"cached re-run: the W2 workflow ({n} function tasks) again in the same work dir"
        self.first_runs: list = []

        # One sample = a first run and its re-run, each a fresh process, in the same (fresh) work dir.
        def first_and_rerun(rep):
            workdir = self.scratch.fresh("w3")
            first = measure("scalems-tally", n, workdir)
            wait_for_io_quiet()  # a user re-runs later, not while the first run's writes are settling
            rerun = measure("scalems-rerun", n, workdir)
            if rerun["counts"].get("done") != n:
                raise BenchError(f"re-run finished {rerun['counts']} instead of {n} done")
            self.first_runs.append(first["seconds"])
            return rerun["seconds"], {"first": first, "rerun": rerun}

        self.impls = [Impl("scalems_rerun", "scalems: re-run (all cached)", "s", first_and_rerun)]

    def summarize(self):
        impl = self.impls[0]
        if impl.error or not impl.values:
            self.row(impl.label, None, "s", status=impl.status)
            self.check("first run ÷ re-run", None, "≥ 10×", None, impl.status)
            return
        first = statistics.median(self.first_runs)
        rerun = impl.median
        speedup = first / rerun
        self.row("scalems: first run (tally workflow)", first, "s", samples=self.first_runs, impl=impl)
        self.row(
            impl.label,
            rerun,
            "s",
            ratio=speedup,
            target="first ÷ re-run ≥ 10×",
            holds=speedup >= 10,
            samples=impl.values,
            impl=impl,
        )
        procs = [d["rerun"]["processes_started"] for d in impl.details]
        calls = [d["rerun"]["function_calls"] for d in impl.details]
        cached = [d["rerun"]["from_cache_all"] for d in impl.details]
        self.check("first run ÷ re-run time", speedup, "≥ 10×", speedup >= 10)
        self.check("processes started by the re-run", max(procs), "0", max(procs) == 0)
        self.check("function executions during the re-run (counter file)", max(calls), "0", max(calls) == 0)
        self.check("task.from_cache for every task", all(cached), "true", all(cached))
        self.row(
            "re-run: processes started / function executions / all from_cache",
            None,
            "",
            status=f"{max(procs)} / {max(calls)} / {all(cached)}",
            target="0 / 0 / True",
            holds=max(procs) == 0 and max(calls) == 0 and all(cached),
        )
        self.extra["speedup"] = speedup


class W4(Workload):
    key = "W4"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        small, large = self.small, self.large = self.sizes["W4"]
        self.title = f"scale: {large:,} vs {small:,} noop function tasks, each in a fresh process"

        def make(n):
            def sample(rep):
                r = measure("scalems-fn", n, self.scratch.fresh(f"w4-{n}"), timeout=1800)
                return r["seconds"] / n, r

            return sample

        self.impls = [
            Impl("scalems_small", f"scalems: {small:,} tasks, time per task", "s", make(small)),
            Impl("scalems_large", f"scalems: {large:,} tasks, time per task", "s", make(large)),
        ]

    def summarize(self):
        small, large = self.impls
        for impl in (small, large):
            self.row(impl.label, impl.median, "s/task", status=impl.status, samples=impl.values, impl=impl)
        if small.median is None or large.median is None:
            self.check(
                "time per task, large ÷ small", None, "≤ 1.3×", None, small.status + "; " + large.status
            )
            self.check("peak RSS growth per task", None, "≤ 4 KiB", None, "")
            return
        ratio = large.median / small.median
        rss_small = small.detail_median("vmhwm_kib") or small.detail_median("ru_maxrss_kib")
        rss_large = large.detail_median("vmhwm_kib") or large.detail_median("ru_maxrss_kib")
        slope = (rss_large - rss_small) * 1024 / (self.large - self.small)
        self.rows[-1].update(
            ratio=ratio, target="≤ 1.3× the per-task time at the small size", holds=ratio <= 1.3
        )
        self.row(
            f"peak RSS (VmHWM) at {self.small:,} / {self.large:,} tasks",
            None,
            "",
            status=f"{rss_small / 1024:.1f} MiB / {rss_large / 1024:.1f} MiB",
        )
        self.row(
            "peak RSS growth per task (slope)",
            slope,
            "bytes/task",
            ratio=None,
            target="≤ 4096 bytes/task",
            holds=slope <= 4096,
        )
        self.check(f"time per task at {self.large:,} ÷ at {self.small:,}", ratio, "≤ 1.3×", ratio <= 1.3)
        self.check("peak RSS growth per task (bytes)", slope, "≤ 4096", slope <= 4096)
        completed = all(d["counts"].get("done") == self.large for d in large.details)
        self.check(f"{self.large:,}-task workflow completes", completed, "true", completed)
        self.extra.update(
            time_ratio=ratio, rss_slope_bytes_per_task=slope, rss_kib={"small": rss_small, "large": rss_large}
        )


class W5(Workload):
    key = "W5"
    title = "start-up: one-task workflow (echo) via python -m scalems.local vs python3 -c pass"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        # A sample takes about 0.3 s, and single runs on this kind of VM spread by ±30 %: 9 triples
        # keep one slow run from moving the median (with 5, one slow run moved it in a session-4 run).
        self.reps = args.repeat if args.smoke else max(args.repeat, 9)

        def bare(rep):
            wall, _, _ = run_command([PY, "-c", "pass"], timeout=60)
            return wall, {}

        def floor(rep):
            # What any asyncio-based tool pays before doing anything (the dispatcher is an asyncio loop).
            wall, _, _ = run_command([PY, "-c", "import asyncio, sqlite3"], timeout=60)
            return wall, {}

        def one_task(rep):
            marks = scalems_command(self.scratch, "scalems.local", "echo", 1, ["--cores", "2"], timeout=120)
            return marks["wall"], marks

        self.impls = [
            Impl("python", "python3 -c pass (same interpreter), wall", "s", bare),
            Impl("floor", "python3 -c 'import asyncio, sqlite3' (the standard-library floor; for information)", "s", floor),
            Impl("scalems", "python -m scalems.local: one echo task, wall", "s", one_task),
        ]

    def summarize(self):
        bare, floor, scalems_ = self.impls
        ratio = scalems_.median / bare.median if (scalems_.median and bare.median) else None
        self.row(bare.label, bare.median, "s", status=bare.status, samples=bare.values, impl=bare)
        floor_ratio = floor.median / bare.median if (floor.median and bare.median) else None
        self.row(floor.label, floor.median, "s", status=floor.status, ratio=floor_ratio, samples=floor.values, impl=floor)
        self.row(
            scalems_.label,
            scalems_.median,
            "s",
            status=scalems_.status,
            ratio=ratio,
            target="≤ 8× python -c pass",
            holds=None if ratio is None else ratio <= 8,
            samples=scalems_.values,
            impl=scalems_,
        )
        self.check(
            "one-task workflow ÷ python -c pass (wall)", ratio, "≤ 8×", None if ratio is None else ratio <= 8
        )
        self.extra["importtime"] = {mod: importtime(mod) for mod in ("scalems", "scalems.local")}


def importtime(module: str, top: int = 10) -> dict:
    """``python -X importtime -c "import MODULE"``: total and the *top* entries by cumulative µs."""
    run_command([PY, "-c", f"import {module}"], timeout=60)  # byte-compile first
    _, _, err = run_command([PY, "-X", "importtime", "-c", f"import {module}"], timeout=60)
    entries = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        entries.append({"module": name.strip(), "self_us": int(self_us), "cumulative_us": int(cumulative_us)})
    total = next((e["cumulative_us"] for e in entries if e["module"] == module), None)
    return {"total_us": total, "top": sorted(entries, key=lambda e: -e["cumulative_us"])[:top]}


# ---- W6: RADICAL-Pilot -------------------------------------------------------------------------------------------------
def rp_confined_env(root: pathlib.Path) -> dict:
    for name in ("home", "radical", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return child_env(
        {
            "HOME": str(root / "home"),
            "RADICAL_BASE": str(root / "radical"),
            "TMPDIR": str(root / "tmp"),
            "RADICAL_REPORT": "FALSE",
        }
    )


def kill_strays(root: pathlib.Path) -> int:
    """SIGKILL processes that RP left behind for this confined *root* (found by their environment); return the count."""
    marker = f"RADICAL_BASE={root / 'radical'}".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            os.kill(int(entry), signal.SIGKILL)
            killed += 1
        except (OSError, ProcessLookupError):
            continue
    return killed


SHM = pathlib.Path("/dev/shm")


def mpich_segments() -> set:
    """Names of MPICH shared-memory segments this user owns in /dev/shm.

    RP's pilot shutdown sometimes kills a Raptor worker's MPI ranks before they
    finalize, and the segment stays behind; W6 removes the ones that appear while it runs.
    """
    try:
        return {p.name for p in SHM.glob("mpich_shm_*") if p.stat().st_uid == os.getuid()}
    except OSError:
        return set()


class W6(Workload):
    key = "W6"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        # Whole RP runs vary by ±15 % from run to run (pilot start-up, agent scheduling), on both
        # sides: a median of 5 alternating samples is needed for a 1.15 target to mean something.
        self.reps = args.repeat if args.smoke else max(args.repeat, 5)
        n_exe, n_fn = self.n_exe, self.n_fn = self.sizes["W6_exe"], self.sizes["W6_raptor"]
        self.title = (
            f"RADICAL-Pilot on local.localhost: {n_exe} executables (wall); {n_fn} Raptor function tasks"
        )
        self.strays = 0
        rp_missing = have("radical.pilot")
        scalems_missing = rp_missing or self._scalems_radical_problem()

        def plain_rp(mode: str, n: int) -> dict:
            """One run of bench/rp_plain.py in a fresh confined directory: its result and wall time."""
            root = self.scratch.fresh(f"rp-plain-{mode}")
            try:
                wall, out, _ = run_command(
                    [PY, str(RP_PLAIN), mode, str(n), str(root / "sandbox")],
                    timeout=900,
                    env=rp_confined_env(root),
                    cwd=root,
                )
            finally:
                self.strays += kill_strays(root)
            return {**parse_result(out), "wall": wall}

        def scalems_rp(workflow: str, n: int, extra: list) -> dict:
            """One ``python -m scalems.radical`` run in a fresh confined directory: its time marks."""
            root = self.scratch.fresh(f"rp-scalems-{workflow}")
            env = rp_confined_env(root)
            try:
                return scalems_command(
                    self.scratch,
                    "scalems.radical",
                    workflow,
                    n,
                    [*self._scalems_options(root), *extra],
                    timeout=900,
                    env_extra={k: env[k] for k in ("HOME", "RADICAL_BASE", "TMPDIR", "RADICAL_REPORT")},
                    cwd=root,
                )
            finally:
                self.strays += kill_strays(root)

        def plain_exe(rep):
            r = plain_rp("exe", n_exe)
            return r["wall"], r

        def plain_raptor(rep):
            r = plain_rp("raptor", n_fn)
            return per_s(n_fn, r["seconds"]), r

        def scalems_exe(rep):
            marks = scalems_rp("executables", n_exe, [])
            return marks["wall"], marks

        def scalems_raptor(rep):
            marks = scalems_rp("functions", n_fn, ["--enable-raptor"])
            return per_s(n_fn, marks["t1"] - marks["t0"]), marks

        self.impls = [
            Impl(
                "rp_exe",
                f"plain RP script: {n_exe} executables (session → close), wall",
                "s",
                plain_exe,
                rp_missing,
            ),
            Impl(
                "scalems_exe",
                f"python -m scalems.radical: {n_exe} executables, wall",
                "s",
                scalems_exe,
                scalems_missing,
            ),
            Impl(
                "rp_raptor",
                f"plain RP Raptor MPIWorker: {n_fn} TASK_FUNCTION tasks (warm)",
                "tasks/s",
                plain_raptor,
                rp_missing,
            ),
            Impl(
                "scalems_raptor",
                f"python -m scalems.radical --enable-raptor: {n_fn} function tasks (warm)",
                "tasks/s",
                scalems_raptor,
                scalems_missing,
            ),
        ]

    def _scalems_radical_problem(self) -> typing.Optional[str]:
        try:
            _, out, _ = run_command(
                [PY, "-m", "scalems.radical", "--help"],
                timeout=120,
                env=rp_confined_env(self.scratch.fresh("rp-help")),
            )
        except BenchError as error:
            return f"not available: python -m scalems.radical --help failed ({error})"
        self._help = out
        return None

    def _scalems_options(self, root: pathlib.Path) -> list:
        """``--resource local.localhost``, and the plain script's pilot settings where the command takes them."""
        text = getattr(self, "_help", "")
        options = ["--resource", "local.localhost"]
        if "--pilot-option" in text:
            for setting in ("runtime=10", "cores=2", f"sandbox={root / 'sandbox'}"):
                options += ["--pilot-option", setting]
        else:
            for flag in ("--pilot-runtime", "--runtime"):
                if flag in text:
                    options += [flag, "10"]
                    break
        return options

    def run(self):
        segments = mpich_segments()
        try:
            # RP agents detach from our process tree, so their CPU looks foreign: no retries here.
            alternate(self.key, self.impls, self.reps, retry_foreign=False)
            self.summarize()
        finally:
            if self.strays:
                log(f"W6: killed {self.strays} process(es) RP left behind in the scratch directory")
            self.extra["stray_processes_killed"] = self.strays
            left = mpich_segments() - segments
            for name in left:
                try:
                    (SHM / name).unlink()
                except OSError:
                    pass
            if left:
                log(f"W6: removed {len(left)} MPICH shared-memory segment(s) that RP runs left in {SHM}")
            self.extra["mpich_segments_removed"] = len(left)

    def summarize(self):
        rp_exe, sc_exe, rp_raptor, sc_raptor = self.impls
        ratio = sc_exe.median / rp_exe.median if (sc_exe.median and rp_exe.median) else None
        self.row(rp_exe.label, rp_exe.median, "s", status=rp_exe.status, samples=rp_exe.values, impl=rp_exe)
        self.row(
            sc_exe.label,
            sc_exe.median,
            "s",
            status=self._na(sc_exe),
            ratio=ratio,
            target="≤ 1.15× plain RP",
            holds=None if ratio is None else ratio <= 1.15,
            samples=sc_exe.values,
            impl=sc_exe,
        )
        self.check(
            "scalems.radical ÷ plain RP wall (executables)",
            ratio,
            "≤ 1.15×",
            None if ratio is None else ratio <= 1.15,
            self._na(sc_exe),
        )
        tratio = sc_raptor.median / rp_raptor.median if (sc_raptor.median and rp_raptor.median) else None
        self.row(
            rp_raptor.label,
            rp_raptor.median,
            "tasks/s",
            status=rp_raptor.status,
            samples=rp_raptor.values,
            impl=rp_raptor,
        )
        self.row(
            sc_raptor.label,
            sc_raptor.median,
            "tasks/s",
            status=self._na(sc_raptor),
            ratio=tratio,
            target="≥ 0.8× plain Raptor",
            holds=None if tratio is None else tratio >= 0.8,
            samples=sc_raptor.values,
            impl=sc_raptor,
        )
        self.check(
            "scalems.radical Raptor ÷ plain Raptor throughput",
            tratio,
            "≥ 0.8×",
            None if tratio is None else tratio >= 0.8,
            self._na(sc_raptor),
        )

    @staticmethod
    def _na(impl: Impl) -> str:
        if impl.status == "ok" or impl.status.startswith("not "):
            return impl.status
        return "not available: " + impl.status

    def check(self, name, value, target, holds, note=""):
        super().check(name, value, target, holds, "" if note == "ok" else note)


WORKLOADS = {"W1": W1, "W2": W2, "W3": W3, "W4": W4, "W5": W5, "W6": W6}


# ---- machine description and output ------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": PY,
        "packages": {
            d: version(d)
            for d in (
                "scalems",
                "dill",
                "parsl",
                "dask",
                "distributed",
                "radical.pilot",
                "radical.utils",
                "mpi4py",
            )
        },
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }


def fmt_value(value, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "tasks/s":
        return f"{value:,.0f} tasks/s" if value >= 100 else f"{value:.1f} tasks/s"
    if unit == "s/task":
        return f"{value * 1e6:,.0f} µs/task"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "bytes/task":
        return f"{value:,.0f} B/task"
    return f"{value:.4g} {unit}".strip()


def fmt_holds(holds) -> str:
    return {True: "yes", False: "**NO**", None: "—"}[holds]


def table(workloads: list) -> str:
    lines = [
        "| workload | measurement | median | ratio | target | holds? | others' CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in workloads:
        for i, row in enumerate(w.rows):
            median = fmt_value(row["median"], row["unit"])
            if row["status"] != "ok":
                median = row["status"] if row["median"] is None else f"{median} ({row['status']})"
            ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}"
            foreign = "" if row.get("foreign_cpu") is None else f"{100 * row['foreign_cpu']:.0f} %"
            lines.append(
                f"| {w.key if i == 0 else ''} | {row['what']} | {median} | {ratio} | {row['target'] or ''} | "
                f"{fmt_holds(row['holds']) if row['target'] else ''} | {foreign} |"
            )
    return "\n".join(lines)


def targets_summary(workloads: list) -> str:
    lines = []
    for w in workloads:
        for c in w.checks:
            value = c["value"]
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            note = f" ({c['note']})" if c["note"] else ""
            lines.append(
                f"- {w.key} {c['name']}: {shown} — target {c['target']} — {fmt_holds(c['holds'])}{note}"
            )
    return "\n".join(lines)


CONFIG_TEXT = """\
- Every sample is a fresh process; the systems are run in turn (A, B, C, A, B, C, …) and the medians are shown.
  A sample during which processes outside the bench used more than the `--max-foreign` share of the machine
  (machine-wide busy time from /proc/stat minus the bench's own `getrusage`, children included; the Parsl and
  Dask measurement processes adopt their detached workers so those count as the bench's) is run again, up to
  `--retries` times (not in W6, whose RP agents detach).
- **scalems** W1 headline: `python -m scalems.local --cores 2 --work-dir <fresh dir> script.py`, timed inside the
  script from the moment it is loaded (just before the workflow manager starts) to interpreter exit (after the
  manager has finished every task and closed). The whole-command wall time (interpreter start to exit) is shown too.
  Executables get distinct argv (`/bin/true i`), otherwise they would be one task.
- **scalems** W2/W4: `with scalems.local.workflow(directory=<fresh>, cores=2, progress=False)` around
  `scalems.submit(noop, i)`, timed from entering the `with` (manager start; warm workers are started lazily by
  the first call, so their start-up is *included*) to leaving it (all done, store flushed).
- **scalems** W2 also shows, for information, the same 10,000 calls from a `python -m scalems.local` script
  whose `noop` is defined in the script itself (`__main__`, shipped by value with dill), timed like W1.
- **ProcessPoolExecutor(2)**: warm — the pool is started and has run 4 calls before the clock starts.
- **Parsl**: `Config(executors=[HighThroughputExecutor(max_workers_per_node=2, encrypted=False,
  provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))], strategy_period=0.2)`, venv `bin/` on PATH;
  warm — one task has returned before the clock starts; `bash_app` returning `"/bin/true"` / `python_app(noop)`.
- **Dask**: `LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)` + `Client`;
  warm — both workers have run a task; `client.submit(run_true, i)` (`subprocess.run(["/bin/true"])`) /
  `client.map(noop, range(n))`.
- **raw asyncio**: `asyncio.create_subprocess_exec("/bin/true")` under `asyncio.Semaphore(2)`, default child
  watcher (the pidfd watcher row is for information only).
- **W3**: a first run of `tally(i, counter_file)` tasks (each call appends one byte to the counter file), then a
  re-run of the same workflow in the same work dir in a new process; the re-run must not change the counter file,
  must start no process (`subprocess.Popen` and `os.fork` are counted in the re-running process) and must report
  `task.from_cache` for every task.
- **W4**: each size in its own fresh process; peak RSS is that process's `VmHWM` (`ru_maxrss` as fallback); the
  workers' memory is not included. Slope = (RSS(large) − RSS(small)) ÷ (large − small).
- All processes run with bytecode caching on (`PYTHONDONTWRITEBYTECODE` is removed from their environment).
- **W5**: wall times of `python -c pass` and `python -m scalems.local --cores 2 --work-dir <fresh> echo.py` with
  the same interpreter, alternating; also `python -c "import asyncio, sqlite3"`, the standard-library modules any
  asyncio- and SQLite-based runner imports, to show how much of the ratio is the floor.
- **W6** (opt-in): RP confined to a scratch dir (`HOME`, `RADICAL_BASE`, `TMPDIR`; pilot `sandbox`,
  `runtime=10`, `cores=2`, `local.localhost`). Plain-RP script: bench/rp_plain.py. Raptor: one master and one
  `MPIWorker` (1 rank), function tasks `rp.PythonTask(noop, [i], {})`; throughput timed after one warm-up task.
"""


def background_text(info: dict) -> str:
    b = info.get("background_busy")
    if not b:
        return "not measured"
    text = (
        f"median {100 * b['median']:.0f} %, max {100 * b['max']:.0f} % of the machine (W1–W5 samples; a sample "
        f"above {100 * QUIET['max_foreign']:.0f} % was run again, up to {QUIET['retries']} times)"
    )
    if b["median"] > 0.1:
        text += (
            " — **the machine was shared with other work; absolute figures are depressed, ratios less so**"
        )
    return text


def write_results_md(path: pathlib.Path, info: dict, workloads: list, args, elapsed: float) -> None:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    parts = [
        "# scalems benchmark results",
        "",
        f"Generated by `python bench/run.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` on {info['date']} "
        f"in {elapsed / 60:.1f} min ({args.repeat} repetitions per system, 5 for W3 and W6, 9 for W5; medians). Regenerate with the same command; "
        "`bash bench/setup.sh` installs the optional peers (Parsl, Dask).",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}; {info['cores']} cores; {info['memory_gib']} GiB memory; Linux {info['kernel']}",
        f"- Python {info['python']} ({info['python_executable']})",
        f"- Packages: {pkgs}",
        f"- Load average at start / end: {', '.join(f'{x:.2f}' for x in info['loadavg_start'])} / "
        f"{', '.join(f'{x:.2f}' for x in info['loadavg_end'])}",
        f"- CPU used by other processes while the samples ran: {background_text(info)}",
        "- Before each sample (and between W3's first run and its re-run) the bench waits, up to 15 s, for "
        "the file system to settle: tasks waiting for I/O in under 2 % of a 0.3 s window (Linux PSI)",
        "",
        "## Results",
        "",
        "ratio = scalems ÷ baseline throughput (W1, W2, W6 Raptor), or the time ratio named in the target column. "
        "\"others' CPU\" = median share of the machine that processes outside the bench used while that row's "
        "samples ran (for W6 it includes RP's detached agents, so it is no disturbance measure there).",
        "",
        table(workloads),
        "",
        "## Targets",
        "",
        targets_summary(workloads),
        "",
    ]
    missing = [key for key in ALL_WORKLOADS if key not in {w.key for w in workloads}]
    if missing:
        parts += [
            f"Not run in this invocation: {', '.join(missing)}"
            + (" (W6 is opt-in: `--only W6` or `--with-radical`)." if "W6" in missing else "."),
            "",
        ]
    w5 = next((w for w in workloads if w.key == "W5"), None)
    if w5 is not None and "importtime" in w5.extra:
        parts += ['## Import time (`python -X importtime -c "import MODULE"`, 10 largest cumulative)', ""]
        for module, data in w5.extra["importtime"].items():
            parts.append(
                f"`import {module}`: {data['total_us'] / 1000 if data['total_us'] else float('nan'):.1f} ms in total"
            )
            parts += ["", "| module | cumulative µs | self µs |", "|---|---|---|"]
            parts += [f"| {e['module']} | {e['cumulative_us']:,} | {e['self_us']:,} |" for e in data["top"]]
            parts.append("")
    parts += ["## How each system is measured", "", CONFIG_TEXT]
    path.write_text("\n".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1 repetition, tiny sizes, no W6; does not write RESULTS.md"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions per system (default 3; smoke: 1)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated workloads, e.g. W1,W2 (W6 only when named here or with --with-radical)",
    )
    parser.add_argument(
        "--with-radical", action="store_true", help="also run W6 (RADICAL-Pilot; several minutes)"
    )
    parser.add_argument(
        "--json", default=str(BENCH / "results.json"), help="where to write the results (JSON)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not regenerate bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.3,
        metavar="SHARE",
        help="run a sample again if other processes used more than SHARE (0..1) of the machine meanwhile "
        "(default 0.3; see --retries)",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="re-runs of a disturbed sample (default 2; smoke: 0)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each sample, wait up to S seconds until other processes use < 25%% of the CPU",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.only:
        selected = [w.strip().upper() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in selected if w not in ALL_WORKLOADS]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(ALL_WORKLOADS)}")
    else:
        selected = [w for w in ALL_WORKLOADS if w != "W6" or args.with_radical]
    if args.smoke and "W6" in selected:
        log("W6 (RADICAL-Pilot) is skipped in --smoke")
        selected.remove("W6")

    if args.retries is None:
        args.retries = 0 if args.smoke else 2
    QUIET.update(wait=args.wait_quiet, max_foreign=args.max_foreign, retries=max(0, args.retries))
    info = machine()
    t_start = time.perf_counter()
    root = pathlib.Path(tempfile.mkdtemp(prefix="scalems-bench-"))
    scratch = Scratch(root)
    log(f"workloads {','.join(selected)}; {args.repeat} repetition(s); scratch {root}")
    done = []
    try:
        for key in selected:
            workload = WORKLOADS[key](args, scratch)
            log(f"{key}: {workload.title}")
            workload.run()
            done.append(workload)
    finally:
        if args.keep:
            log(f"scratch kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = elapsed
    busy = [b for w in done if w.key != "W6" for i in w.impls for b in i.background if b is not None]
    info["background_busy"] = {"median": statistics.median(busy), "max": max(busy)} if busy else None

    print()
    print(table(done))
    print()
    print(targets_summary(done))
    w5 = next((w for w in done if w.key == "W5"), None)
    if w5 is not None:
        for module, data in w5.extra["importtime"].items():
            top = ", ".join(f"{e['module']} {e['cumulative_us']:,}" for e in data["top"])
            print(f"\nimporttime `import {module}` (cumulative µs, 10 largest): {top}")
    print(f"\nbench took {elapsed / 60:.1f} min; background CPU: {background_text(info)}")

    result = {
        "machine": info,
        "smoke": args.smoke,
        "repeat": args.repeat,
        "sizes": SIZES["smoke" if args.smoke else "full"],
        "workloads": {w.key: w.to_json() for w in done},
    }
    json_path = pathlib.Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, default=str))
    log(f"wrote {json_path}")
    if not (args.smoke or args.no_write):
        write_results_md(BENCH / "RESULTS.md", info, done, args, elapsed)
        log(f"wrote {BENCH / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
