"""W2: N no-op function tasks on 2 workers.

``scalems.submit`` in ``scalems.local.workflow`` against a warm ``ProcessPoolExecutor``, Parsl
``python_app`` and Dask ``client.map``; for information also a script whose function lives in ``__main__``.
"""

from __future__ import annotations

from harness.common import have
from harness.sampling import Impl
from harness.scripts import scalems_command
from workloads.base import Workload, per_s


class W2(Workload):
    key = "W2"

    def __init__(self, args, scratch):
        super().__init__(args, scratch)
        n = self.n = self.sizes["W2"]
        self.title = f"function calls: {n} × noop(i), 2 workers"

        def scalems_main(rep):
            marks = scalems_command(self.scratch, "scalems.local", "main_functions", n, ["--cores", "2"])
            return per_s(n, marks["run"]), marks

        self.impls = [
            Impl(
                "scalems",
                "scalems: scalems.submit in scalems.local.workflow(cores=2) (manager start → all done)",
                "tasks/s",
                self.rate("scalems-fn", n, "w2-scalems"),
            ),
            Impl(
                "scalems_main",
                "scalems: python -m scalems.local, noop defined in the script (__main__; for information)",
                "tasks/s",
                scalems_main,
            ),
            Impl("ppe", "ProcessPoolExecutor(2).submit (warm pool)", "tasks/s", self.rate("ppe-fn", n)),
            Impl("parsl", "Parsl HTEX python_app (warm)", "tasks/s", self.rate("parsl-fn", n), have("parsl")),
            Impl(
                "dask",
                "Dask LocalCluster client.map (warm)",
                "tasks/s",
                self.rate("dask-fn", n),
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
