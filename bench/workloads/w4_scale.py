"""W4: per-task time and peak memory at two workflow sizes, each in a fresh process.

The large workflow's time per task must stay close to the small one's, and its peak RSS must grow
by only a few KiB per task.
"""

from __future__ import annotations

from harness.common import measure
from harness.sampling import Impl
from workloads.base import Workload


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
