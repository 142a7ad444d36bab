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
import json
import os
import pathlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
import typing

# bench/ is on sys.path when this file runs as a script; make sure of it however it is started.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness.common import (  # noqa: E402
    ALL_WORKLOADS,
    BENCH,
    PY,
    RP_PLAIN,
    SIZES,
    BenchError,
    child_env,
    have,
    log,
    measure,
    parse_result,
    run_command,
)
from harness.report import background_text, machine, table, targets_summary, write_results_md  # noqa: E402
from harness.sampling import QUIET, Impl, alternate, wait_for_io_quiet  # noqa: E402
from harness.scripts import Scratch, scalems_command  # noqa: E402


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
