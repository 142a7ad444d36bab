"""The output: machine description, the results table, the targets list and bench/RESULTS.md.

Kept apart from the workloads so that the format of the table and of RESULTS.md is defined in one
place; the workloads only fill in ``rows`` and ``checks``.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys

from harness.common import ALL_WORKLOADS, PY, version
from harness.sampling import QUIET


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
