"""W5: start-up: a one-task ``python -m scalems.local`` workflow against ``python -c pass``.

Also the standard-library floor (``import asyncio, sqlite3``) for information, and the
``-X importtime`` top entries of ``import scalems`` / ``import scalems.local`` for RESULTS.md.
"""

from __future__ import annotations

from harness.common import PY, run_command
from harness.sampling import Impl
from harness.scripts import scalems_command
from workloads.base import Workload


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
