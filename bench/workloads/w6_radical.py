"""W6 (opt-in): RADICAL-Pilot overhead on ``local.localhost``.

``python -m scalems.radical`` against plain RP scripts (bench/rp_plain.py): wall time of N
executables, and Raptor function-task throughput. RP runs are confined to a scratch directory, and
what RP leaves behind there (processes, MPICH shared-memory segments) is cleaned up.
"""

from __future__ import annotations

import os
import pathlib
import signal
import typing

from harness.common import PY, RP_PLAIN, BenchError, child_env, have, log, parse_result, run_command
from harness.sampling import Impl, alternate
from harness.scripts import scalems_command
from workloads.base import Workload, per_s


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
