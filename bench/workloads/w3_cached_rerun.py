"""W3: re-running a finished workflow in the same work dir must find every result cached.

One sample is a first run and its re-run, each in a fresh process; the re-run must be much faster,
start no process, execute no function and report ``from_cache`` for every task.
"""

from __future__ import annotations

import statistics

from harness.common import BenchError, measure
from harness.sampling import Impl, wait_for_io_quiet
from workloads.base import Workload


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
