"""What every workload shares: its systems under test (``impls``), table rows, target checks, JSON.

A workload builds its ``Impl`` list in ``__init__``, ``run()`` alternates them, and ``summarize()``
turns the medians into rows (for the table) and checks (for the targets list).
"""

from __future__ import annotations

import statistics
import typing

from harness.common import SIZES, measure
from harness.sampling import Impl, alternate
from harness.scripts import Scratch


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

    def rate(self, kind: str, n: int, fresh: typing.Optional[str] = None):
        """A sampler: tasks/s of ``measure(kind, n)`` in a fresh process (in a fresh work dir *fresh*)."""

        def sample(rep):
            r = measure(kind, n, self.scratch.fresh(fresh)) if fresh else measure(kind, n)
            return per_s(n, r["seconds"]), r

        return sample

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
