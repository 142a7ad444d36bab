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

Layout: this file is the driver (command line, the run, the summary). Each workload is a module of
bench/workloads/ (w1_executables.py ... w6_radical.py, sharing workloads/base.py); the sampling
machinery, the generated workflow scripts and the table / RESULTS.md rendering are in bench/harness/.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

# bench/ is on sys.path when this file runs as a script; make sure of it however it is started.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness.common import ALL_WORKLOADS, BENCH, SIZES, log  # noqa: E402
from harness.report import background_text, machine, table, targets_summary, write_results_md  # noqa: E402
from harness.sampling import QUIET  # noqa: E402
from harness.scripts import Scratch  # noqa: E402
from workloads import WORKLOADS  # noqa: E402


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
