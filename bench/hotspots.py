#!/usr/bin/env python3
"""Where scalems spends its time in W1 (executables), W2 (function calls) and W5 (start-up).

    python bench/hotspots.py [--n-exe 1000] [--n-fn 10000] [--top 25] [--out bench/PROFILE.md] [--no-py-spy]

cProfile profiles one thread at a time, and scalems runs its work on a
dispatcher thread, so this script profiles the caller's thread and the
dispatcher thread separately (it wraps ``WorkflowManager._run_loop`` from the
outside; nothing in src/ is changed). cProfile adds overhead per Python call,
so read the *shares*, not the absolute times. With py-spy installed
(bench/setup.sh) it also samples the whole process tree at native speed and
lists the functions that are on CPU most often (own time), per process.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pathlib
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
# Profile Python as installed by default, with cached bytecode (see child_env in bench/harness/common.py).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def cprofile_workload(kind: str, n: int, top: int) -> str:
    import scalems
    import scalems.local
    import scalems.workflow.manager as manager_module

    import benchfuncs

    dispatcher = cProfile.Profile()
    original = manager_module.WorkflowManager._run_loop

    def profiled_run_loop(self, ready):
        dispatcher.enable()
        try:
            original(self, ready)
        finally:
            dispatcher.disable()

    manager_module.WorkflowManager._run_loop = profiled_run_loop
    caller = cProfile.Profile()
    workdir = tempfile.mkdtemp(prefix="scalems-profile-")
    try:
        if kind == "rerun":
            # W3: the first run is not profiled; the profiled run below finds every result cached.
            manager_module.WorkflowManager._run_loop = original
            with scalems.local.workflow(directory=workdir, cores=2, progress=False):
                for i in range(n):
                    scalems.submit(benchfuncs.noop, i)
            manager_module.WorkflowManager._run_loop = profiled_run_loop
        t0 = time.perf_counter()
        caller.enable()
        with scalems.local.workflow(directory=workdir, cores=2, progress=False) as wf:
            for i in range(n):
                if kind == "exe":
                    scalems.executable(["/bin/true", str(i)])
                else:
                    scalems.submit(benchfuncs.noop, i)
        caller.disable()
        elapsed = time.perf_counter() - t0
    finally:
        manager_module.WorkflowManager._run_loop = original
        shutil.rmtree(workdir, ignore_errors=True)
    assert wf.counts["done"] == n, wf.counts
    out = [
        f"{n} tasks in {elapsed:.2f} s under cProfile ({n / elapsed:,.0f} tasks/s with profiling overhead)",
        "",
    ]
    for name, prof in (
        ("dispatcher thread (scalems-dispatcher)", dispatcher),
        ("caller thread (the workflow script)", caller),
    ):
        stream = io.StringIO()
        stats = pstats.Stats(prof, stream=stream)
        stats.sort_stats("cumulative").print_stats(top)
        text = stream.getvalue()
        # Keep the table, drop pstats' preamble lines about files.
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        total = stats.total_tt
        out += [f"### {name}: {total:.2f} s of profiled CPU", "", "```", body.rstrip(), "```", ""]
    return "\n".join(out)


def py_spy_workload(kind: str, n: int, top: int) -> str:
    """Sample ``bench/measure.py`` with py-spy (all threads, all subprocesses); top own-time frames per process."""
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.access(py_spy, os.X_OK):
        return "py-spy is not installed (run bench/setup.sh)."
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="scalems-pyspy-"))
    try:
        raw = scratch / "profile.txt"
        env = dict(os.environ, PYTHONPATH=str(BENCH))
        measurement = "scalems-exe" if kind == "exe" else "scalems-fn"
        proc = subprocess.run(
            [
                py_spy,
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--subprocesses",
                "--threads",
                "--output",
                str(raw),
                "--",
                sys.executable,
                str(BENCH / "measure.py"),
                measurement,
                str(n),
                str(scratch / "work"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        if proc.returncode != 0 or not raw.exists():
            return f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        result = next(
            (
                json.loads(line.split(" ", 1)[1])
                for line in proc.stdout.splitlines()
                if line.startswith("BENCH_RESULT ")
            ),
            {},
        )
        own = collections.defaultdict(collections.Counter)
        inclusive = collections.defaultdict(collections.Counter)
        totals = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            # Leading frames: 'process PID:"cmdline"' (nested for subprocesses), then 'thread (TID): NAME'.
            process, thread, k = "", "", 0
            while k < len(frames) and frames[k].startswith(("process ", "thread ")):
                if frames[k].startswith("process "):
                    process = frames[k]
                else:
                    thread = frames[k]
                k += 1
            code = frames[k:]
            if "scalems.local.worker_main" in process:
                who = "worker processes (scalems.local.worker_main)"
            elif "scalems-dispatcher" in thread or any("_run_loop" in f for f in code):
                who = "bench process: dispatcher thread"
            elif any("Record._flusher_main" in f for f in code):
                who = "bench process: store flush thread"
            else:
                who = "bench process: other threads (main)"
            c = int(count)
            totals[who] += c
            if code:
                own[who][_short(code[-1])] += c
                for frame in set(map(_short, code)):
                    inclusive[who][frame] += c
        rate = f"{n / result['seconds']:,.0f} tasks/s" if result.get("seconds") else "?"
        seconds = result.get("seconds")
        lines = [
            f"{n} tasks, {rate} while sampled ({seconds or 0:.2f} s from manager start to all done, "
            "including the process's imports in the samples). Only on-CPU samples are counted "
            "(250 Hz: 250 samples = 1 CPU second).",
            "",
        ]
        for who, total in totals.most_common():
            lines += [
                f"#### {who}: {total} samples = {total / 250:.2f} CPU s",
                "",
                "| own samples | % | frame |",
                "|---|---|---|",
            ]
            for frame, c in own[who].most_common(top):
                lines.append(f"| {c} | {100 * c / total:.1f} | `{frame}` |")
            lines += [
                "",
                "Inclusive (any frame on the stack), top entries:",
                "",
                "| samples | % | frame |",
                "|---|---|---|",
            ]
            for frame, c in inclusive[who].most_common(top):
                lines.append(f"| {c} | {100 * c / total:.1f} | `{frame}` |")
            lines.append("")
        return "\n".join(lines)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py:123)``; site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def startup_profile(top: int) -> str:
    """cProfile of a one-task ``python -m scalems.local`` run (W5), whole process."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="scalems-w5-"))
    try:
        script = scratch / "echo.py"
        script.write_text(
            "import scalems\n\n@scalems.app\ndef main():\n    scalems.executable(['echo', 'hello'])\n"
        )
        stats_file = scratch / "stats"
        # A warm-up run compiles the bytecode; the profiled one is the second.
        for _ in range(2):
            shutil.rmtree(scratch / "work", ignore_errors=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cProfile",
                    "-o",
                    str(stats_file),
                    "-m",
                    "scalems.local",
                    "--cores",
                    "2",
                    "--work-dir",
                    str(scratch / "work"),
                    str(script),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
        stream = io.StringIO()
        pstats.Stats(str(stats_file), stream=stream).sort_stats("cumulative").print_stats(top)
        text = stream.getvalue()
        return (
            "```\n" + (text[text.find("   ncalls") :] if "   ncalls" in text else text).rstrip() + "\n```\n"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-exe", type=int, default=1000)
    parser.add_argument("--n-fn", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=str(BENCH / "PROFILE.md"))
    parser.add_argument("--no-py-spy", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(cprofile_workload(args.child[0], int(args.child[1]), args.top))
        return 0
    sections = [
        "# Where scalems spends its time",
        "",
        f"Generated by `python bench/hotspots.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}. "
        "cProfile adds overhead per call: compare shares, not absolute times. "
        "py-spy samples at native speed.",
        "",
    ]
    for kind, n, title in (
        ("exe", args.n_exe, f"W1: {args.n_exe} × /bin/true"),
        ("fn", args.n_fn, f"W2: {args.n_fn} × scalems.submit(noop, i)"),
        ("rerun", args.n_fn, f"W3: re-run of the finished W2 workflow ({args.n_fn} cached tasks)"),
    ):
        print(f"profiling {title} ...", file=sys.stderr)
        # Each profile in a fresh interpreter.
        proc = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(n), "--top", str(args.top)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        sections += [f"## {title}: cProfile, sorted by cumulative time (top {args.top})", "", proc.stdout]
        if not args.no_py_spy and kind != "rerun":
            sections += [
                f"## {title}: py-spy, every process and thread",
                "",
                py_spy_workload(kind, n, args.top),
            ]
    print("profiling W5 start-up ...", file=sys.stderr)
    sections += [
        f"## W5: one-task `python -m scalems.local` run, cProfile of the whole process (top {args.top})",
        "",
        startup_profile(args.top),
    ]
    text = "\n".join(sections)
    pathlib.Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
