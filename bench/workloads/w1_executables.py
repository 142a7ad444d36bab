"""W1: N distinct ``/bin/true`` executables on 2 cores.

scalems as a ``python -m scalems.local`` command (headline) and in-process, against raw asyncio
subprocesses under a semaphore, Parsl ``bash_app`` and Dask ``client.submit``.
"""

from __future__ import annotations

import statistics

from harness.common import have
from harness.sampling import Impl
from harness.scripts import scalems_command
from workloads.base import Workload, per_s


class W1(Workload):
    key, title = "W1", "executables: N × /bin/true, 2 cores"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        n = self.n = self.sizes["W1"]
        self.title = f"executables: {n} × /bin/true, 2 cores"

        def cmd(rep):
            marks = scalems_command(self.scratch, "scalems.local", "executables", n, ["--cores", "2"])
            return per_s(n, marks["run"]), {**marks, "wall_rate": per_s(n, marks["wall"])}

        self.impls = [
            Impl(
                "scalems",
                "scalems: python -m scalems.local --cores 2 (manager start → all done)",
                "tasks/s",
                cmd,
            ),
            Impl(
                "scalems_inprocess", "scalems: in-process scalems.local.workflow(cores=2)", "tasks/s", self.rate("scalems-exe", n, "w1-inproc")
            ),
            Impl(
                "asyncio",
                "raw asyncio.create_subprocess_exec, semaphore(2)",
                "tasks/s",
                self.rate("asyncio-exe", n),
            ),
            Impl(
                "asyncio_pidfd",
                "raw asyncio + PidfdChildWatcher (for information)",
                "tasks/s",
                self.rate("asyncio-pidfd-exe", n),
            ),
            Impl("parsl", "Parsl HTEX bash_app (warm)", "tasks/s", self.rate("parsl-exe", n), have("parsl")),
            Impl(
                "dask",
                "Dask LocalCluster client.submit(subprocess.run) (warm)",
                "tasks/s",
                self.rate("dask-exe", n),
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
